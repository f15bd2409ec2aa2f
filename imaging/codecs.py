"""Encoders for every output format (``formats.OUTPUT_FORMATS``), one each."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import numpy as np
from PIL import Image

from imaging.png import encode_png

JPEG_QUALITY = 90
# Lossless WebP's effort knobs: method 0 / quality 0 is 2-4x faster than the
# defaults at 12 MP for ~20 % more bytes, still ~25 % smaller than our PNG
# (measured in the report of the options branch; bench/bench_options.py).
WEBP_METHOD = 0
WEBP_QUALITY = 0


def encode_webp(img: Image.Image) -> bytes:
    """Lossless WebP, with alpha when the image has it."""
    if img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGB")
    buffer = io.BytesIO()
    img.save(buffer, "WEBP", lossless=True, method=WEBP_METHOD, quality=WEBP_QUALITY)
    return buffer.getvalue()


def encode_jpg(img: Image.Image) -> bytes:
    """JPEG at JPEG_QUALITY (no alpha: the finishing step flattened it)."""
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def encode_zip(img: Image.Image) -> bytes:
    """remove.bg's zip: ``color.jpg`` (the colours, no alpha) and ``alpha.png``
    (the alpha, 8-bit grayscale), both at the output's size; together they
    are the PNG. Stored, not deflated: both are compressed already."""
    rgba = img if img.mode == "RGBA" else img.convert("RGBA")
    colour = io.BytesIO()
    rgba.convert("RGB").save(colour, "JPEG", quality=JPEG_QUALITY)
    alpha = encode_png(np.asarray(rgba.getchannel("A")))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("color.jpg", colour.getvalue())
        archive.writestr("alpha.png", alpha)
    return buffer.getvalue()


# One encoder per row of ``formats.OUTPUT_FORMATS`` (a test holds them equal).
ENCODERS: dict[str, Callable[[Image.Image], bytes]] = {
    "png": encode_png,
    "jpg": encode_jpg,
    "webp": encode_webp,
    "zip": encode_zip,
}


def encode(img: Image.Image, fmt: str) -> bytes:
    """The image in output format ``fmt``: PNG with our fast encoder, lossless
    WebP, JPEG, or remove.bg's zip."""
    encoder = ENCODERS.get(fmt)
    if encoder is None:
        raise ValueError(f"unknown format {fmt!r}")
    return encoder(img)
