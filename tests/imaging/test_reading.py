"""Reading an upload: what ``inspect_image`` refuses before the charge, and
how it says so; what ``decode_for_model`` makes of awkward but valid images.

A file the worker could never finish must be refused by the API's check
(a 4xx, nothing charged) rather than accepted, charged, failed and
refunded; the refusal says what is wrong with the file in plain words.
An awkward but valid image (greyscale, palette, 16-bit, CMYK, EXIF
rotation, ...) must come out as a correct RGBA PNG of the image as
displayed: those tests run the real u2netp model through the pipeline
the worker runs, on real photographs turned into each awkward variant.
"""

import io
import re
import struct
import zlib
from unittest import mock

import numpy as np
import pytest
from PIL import Image, ImageFile

from imaging import edges, errors, pipeline, reading
from tests.images import (
    encode,
    grey_png,
    photo,
    photo_bytes,
    png_chunk,
    png_declaring,
    with_damaged_idat,
)

MAX_PIXELS = 50_000_000


def png_with_huge_text() -> bytes:
    """A valid photo PNG with a zTXt chunk that inflates past Pillow's safety limit."""
    png = photo_bytes("chelsea", "PNG")
    text = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"a" * 5_000_000, 9))
    ihdr_end = 8 + 25
    return png[:ihdr_end] + text + png[ihdr_end:]


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def with_garbage_after(data: bytes, at: int) -> bytes:
    return data[:at] + bytes(range(256)) * 4 + data[at + 1024 :]


# label -> broken file: damage of every supported format, as customers send it.
BROKEN = {
    "PNG, corrupt pixel data with valid CRCs": lambda: with_damaged_idat(
        photo_bytes("coffee", "PNG")
    ),
    "PNG, truncated": lambda: half(photo_bytes("coffee", "PNG")),
    "PNG, only the signature": lambda: b"\x89PNG\r\n\x1a\n",
    "PNG, garbage after the signature": lambda: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
    "PNG, text chunk inflating past the safety limit": png_with_huge_text,
    "JPEG, truncated": lambda: half(photo_bytes("astronaut")),
    "JPEG, garbage in the scan": lambda: with_garbage_after(photo_bytes("astronaut"), 2000),
    "JPEG, only the start marker": lambda: b"\xff\xd8\xff\xe0" + b"\x00" * 10,
    "WebP, truncated": lambda: half(encode(photo("chelsea"), "WEBP")),
    "WebP, header only": lambda: b"RIFF\x10\x00\x00\x00WEBPVP8 \x04\x00\x00\x00abcd",
    "BMP, truncated": lambda: half(encode(photo("chelsea"), "BMP")),
    "BMP, header only": lambda: b"BM" + b"\x00" * 12,
}
INTERNALS = re.compile(
    r"0x[0-9a-f]|object at|Plugin|Traceback|PIL|Pillow|\.py|BytesIO|Error\b|MAX_|\bline \d"
)


@pytest.mark.parametrize("label", BROKEN)
def test_the_check_refuses_a_broken_file_in_plain_words(label):
    with pytest.raises(errors.UndecodableImage) as refusal:
        reading.inspect_image(BROKEN[label](), max_pixels=MAX_PIXELS)
    message = str(refusal.value)
    assert not INTERNALS.search(message), message
    assert re.fullmatch(r"The (PNG|JPEG|WebP|BMP) file [a-z ,]+\.", message), message


@pytest.mark.parametrize("label", BROKEN)
def test_the_worker_says_the_same_about_a_broken_file(label):
    with pytest.raises(errors.UndecodableImage) as refusal:
        reading.decode_for_model(BROKEN[label](), max_pixels=MAX_PIXELS)
    assert not INTERNALS.search(str(refusal.value)), str(refusal.value)


def test_a_text_chunk_too_large_to_read_is_named_as_such():
    with pytest.raises(errors.UndecodableImage, match="text or metadata block too large"):
        reading.inspect_image(png_with_huge_text(), max_pixels=MAX_PIXELS)


def test_the_check_decodes_a_jpeg_at_one_eighth_yet_finds_damage_at_its_end():
    """The 1/8 draft decode still reads every byte of the scan."""
    data = photo_bytes("astronaut")
    damaged = with_garbage_after(data, len(data) - 1500)
    with pytest.raises(errors.UndecodableImage):
        reading.inspect_image(damaged, max_pixels=MAX_PIXELS)


def test_it_refuses_a_decompression_bomb_from_its_header_without_decoding():
    bomb = png_declaring(60000, 60000)
    assert len(bomb) < 200
    # Any attempt to decode pixels would go through ImageFile.load.
    with mock.patch.object(ImageFile.ImageFile, "load", side_effect=AssertionError("decoded")):
        with pytest.raises(errors.TooManyPixels):
            reading.inspect_image(bomb, max_pixels=MAX_PIXELS)
        with pytest.raises(errors.TooManyPixels):
            reading.decode_for_model(bomb, max_pixels=MAX_PIXELS)


def test_it_measures_the_image_as_displayed_from_its_header_and_exif():
    upright = photo("coffee")  # 600 x 400 as displayed
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    stored = encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes())
    assert reading.inspect_image(stored, max_pixels=MAX_PIXELS) == reading.ImageInfo(
        format="jpeg", width=600, height=400
    )
    assert reading.decode_for_model(stored, max_pixels=MAX_PIXELS).size == (600, 400)


# --- Too long and thin to process ----------------------------------------------


def test_the_longest_side_is_a_parameter():
    data = grey_png(300, 20)
    with pytest.raises(errors.SideTooLong):
        reading.inspect_image(data, max_pixels=MAX_PIXELS, max_side=299)
    with pytest.raises(errors.SideTooLong):
        reading.decode_for_model(data, max_pixels=MAX_PIXELS, max_side=299)
    info = reading.inspect_image(data, max_pixels=MAX_PIXELS, max_side=300)
    assert (info.width, info.height) == (300, 20)


@pytest.mark.model
@pytest.mark.parametrize("size", [(1, 65_535), (65_535, 1)], ids=["1x65535", "65535x1"])
def test_an_image_at_the_longest_side_allowed_is_processed(u2netp, size):
    data = grey_png(*size)
    info = reading.inspect_image(data, max_pixels=MAX_PIXELS)
    result = pipeline.remove_background(data, u2netp, max_pixels=MAX_PIXELS)
    out = Image.open(io.BytesIO(result.data))
    out.load()
    assert out.size == (info.width, info.height) == size


# --- Awkward but valid images: a correct RGBA PNG of the image as displayed -------


def cut(data: bytes, session) -> Image.Image:
    """What the API checks, then what the worker does; returns the decoded PNG."""
    info = reading.inspect_image(data, max_pixels=MAX_PIXELS)
    result = pipeline.remove_background(data, session, max_pixels=MAX_PIXELS)
    out = Image.open(io.BytesIO(result.data))
    assert out.format == "PNG"
    assert out.mode == "RGBA"
    assert out.size == (info.width, info.height) == (result.width, result.height)
    out.load()
    return out


def rgba(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def visible_colour_error(out: Image.Image, expected_rgb: np.ndarray) -> float:
    """Mean colour difference where the cut-out keeps the photo's colours:
    above the soft band, whose colours are cleaned (estimated) by default."""
    arr = rgba(out)
    seen = arr[..., 3] > edges.BAND_MAX
    assert seen.sum() > 0.05 * seen.size, "the model kept almost nothing"
    return float(np.abs(arr[..., :3][seen] - expected_rgb.astype(np.int16)[seen]).mean())


@pytest.mark.model
def test_a_grayscale_image_keeps_its_greys(u2netp):
    gray = photo("camera")  # 512x512, mode L
    assert gray.mode == "L"
    out = cut(encode(gray, "PNG"), u2netp)
    arr = rgba(out)
    opaque = arr[..., 3] > 0
    assert (arr[..., 0][opaque] == arr[..., 1][opaque]).all()
    assert visible_colour_error(out, np.dstack([np.asarray(gray)] * 3)) < 2


@pytest.mark.model
def test_a_palette_with_transparency_keeps_the_transparent_area_transparent(u2netp):
    src = photo("astronaut").quantize(colors=255)
    pixels = np.array(src)
    pixels[:, :128] = 255  # the transparent index
    img = Image.fromarray(pixels, "P")
    img.putpalette(src.getpalette()[: 255 * 3] + [0, 0, 0])
    data = encode(img, "PNG", transparency=255)
    reread = Image.open(io.BytesIO(data))
    assert reread.mode == "P" and "transparency" in reread.info
    out = cut(data, u2netp)
    assert (rgba(out)[:, :128, 3] == 0).all()


def png16(array: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    height, width, _ = array.shape
    raw = b"".join(b"\x00" + array[row].astype(">u2").tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


@pytest.mark.model
def test_a_16_bit_rgb_png_keeps_its_colours(u2netp):
    rgb8 = np.asarray(photo("astronaut"))
    out = cut(png16(rgb8.astype(np.uint16) * 257), u2netp)
    assert visible_colour_error(out, rgb8) < 2


@pytest.mark.model
def test_a_16_bit_grayscale_png_is_scaled_not_clipped(u2netp):
    gray8 = np.asarray(photo("camera"))
    img16 = Image.fromarray(gray8.astype(np.uint16) * 257)
    data = encode(img16, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = cut(data, u2netp)
    assert visible_colour_error(out, np.dstack([gray8] * 3)) < 2


@pytest.mark.model
def test_a_cmyk_jpeg_keeps_its_colours(u2netp):
    original = photo("astronaut")
    data = encode(original.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = cut(data, u2netp)
    assert visible_colour_error(out, np.asarray(original)) < 12


@pytest.mark.model
def test_the_alpha_of_an_rgba_input_is_respected(u2netp):
    img = photo("astronaut").convert("RGBA")
    alpha = np.full((512, 512), 255, dtype=np.uint8)
    alpha[:, 256:] = 0  # the right half was already cut away
    alpha[200:300, 100:200] = 128  # and a half-transparent patch on the subject
    img.putalpha(Image.fromarray(alpha, "L"))
    out = rgba(cut(encode(img, "PNG"), u2netp))
    assert (out[:, 256:, 3] == 0).all()
    assert (out[200:300, 100:200, 3] <= 128).all()


@pytest.mark.model
@pytest.mark.parametrize(
    ("fmt", "params", "tolerance"), [("BMP", {}, 1), ("WEBP", {"quality": 90}, 12)]
)
def test_bmp_and_webp_keep_their_colours(u2netp, fmt, params, tolerance):
    original = photo("astronaut")
    out = cut(encode(original, fmt, **params), u2netp)
    assert out.size == (512, 512)
    assert visible_colour_error(out, np.asarray(original)) < tolerance


@pytest.mark.model
def test_exif_orientation_6_comes_out_upright_with_width_and_height_swapped(u2netp):
    upright = photo("coffee")  # 600 x 400 as displayed
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 400 x 600 on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).size == (400, 600)

    out = cut(data, u2netp)
    assert out.size == (600, 400)
    assert visible_colour_error(out, np.asarray(upright)) < 12


@pytest.mark.model
def test_a_1x1_image_is_cut_out(u2netp):
    out = cut(encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"), u2netp)
    assert out.size == (1, 1)


@pytest.mark.model
def test_a_6000x120_strip_is_cut_out_at_its_size(u2netp):
    strip = photo("astronaut").resize((6000, 120))
    out = cut(encode(strip, "JPEG", quality=90), u2netp)
    assert out.size == (6000, 120)


@pytest.mark.model
def test_an_animated_webp_is_cut_from_its_first_frame(u2netp):
    first = photo("astronaut")
    second = Image.fromarray(255 - np.asarray(first))  # the negative
    buffer = io.BytesIO()
    first.save(
        buffer, format="WEBP", save_all=True, append_images=[second], lossless=True, duration=100
    )
    data = buffer.getvalue()
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2

    out = cut(data, u2netp)
    assert visible_colour_error(out, np.asarray(first)) < 2
