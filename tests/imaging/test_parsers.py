"""Parsers: what a form or a JSON body sends, read as option values, or
refused naming the field and what it takes."""

import pytest

from imaging import parsers
from imaging.errors import OptionError
from imaging.parsers import Length


@pytest.mark.parametrize(
    "value, expected",
    [
        ("#fff", (255, 255, 255, 255)),
        ("fff", (255, 255, 255, 255)),
        ("#ffff0080", (255, 255, 0, 128)),
        ("81d4fa", (0x81, 0xD4, 0xFA, 255)),
        ("81D4FA77", (0x81, 0xD4, 0xFA, 0x77)),
        ("#0008", (0, 0, 0, 0x88)),
        ("green", (0, 128, 0, 255)),
        ("RebeccaPurple", (102, 51, 153, 255)),
        ("  white ", (255, 255, 255, 255)),
        ("", None),
        (None, None),
        ([1, 2, 3], (1, 2, 3, 255)),
    ],
)
def test_bg_color_takes_hex_with_or_without_hash_and_colour_names(value, expected):
    assert parsers.parse_bg_color(value) == expected


def test_crop_margin_takes_one_two_or_four_lengths_in_px_or_percent():
    px, pct = Length(20.0, "px"), Length(10.0, "%")
    assert parsers.parse_crop_margin("20") == (px, px, px, px)
    assert parsers.parse_crop_margin("20px") == (px, px, px, px)
    assert parsers.parse_crop_margin(20) == (px, px, px, px)
    assert parsers.parse_crop_margin("10%") == (pct, pct, pct, pct)
    assert parsers.parse_crop_margin("20px 10%") == (px, pct, px, pct)
    assert parsers.parse_crop_margin("1 2px 3% 4") == (
        Length(1.0),
        Length(2.0),
        Length(3.0, "%"),
        Length(4.0),
    )
    assert parsers.parse_crop_margin("") == parsers.NO_MARGIN


def test_other_parsers_read_what_forms_and_json_send():
    assert parsers.parse_format("JPEG") == "jpg"
    assert parsers.parse_format(None) == "png"
    assert parsers.parse_format("auto", allow_auto=True) == "auto"
    assert parsers.parse_channels("Alpha") == "alpha"
    assert parsers.parse_bool(True, field="crop") is True
    assert parsers.parse_bool("Yes", field="crop") is True
    assert parsers.parse_bool("0", field="crop") is False
    assert parsers.parse_bool("", field="crop") is False
    assert parsers.parse_roi("0% 0% 50% 100%") == (
        Length(0.0, "%"),
        Length(0.0, "%"),
        Length(50.0, "%"),
        Length(100.0, "%"),
    )
    assert parsers.parse_roi("10px 20px 30px 40px")[2] == Length(30.0, "px")
    assert parsers.parse_scale("original") is None
    assert parsers.parse_scale("80%") == 80.0
    assert parsers.parse_position("center") == (50.0, 50.0)
    assert parsers.parse_position("original") == "original"
    assert parsers.parse_position("20%") == (20.0, 20.0)
    assert parsers.parse_position("0% 100%") == (0.0, 100.0)
    assert parsers.parse_position(None) is None
    assert parsers.parse_dimension("640", field="max_width") == 640
    assert parsers.parse_dimension(640, field="max_width") == 640
    assert parsers.parse_dimension("", field="max_width") is None
    assert parsers.parse_threshold("0", field="t") == 0
    assert parsers.parse_threshold(255, field="t") == 255
    assert parsers.parse_erode_size("40") == 40
    assert parsers.parse_size("preview") == 250_000
    assert parsers.parse_size("regular") == 250_000
    assert parsers.parse_size("medium") == 1_500_000
    assert parsers.parse_size("HD") == 4_000_000
    assert parsers.parse_size("50MP") is None
    assert parsers.parse_size("full") is None


@pytest.mark.parametrize(
    "parse, value, field, named",
    [
        (parsers.parse_format, "gif", "format", "png, jpg, webp, zip"),
        (parsers.parse_format, "auto", "format", "png, jpg, webp, zip"),
        (parsers.parse_channels, "rgb", "channels", "rgba"),
        (parsers.parse_bg_color, "#12345", "bg_color", "hex colour"),
        (parsers.parse_bg_color, "notacolour", "bg_color", "CSS colour name"),
        (parsers.parse_bg_color, "rgb(1,2,3)", "bg_color", "hex colour"),
        (parsers.parse_bg_color, [1, 2], "bg_color", "hex colour"),
        (parsers.parse_bg_color, [1, 2, 300], "bg_color", "hex colour"),
        (lambda v: parsers.parse_bool(v, field="crop"), "maybe", "crop", "true or false"),
        (lambda v: parsers.parse_bool(v, field="crop"), [], "crop", "true or false"),
        (parsers.parse_crop_margin, "-5px", "crop_margin", "1, 2 or 4"),
        (parsers.parse_crop_margin, "1 2 3", "crop_margin", "1, 2 or 4"),
        (parsers.parse_crop_margin, "10em", "crop_margin", "px or %"),
        (parsers.parse_crop_margin, True, "crop_margin", "px or %"),
        (parsers.parse_roi, "0 0 10", "roi", "x1 y1 x2 y2"),
        (parsers.parse_roi, "50% 0% 10% 100%", "roi", "x1 < x2"),
        (parsers.parse_roi, "0% 0% 150% 100%", "roi", "over 100%"),
        (parsers.parse_roi, "a b c d", "roi", "x1 y1 x2 y2"),
        (parsers.parse_scale, "5%", "scale", "10% to 100%"),
        (parsers.parse_scale, "120%", "scale", "10% to 100%"),
        (parsers.parse_scale, "big", "scale", "'original'"),
        (parsers.parse_position, "left", "position", "'center'"),
        (parsers.parse_position, "10% 20% 30%", "position", "one or two percentages"),
        (parsers.parse_position, "120%", "position", "0% to 100%"),
        (lambda v: parsers.parse_dimension(v, field="max_width"), "0", "max_width", "1 to"),
        (lambda v: parsers.parse_dimension(v, field="max_width"), "1e9", "max_width", "1 to"),
        (lambda v: parsers.parse_dimension(v, field="max_width"), 12.5, "max_width", "whole"),
        (lambda v: parsers.parse_dimension(v, field="max_width"), "-3", "max_width", "1 to"),
        (lambda v: parsers.parse_threshold(v, field="t"), "256", "t", "0 to 255"),
        (lambda v: parsers.parse_threshold(v, field="t"), None, "t", "0 to 255"),
        (lambda v: parsers.parse_threshold(v, field="t"), True, "t", "0 to 255"),
        (parsers.parse_erode_size, "41", "alpha_matting_erode_size", "0 to 40"),
        (parsers.parse_size, "huge", "size", "preview"),
        (lambda v: parsers.parse_size(v, choices=["full", "preview"]), "hd", "size", "full"),
    ],
)
def test_every_parser_refuses_bad_values_naming_the_field_and_what_is_allowed(
    parse, value, field, named
):
    with pytest.raises(OptionError) as caught:
        parse(value)
    assert isinstance(caught.value, ValueError)
    assert caught.value.field == field
    assert str(caught.value).startswith(field)
    assert named in str(caught.value)


def test_a_huge_value_is_not_echoed_whole_in_the_message():
    with pytest.raises(OptionError) as caught:
        parsers.parse_format("x" * 3_000_000)
    assert len(str(caught.value)) < 200


def test_a_parser_can_name_the_field_as_its_door_calls_it():
    with pytest.raises(OptionError) as caught:
        parsers.parse_bool("maybe", field="alpha_matting")
    assert caught.value.field == "alpha_matting"
