"""What the doors show of the option table: each door's request schema and
the web page's Options panel, derived from the table and nothing else."""

from rest_framework import serializers

from doors.option_fields import input_serializer, schema_field, web_labels, web_panel
from imaging import parsers
from imaging.options import (
    OPTIONS,
    OPTIONS_BY_NAME,
    REMOVEBG,
    SEED,
    WEB,
    options_for,
)
from tests.removal.helpers import SHADOW


def schema_of(door: str, table=OPTIONS) -> dict[str, serializers.Field]:
    serializer = input_serializer(
        door,
        name="Probe",
        fields={"file": serializers.FileField(required=False)},
        doc="A door's schema, for the test.",
        table=table,
    )
    return serializer().fields


def test_a_doors_schema_is_its_own_fields_then_every_option_it_takes():
    for door in (SEED, REMOVEBG, WEB):
        names = list(schema_of(door))
        assert names == ["file"] + [option.wire_name for option in options_for(door)]


def test_the_seed_schema_leaves_out_what_only_remove_bg_takes():
    seed = schema_of(SEED)
    assert {"roi", "scale", "position"}.isdisjoint(seed)
    assert {"roi", "scale", "position"} <= set(schema_of(REMOVEBG))
    assert "max_width" not in schema_of(REMOVEBG)


def test_each_field_says_the_options_help_and_is_optional():
    for option in OPTIONS:
        field = schema_field(option, SEED)
        assert field.help_text == option.help
        assert field.required is False


def test_a_choice_shows_the_doors_own_choices_and_default():
    size = OPTIONS_BY_NAME["max_pixels"]
    on_seed, on_removebg = schema_field(size, SEED), schema_field(size, REMOVEBG)
    assert isinstance(on_seed, serializers.ChoiceField)
    assert list(on_seed.choices) == ["full", "preview"]
    assert on_seed.default == "full"
    assert list(on_removebg.choices) == list(parsers.SIZES)
    assert on_removebg.default == "preview"
    fmt = OPTIONS_BY_NAME["format"]
    assert (schema_field(fmt, SEED).default, schema_field(fmt, REMOVEBG).default) == ("png", "auto")


def test_flags_numbers_and_text_get_fields_of_their_kind():
    crop = schema_field(OPTIONS_BY_NAME["crop"], SEED)
    assert isinstance(crop, serializers.BooleanField) and crop.default is False
    threshold = schema_field(OPTIONS_BY_NAME["alpha_matting_foreground_threshold"], SEED)
    assert isinstance(threshold, serializers.IntegerField)
    assert (threshold.min_value, threshold.max_value, threshold.default) == (0, 255, 240)
    width = schema_field(OPTIONS_BY_NAME["max_width"], SEED)
    assert (width.min_value, width.max_value) == (1, parsers.MAX_DIMENSION)
    assert width.default is serializers.empty  # no default: the input's own width
    assert isinstance(schema_field(OPTIONS_BY_NAME["bg_color"], SEED), serializers.CharField)


def test_the_panel_shows_the_web_pages_options_main_ones_first():
    panel = web_panel()
    shown = [field.name for rows in panel.values() for row in rows for field in row.fields]
    assert shown == [o.wire_name for o in options_for(WEB) if o.web is not None]
    advanced = {field.name for row in panel["advanced"] for field in row.fields}
    assert advanced == {o.wire_name for o in options_for(WEB) if o.web and o.web.advanced}
    assert {"format", "size", "crop"} <= {f.name for row in panel["main"] for f in row.fields}


def test_paired_fields_share_a_row_and_their_hints():
    (box,) = [row for row in web_panel()["main"] if len(row.fields) > 1]
    assert [field.name for field in box.fields] == ["max_width", "max_height"]
    assert box.hint == OPTIONS_BY_NAME["max_width"].web.hint
    assert (box.fields[0].number_min, box.fields[0].number_max) == (1, parsers.MAX_DIMENSION)


def test_the_labels_name_each_field_as_the_page_does():
    labels = web_labels()
    assert labels["size"] == "Size"
    assert labels["max_width"] == "Max width (px)"
    assert "roi" not in labels


def test_an_option_added_to_the_table_shows_in_the_schema_and_the_panel():
    table = (*OPTIONS, SHADOW)
    field = schema_of(SEED, table)["shadow"]
    assert isinstance(field, serializers.BooleanField)
    assert field.help_text == "Adds a drop shadow under the subject."
    (row,) = [row for row in web_panel(table)["advanced"] if row.fields[0].name == "shadow"]
    assert row.fields[0].web.label == "Drop shadow"
    assert web_labels(table)["shadow"] == "Drop shadow"
