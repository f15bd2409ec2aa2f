"""Broken, hostile and unsupported uploads: a clear JSON 4xx, no job, no charge."""

import io
import random
import struct
import zlib
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import MemoryFileUploadHandler, StopUpload
from PIL import Image, ImageFile

from doors.uploads import REFUSAL_ATTRIBUTE, MaxUploadSizeHandler
from imaging import errors, reading
from tests.images import encode, photo, photo_bytes, solid_png
from tests.removal.helpers import assert_json_error, assert_nothing_charged

URL = "/paid/image/remove/background"


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims ``width`` x ``height``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * 64))  # one short row: nowhere near the claim
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'


def post(client, data: bytes, name: str = "upload.png", content_type="application/octet-stream"):
    upload = SimpleUploadedFile(name, data, content_type=content_type)
    return client.post(URL, {"file": upload, "model": "u2netp"}, format="multipart")


@pytest.mark.weights
@pytest.mark.parametrize(
    ("label", "make", "status", "code", "says"),
    [
        ("zero bytes", lambda: b"", 400, "invalid_image", "empty"),
        (
            "truncated JPEG",
            lambda: photo_bytes("astronaut")[: len(photo_bytes("astronaut")) // 2],
            400,
            "invalid_image",
            "truncated",
        ),
        (
            "truncated PNG",
            lambda: photo_bytes("coffee", "PNG")[: len(photo_bytes("coffee", "PNG")) // 2],
            400,
            "invalid_image",
            "PNG",
        ),
        (
            "random bytes",
            lambda: random.Random(4).randbytes(5000),
            415,
            "unsupported_format",
            "Unsupported image format: unknown",
        ),
        (
            "a text file named .png",
            lambda: b"hello, this is not a picture\n" * 20,
            415,
            "unsupported_format",
            "Unsupported image format: unknown",
        ),
        ("SVG", lambda: SVG, 415, "unsupported_format", "Unsupported image format: svg"),
        (
            "TIFF",
            lambda: encode(photo("chelsea"), "TIFF"),
            415,
            "unsupported_format",
            "Unsupported image format: tiff",
        ),
        (
            "animated GIF",
            animated_gif,
            415,
            "unsupported_format",
            "Unsupported image format: gif. Supported: png, jpg, jpeg, webp, bmp",
        ),
        (
            "decompression bomb",
            lambda: png_declaring(60000, 60000),
            413,
            "image_too_large",
            "absurd number of pixels",
        ),
    ],
)
def test_it_refuses_bad_input_with_json_and_charges_nothing(
    api_client, account, label, make, status, code, says
):
    response = post(api_client, make())
    body = assert_json_error(response, status, code)
    assert says in body["error"], (label, body)
    assert_nothing_charged(account, balance=1000)


def test_it_refuses_a_decompression_bomb_from_its_header_without_decoding(settings):
    bomb = png_declaring(60000, 60000)
    assert len(bomb) < 200
    # Any attempt to decode pixels would go through ImageFile.load.
    with mock.patch.object(ImageFile.ImageFile, "load", side_effect=AssertionError("decoded")):
        with pytest.raises(errors.TooManyPixels):
            reading.inspect_image(bomb, max_pixels=settings.MAX_IMAGE_PIXELS)
        with pytest.raises(errors.TooManyPixels):
            reading.decode_for_model(bomb, max_pixels=settings.MAX_IMAGE_PIXELS)


@pytest.mark.weights
def test_it_refuses_a_declared_size_over_the_pixel_limit_below_pillows_guard(
    api_client, account, settings
):
    # 9000 x 6000 = 54 M pixels: over our 50 M default, under Pillow's own guard.
    response = post(api_client, png_declaring(9000, 6000))
    body = assert_json_error(response, 413, "image_too_large")
    assert "9000x6000" in body["error"] and "50,000,000" in body["error"]
    assert_nothing_charged(account, balance=1000)


@pytest.mark.weights
def test_it_refuses_a_real_image_over_the_pixel_limit(api_client, account, settings):
    settings.MAX_IMAGE_PIXELS = 10_000
    response = post(api_client, solid_png(200, 100))
    body = assert_json_error(response, 413, "image_too_large")
    assert "200x100" in body["error"]
    assert_nothing_charged(account, balance=1000)


def test_it_refuses_a_body_whose_length_is_over_the_limit_before_reading_it(
    api_client, account, settings
):
    settings.MAX_UPLOAD_BYTES = 100_000
    with mock.patch.object(
        MaxUploadSizeHandler, "receive_data_chunk", side_effect=AssertionError("read the body")
    ):
        response = post(api_client, b"\x89PNG\r\n\x1a\n" + b"\0" * 1_000_000)
    body = assert_json_error(response, 413, "file_too_large")
    assert "the limit is 0.1 MB" in body["error"]
    assert_nothing_charged(account, balance=1000)


def test_it_stops_reading_a_file_part_once_it_passes_the_limit(api_client, account, settings):
    """Under the Content-Length slack but over the limit: cut off while streaming."""
    settings.MAX_UPLOAD_BYTES = 100_000
    seen_downstream = []
    original = MaxUploadSizeHandler.receive_data_chunk

    def counting(self, raw_data, start):
        passed = original(self, raw_data, start)
        seen_downstream.append(len(passed))
        return passed

    with mock.patch.object(MaxUploadSizeHandler, "receive_data_chunk", counting):
        response = post(api_client, b"\x89PNG\r\n\x1a\n" + b"\0" * 150_000)
    assert_json_error(response, 413, "file_too_large")
    # Django's other handlers (memory, temporary file) never got more than
    # the limit: the rest of the body was not stored anywhere.
    assert 0 < sum(seen_downstream) <= 100_000
    assert_nothing_charged(account, balance=1000)


def test_the_size_guard_stops_the_parse_on_the_first_chunk_past_the_limit(rf):
    request = rf.post("/")
    handler = MaxUploadSizeHandler(request, limit=10)
    handler.new_file("file", "a.png", "image/png", 100)
    assert handler.receive_data_chunk(b"12345", 0) == b"12345"
    assert handler.receive_data_chunk(b"12345", 5) == b"12345"
    with pytest.raises(StopUpload) as stop:
        handler.receive_data_chunk(b"1", 10)
    assert stop.value.connection_reset  # the rest of the body stays unread
    assert getattr(request, REFUSAL_ATTRIBUTE) == "File too large: the limit is 0.0 MB."


@pytest.fixture
def web_client(account):
    """A logged-in customer whose client enforces CSRF like a browser."""
    from django.test import Client

    from accounts.services import add_member

    member = add_member(account=account, username="alice", password="pw-alice-123")
    client = Client(enforce_csrf_checks=True)
    client.force_login(member.user)
    client.get("/")  # sets the csrftoken cookie
    return client


@pytest.mark.parametrize("size", [1_000_000, 150_000])
def test_the_web_page_refuses_an_oversized_upload_with_413_not_a_csrf_error(
    web_client, account, settings, size
):
    """The CSRF middleware parses the body before the view: the guard holds there too."""
    settings.MAX_UPLOAD_BYTES = 100_000
    token = web_client.cookies["csrftoken"].value
    upload = SimpleUploadedFile("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * size)
    stored = []
    original = MemoryFileUploadHandler.receive_data_chunk

    def counting(self, raw_data, start):
        stored.append(len(raw_data))
        return original(self, raw_data, start)

    with mock.patch.object(MemoryFileUploadHandler, "receive_data_chunk", counting):
        response = web_client.post(
            "/jobs/",
            {"csrfmiddlewaretoken": token, "file": upload, "model": "u2netp"},
            HTTP_ACCEPT="application/json",
        )
    assert_json_error(response, 413, "file_too_large")
    assert sum(stored) <= 100_000  # never more than the limit was kept
    assert_nothing_charged(account, balance=1000)


@pytest.mark.weights
def test_a_file_at_exactly_the_limit_is_accepted(api_client, account, settings):
    data = solid_png(20, 20)
    settings.MAX_UPLOAD_BYTES = len(data)
    with mock.patch("removal.services.enqueue_job"):
        response = post(api_client, data)
    assert response.status_code == 202, response.content
