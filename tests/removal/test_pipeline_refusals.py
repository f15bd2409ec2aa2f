"""What ``inspect_image`` refuses before the charge, and how it says so.

A file the worker could never finish must be refused by the API's check
(a 4xx, nothing charged) rather than accepted, charged, failed and
refunded; the refusal says what is wrong with the file in plain words.
"""

import io
import re
import zlib
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageFile

from imaging import errors, pipeline, reading
from removal import registry
from tests.images import (
    encode,
    grey_png,
    photo,
    photo_bytes,
    png_chunk,
    with_damaged_idat,
)
from tests.removal.helpers import assert_json_error, assert_nothing_charged

URL = "/paid/image/remove/background"
MAX_PIXELS = 50_000_000


def post(client, data: bytes):
    upload = SimpleUploadedFile("upload.png", data, content_type="application/octet-stream")
    return client.post(URL, {"file": upload, "model": "u2netp"}, format="multipart")


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


@pytest.mark.weights
def test_a_png_whose_pixel_data_is_corrupt_is_refused_before_the_charge(api_client, account):
    """Reading a PNG's EXIF decodes it; that decode's error must not be swallowed."""
    response = post(api_client, with_damaged_idat(photo_bytes("coffee", "PNG")))
    body = assert_json_error(response, 400, "invalid_image")
    assert body["error"] == "The PNG file is damaged or truncated and could not be decoded."
    assert_nothing_charged(account, balance=1000)


def test_a_text_chunk_too_large_to_read_is_named_as_such():
    with pytest.raises(errors.UndecodableImage, match="text or metadata block too large"):
        reading.inspect_image(png_with_huge_text(), max_pixels=MAX_PIXELS)


def test_the_check_decodes_a_jpeg_at_one_eighth_yet_finds_damage_at_its_end():
    """The 1/8 draft decode still reads every byte of the scan."""
    data = photo_bytes("astronaut")
    damaged = with_garbage_after(data, len(data) - 1500)
    with pytest.raises(errors.UndecodableImage):
        reading.inspect_image(damaged, max_pixels=MAX_PIXELS)


# --- Too long and thin to process ----------------------------------------------


@pytest.mark.weights
@pytest.mark.parametrize("size", [(1, 50_000_000), (50_000_000, 1)], ids=["1xN", "Nx1"])
def test_an_image_too_long_to_process_is_refused_from_its_header(api_client, account, size):
    data = grey_png(*size)  # valid, about 100 kB, within the 50 M pixel limit
    assert size[0] * size[1] <= MAX_PIXELS and len(data) < 200_000
    with mock.patch.object(ImageFile.ImageFile, "load", side_effect=AssertionError("decoded")):
        response = post(api_client, data)
    body = assert_json_error(response, 413, "image_too_large")
    width, height = size
    assert body["error"] == (
        f"Image is {width}x{height}; the longest side allowed is 65,535 pixels."
    )
    assert_nothing_charged(account, balance=1000)


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
def test_an_image_at_the_longest_side_allowed_is_processed(size):
    data = grey_png(*size)
    info = reading.inspect_image(data, max_pixels=MAX_PIXELS)
    result = pipeline.remove_background(data, registry.get_session("u2netp"), max_pixels=MAX_PIXELS)
    out = Image.open(io.BytesIO(result.data))
    out.load()
    assert out.size == (info.width, info.height) == size
