"""Reading a door's fields: ``Fields`` (a form or a JSON body, one way) and
``parse_options`` (the option table, read as each door takes it), called
directly; ``build_request`` itself is tested in test_submissions.py."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils.datastructures import MultiValueDict

from imaging import parsers
from imaging.options import OPTIONS, REMOVEBG, SEED, WEB, OutputOptions
from removal.submissions import Fields, InvalidField, InvalidOption, parse_options
from tests.removal.helpers import SHADOW

# --- Fields: a door's form, read one way -------------------------------------------------


def test_fields_reads_form_text_and_json_values():
    fields = Fields({"model": "  u2netp ", "crop": True, "max_width": 400})
    assert fields.text("model") == "u2netp"
    assert fields.value("crop") is True
    assert fields.value("max_width") == 400
    assert fields.text("max_width") == "400"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_fields_treats_an_empty_value_as_not_sent(value):
    fields = Fields({"format": value})
    assert fields.value("format") is None
    assert fields.text("format") is None
    assert not fields.has("format")
    assert not Fields({}).has("format")


def test_fields_reads_a_form_with_repeated_names():
    form = MultiValueDict({"format": ["webp"], "file": []})
    assert Fields(form).value("format") == "webp"
    files = MultiValueDict({"file": [SimpleUploadedFile("photo.jpg", b"\xff\xd8")]})
    assert Fields(form, files).has("file")
    assert [part.name for part in Fields(form, files).file_parts("file")] == ["photo.jpg"]


def test_fields_refuses_a_field_sent_twice():
    fields = Fields(MultiValueDict({"format": ["png", "jpg"]}))
    with pytest.raises(InvalidField) as refused:
        fields.value("format")
    assert refused.value.code == "invalid_field"
    assert refused.value.message == "Send the 'format' field once, not 2 times."


@pytest.mark.parametrize("value", [["u2netp", "u2net"], {"name": "u2netp"}])
def test_fields_refuses_a_list_or_an_object_where_a_value_belongs(value):
    with pytest.raises(InvalidField) as refused:
        Fields({"model": value}).value("model")
    assert refused.value.code == "invalid_field"
    assert refused.value.message == "The 'model' field must be a single value."


def test_fields_refuses_text_sent_as_a_file_part():
    part = SimpleUploadedFile("format.txt", b"png")
    for fields in (Fields({}, {"format": part}), Fields({"format": part})):
        with pytest.raises(InvalidField) as refused:
            fields.value("format")
        assert refused.value.code == "invalid_field"
        assert refused.value.message == "The 'format' field must be a text field, not a file."


# --- parse_options: the option table, read as each door takes it ---------------------


def test_no_option_sent_gives_each_doors_defaults():
    assert parse_options(Fields({}), door=SEED) == OutputOptions()
    assert parse_options(Fields({}), door=WEB) == OutputOptions()
    removebg = parse_options(Fields({}), door=REMOVEBG)
    assert removebg == OutputOptions(format="auto", max_pixels=parsers.SIZES["preview"])


def test_it_reads_every_option_the_seed_api_takes():
    fields = Fields(
        {
            "format": "webp",
            "channels": "alpha",
            "bg_color": "red",
            "crop": "true",
            "crop_margin": "10%",
            "size": "preview",
            "max_width": "400",
            "max_height": "300",
            "alpha_matting": "yes",
            "alpha_matting_foreground_threshold": "200",
            "alpha_matting_background_threshold": "20",
            "alpha_matting_erode_size": "5",
            "post_process_mask": "1",
        }
    )
    assert parse_options(fields, door=SEED) == OutputOptions(
        format="webp",
        channels="alpha",
        bg_color=(255, 0, 0, 255),
        crop=True,
        crop_margin=parsers.parse_crop_margin("10%"),
        max_pixels=250_000,
        max_width=400,
        max_height=300,
        alpha_matting=True,
        alpha_matting_foreground_threshold=200,
        alpha_matting_background_threshold=20,
        alpha_matting_erode_size=5,
        post_process_mask=True,
    )


def test_each_door_reads_only_the_options_it_takes():
    fields = Fields({"roi": "0 0 50% 100%", "max_width": "400", "scale": "50%"})
    assert parse_options(fields, door=SEED) == OutputOptions(max_width=400)
    removebg = parse_options(fields, door=REMOVEBG)
    assert removebg.max_width is None
    assert (removebg.roi, removebg.scale) == (parsers.parse_roi("0 0 50% 100%"), 50.0)


def test_a_door_offers_its_own_choices():
    assert parse_options(Fields({"size": "hd"}), door=REMOVEBG).max_pixels == 4_000_000
    with pytest.raises(InvalidOption) as refused:
        parse_options(Fields({"size": "hd"}), door=SEED)
    assert refused.value.message == "size must be one of full, preview; got 'hd'."


SEED_BAD_VALUES = [
    ("format", "gif"),
    ("channels", "rgb"),
    ("bg_color", "not-a-colour"),
    ("crop", "perhaps"),
    ("crop_margin", "ten"),
    ("size", "huge"),
    ("max_width", "0"),
    ("max_height", "70000"),
    ("alpha_matting", "perhaps"),
    ("alpha_matting_foreground_threshold", "256"),
    ("alpha_matting_background_threshold", "-1"),
    ("alpha_matting_erode_size", "41"),
    ("post_process_mask", "2"),
]


@pytest.mark.parametrize(("field", "value"), SEED_BAD_VALUES)
def test_a_bad_value_is_refused_with_the_options_code_naming_its_field(field, value):
    with pytest.raises(InvalidOption) as refused:
        parse_options(Fields({field: value}), door=SEED)
    assert (refused.value.status_code, refused.value.code) == (400, f"invalid_{field}")
    assert refused.value.field_name == field
    assert refused.value.message.startswith(f"{field} ")


def test_the_web_page_names_a_bad_field_by_its_label():
    with pytest.raises(InvalidOption) as refused:
        parse_options(Fields({"max_width": "wide"}), door=WEB)
    assert refused.value.code == "invalid_max_width"
    assert refused.value.message.startswith("Max width (px) ")


def test_a_table_of_its_own_is_read_the_same_way():
    """An option added to the table is parsed with nothing else changed."""
    table = (*OPTIONS, SHADOW)
    options = parse_options(Fields({"shadow": "true", "format": "webp"}), door=SEED, table=table)
    assert (options.shadow, options.format) == (True, "webp")
    assert parse_options(Fields({}), door=SEED, table=table).shadow is False
    with pytest.raises(InvalidOption) as refused:
        parse_options(Fields({"shadow": "perhaps"}), door=SEED, table=table)
    assert refused.value.code == "invalid_shadow"
