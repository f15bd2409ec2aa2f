"""Awkward but valid images: a correct RGBA PNG of the image as displayed.

Runs the real u2netp model (the fast one) through the pipeline the
worker runs, on real photographs turned into each awkward variant.
"""

import io
import struct
import zlib
from unittest import mock

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from imaging import edges, pipeline, reading
from removal import registry, services
from removal.models import RemovalJob
from tests.images import encode, photo

pytestmark = pytest.mark.model

MAX_PIXELS = 50_000_000


@pytest.fixture(scope="module")
def session():
    if not registry.is_available("u2netp"):
        pytest.fail("u2netp weights are missing: run `make models`")
    return registry.get_session("u2netp")


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


def test_grayscale(session):
    gray = photo("camera")  # 512x512, mode L
    assert gray.mode == "L"
    out = cut(encode(gray, "PNG"), session)
    arr = rgba(out)
    opaque = arr[..., 3] > 0
    assert (arr[..., 0][opaque] == arr[..., 1][opaque]).all()
    assert visible_colour_error(out, np.dstack([np.asarray(gray)] * 3)) < 2


def test_palette_with_transparency_keeps_the_transparent_area_transparent(session):
    src = photo("astronaut").quantize(colors=255)
    pixels = np.array(src)
    pixels[:, :128] = 255  # the transparent index
    img = Image.fromarray(pixels, "P")
    img.putpalette(src.getpalette()[: 255 * 3] + [0, 0, 0])
    data = encode(img, "PNG", transparency=255)
    reread = Image.open(io.BytesIO(data))
    assert reread.mode == "P" and "transparency" in reread.info
    out = cut(data, session)
    assert (rgba(out)[:, :128, 3] == 0).all()


def png16(array: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    height, width, _ = array.shape
    raw = b"".join(b"\x00" + array[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_16_bit_rgb_png(session):
    rgb8 = np.asarray(photo("astronaut"))
    out = cut(png16(rgb8.astype(np.uint16) * 257), session)
    assert visible_colour_error(out, rgb8) < 2


def test_16_bit_grayscale_png_is_scaled_not_clipped(session):
    gray8 = np.asarray(photo("camera"))
    img16 = Image.fromarray(gray8.astype(np.uint16) * 257)
    data = encode(img16, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = cut(data, session)
    assert visible_colour_error(out, np.dstack([gray8] * 3)) < 2


def test_cmyk_jpeg(session):
    original = photo("astronaut")
    data = encode(original.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = cut(data, session)
    assert visible_colour_error(out, np.asarray(original)) < 12


def test_rgba_input_alpha_is_respected(session):
    img = photo("astronaut").convert("RGBA")
    alpha = np.full((512, 512), 255, dtype=np.uint8)
    alpha[:, 256:] = 0  # the right half was already cut away
    alpha[200:300, 100:200] = 128  # and a half-transparent patch on the subject
    img.putalpha(Image.fromarray(alpha, "L"))
    out = rgba(cut(encode(img, "PNG"), session))
    assert (out[:, 256:, 3] == 0).all()
    assert (out[200:300, 100:200, 3] <= 128).all()


@pytest.mark.parametrize(
    ("fmt", "params", "tolerance"), [("BMP", {}, 1), ("WEBP", {"quality": 90}, 12)]
)
def test_bmp_and_webp(session, fmt, params, tolerance):
    original = photo("astronaut")
    out = cut(encode(original, fmt, **params), session)
    assert out.size == (512, 512)
    assert visible_colour_error(out, np.asarray(original)) < tolerance


def test_exif_orientation_6_comes_out_upright_with_width_and_height_swapped(session):
    upright = photo("coffee")  # 600 x 400 as displayed
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 400 x 600 on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).size == (400, 600)

    out = cut(data, session)
    assert out.size == (600, 400)
    assert visible_colour_error(out, np.asarray(upright)) < 12


def test_a_1x1_image(session):
    out = cut(encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"), session)
    assert out.size == (1, 1)


def test_a_6000x120_strip(session):
    strip = photo("astronaut").resize((6000, 120))
    out = cut(encode(strip, "JPEG", quality=90), session)
    assert out.size == (6000, 120)


def test_an_animated_webp_is_cut_from_its_first_frame(session):
    first = photo("astronaut")
    second = Image.fromarray(255 - np.asarray(first))  # the negative
    buffer = io.BytesIO()
    first.save(
        buffer, format="WEBP", save_all=True, append_images=[second], lossless=True, duration=100
    )
    data = buffer.getvalue()
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2

    out = cut(data, session)
    assert visible_colour_error(out, np.asarray(first)) < 2


@pytest.mark.parametrize("name", ["PHOTO.JPG", "Фото отпуска 日本.png", "CAPS.WEBP"])
def test_upper_case_and_unicode_file_names(api_client, account, name):
    """The name is kept for display only; storage uses the job id."""
    data = encode(photo("chelsea"), "PNG")
    upload = SimpleUploadedFile(name, data)
    with mock.patch("removal.services.enqueue_job"):
        response = api_client.post(
            "/paid/image/remove/background", {"file": upload, "model": "u2netp"}, format="multipart"
        )
    assert response.status_code == 202, response.content
    job = RemovalJob.objects.get(pk=response.json()["task_id"])
    assert job.original_filename == name
    assert job.input_file.name == f"inputs/{job.id}.png"

    services.process_job(job_id=job.id)
    job.refresh_from_db()
    assert job.status == RemovalJob.Status.COMPLETED, job.error
    with job.output_file.open("rb") as handle:
        out = Image.open(handle)
        out.load()
    assert out.mode == "RGBA" and out.size == (451, 300)
