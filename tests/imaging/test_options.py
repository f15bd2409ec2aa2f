"""OutputOptions, made from the option table: validated however built, and
stored as JSON that reads back the same."""

import pytest

from imaging import parsers
from imaging.errors import OptionError
from imaging.options import OPTIONS, OutputOptions, resolve_auto_format

EVERY_OPTION = OutputOptions(
    format="webp",
    channels="rgba",
    bg_color=(1, 2, 3, 128),
    crop=True,
    crop_margin=parsers.parse_crop_margin("10px 5%"),
    roi=parsers.parse_roi("0 0 50% 100%"),
    scale=80.0,
    position=(10.0, 90.0),
    max_pixels=250_000,
    max_width=500,
    max_height=300,
    alpha_matting=True,
    alpha_matting_foreground_threshold=230,
    alpha_matting_background_threshold=20,
    alpha_matting_erode_size=5,
    post_process_mask=True,
    decontaminate=False,
    refine="edges",
)


def test_default_options_serialise_to_an_empty_object():
    assert OutputOptions().to_json() == {}
    assert OutputOptions().is_default
    assert OutputOptions.from_json({}) == OutputOptions()


def test_options_survive_a_round_trip_through_json():
    data = EVERY_OPTION.to_json()
    assert data["bg_color"] == "#01020380"
    assert data["crop_margin"] == ["10px", "5%", "10px", "5%"]
    assert data["roi"] == ["0px", "0px", "50%", "100%"]
    assert data["position"] == [10.0, 90.0]
    assert OutputOptions.from_json(data) == EVERY_OPTION
    assert len(data) == 17  # all but channels, left at its default
    assert len(EVERY_OPTION.to_json(full=True)) == len(OPTIONS)


def test_lengths_print_as_they_parse():
    for text in ("0px", "12.5%", "1000000px", "0.25%"):
        (length,) = set(parsers.parse_crop_margin(text))
        assert str(length) == text


def test_to_json_lists_only_what_differs_from_the_defaults():
    assert OutputOptions(format="jpg", crop=True).to_json() == {"format": "jpg", "crop": True}
    full = OutputOptions(format="jpg").to_json(full=True)
    assert full["format"] == "jpg" and full["bg_color"] is None and full["crop"] is False


def test_from_json_refuses_unknown_keys_and_bad_values():
    with pytest.raises(OptionError) as caught:
        OutputOptions.from_json({"shadow": True})
    assert caught.value.field == "shadow"
    with pytest.raises(OptionError) as caught:
        OutputOptions.from_json({"scale": "5%"})
    assert caught.value.field == "scale"


def test_options_built_by_hand_are_validated_too():
    with pytest.raises(OptionError):
        OutputOptions(format="gif")
    with pytest.raises(OptionError):
        OutputOptions(alpha_matting_erode_size=99)
    with pytest.raises(OptionError):
        OutputOptions(crop="yes")


@pytest.mark.parametrize(
    "options, expected",
    [
        (OutputOptions(format="auto"), "png"),
        (OutputOptions(format="auto", bg_color=(255, 255, 255, 255)), "jpg"),
        (OutputOptions(format="auto", bg_color=(255, 255, 255, 254)), "png"),
        (OutputOptions(format="auto", bg_color=(0, 0, 0, 255), channels="alpha"), "png"),
        (OutputOptions(format="webp", bg_color=(0, 0, 0, 255)), "webp"),
    ],
)
def test_auto_format_is_jpg_only_when_nothing_is_transparent(options, expected):
    assert resolve_auto_format(options).format == expected
