"""Damaged copies of real images, made by someone who knows each format.

The fuzzer (``test_pipeline_fuzz.py``) wants mutants that get past the
framing of a file and reach the decoder inside it: a bit flipped at random
in a PNG mostly breaks a chunk's CRC, and the file is refused before any
pixel is read. So besides plain byte damage, each format has mutations that
keep its framing valid and damage what is framed: PNG chunk payloads with
their lengths and CRCs fixed, the scanlines inside IDAT (inflated, damaged
and deflated again) and the deflate stream itself, JPEG segments with their
lengths fixed and the entropy-coded scans with their markers intact, WebP
chunks with the RIFF sizes fixed, BMP header fields and pixel runs.

``FORMATS`` has one entry per accepted format: the files it starts from and
its structure-aware mutations. Adding a format is adding its entry (the
fuzzer fails until every format the pipeline accepts has one).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests.images import encode, photo
from tests.imaging.mutants.bmp import bmp_header_field, bmp_pixels, rle8_bmp
from tests.imaging.mutants.damage import Mutant, damage_bytes
from tests.imaging.mutants.jpeg import (
    jpeg_entropy,
    jpeg_frame_field,
    jpeg_segment_order,
    jpeg_segment_payload,
)
from tests.imaging.mutants.png import (
    png_chunk_order,
    png_chunk_payload,
    png_compressed_idat,
    png_header_field,
    png_inflated_idat,
)
from tests.imaging.mutants.webp import (
    webp_bitstream,
    webp_chunk_order,
    webp_chunk_payload,
    webp_header_field,
)

Mutation = Callable[[bytes, random.Random], Mutant]


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def source_image(mode: str = "RGB") -> Image.Image:
    """A real photo, small so that each surviving mutant costs little."""
    img = photo("chelsea").resize((72, 48), Image.Resampling.LANCZOS)
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(Image.linear_gradient("L").resize(img.size))
    elif mode == "P":
        img = img.quantize(colors=64)
    elif mode == "PT":  # a palette with a transparent entry
        img = img.quantize(colors=64)
        img.info["transparency"] = 0
    elif mode != "RGB":
        img = img.convert(mode)
    return img


def _png_sixteen_bit_grey() -> bytes:
    levels = np.asarray(source_image("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(levels), "PNG")


@dataclass(frozen=True)
class Format:
    sources: dict[str, Callable[[], bytes]]
    structural: tuple[Mutation, ...]  # mutations that keep the framing valid


FORMATS: dict[str, Format] = {
    "png": Format(
        sources={
            "png-rgb": lambda: encode(source_image(), "PNG"),
            "png-rgba-exif": lambda: encode(source_image("RGBA"), "PNG", exif=_exif(6)),
            "png-palette-trns": lambda: encode(source_image("PT"), "PNG", transparency=0),
            "png-grey16": _png_sixteen_bit_grey,
        },
        structural=(
            png_chunk_payload,
            png_header_field,
            png_inflated_idat,
            png_inflated_idat,
            png_compressed_idat,
            png_chunk_order,
        ),
    ),
    "jpeg": Format(
        sources={
            "jpeg-baseline-exif": lambda: encode(source_image(), "JPEG", quality=85, exif=_exif(6)),
            "jpeg-progressive": lambda: encode(
                source_image(), "JPEG", quality=85, progressive=True
            ),
            "jpeg-grey-restarts": lambda: encode(
                source_image("L"), "JPEG", quality=80, restart_marker_blocks=4
            ),
            "jpeg-cmyk-444": lambda: encode(
                source_image("CMYK"), "JPEG", quality=80, subsampling=0
            ),
        },
        structural=(
            jpeg_segment_payload,
            jpeg_frame_field,
            jpeg_entropy,
            jpeg_entropy,
            jpeg_segment_order,
        ),
    ),
    "webp": Format(
        sources={
            "webp-lossy": lambda: encode(source_image(), "WEBP", quality=80),
            "webp-lossless-rgba": lambda: encode(source_image("RGBA"), "WEBP", lossless=True),
            "webp-lossy-alpha-exif": lambda: encode(
                source_image("RGBA"), "WEBP", quality=80, exif=_exif(3)
            ),
        },
        structural=(
            webp_chunk_payload,
            webp_header_field,
            webp_bitstream,
            webp_bitstream,
            webp_chunk_order,
        ),
    ),
    "bmp": Format(
        sources={
            "bmp-rgb": lambda: encode(source_image(), "BMP"),
            "bmp-palette": lambda: encode(source_image("P"), "BMP"),
            "bmp-32bit": lambda: encode(source_image("RGBA"), "BMP"),
            "bmp-rle8": lambda: rle8_bmp(source_image()),
        },
        structural=(bmp_header_field, bmp_pixels),
    ),
}

SOURCES: dict[str, tuple[str, Callable[[], bytes]]] = {
    name: (fmt, make) for fmt, spec in FORMATS.items() for name, make in spec.sources.items()
}


def mutate(fmt: str, data: bytes, rng: random.Random) -> Mutant:
    """One mutant: three in four know the format's structure, the rest is byte damage."""
    if rng.random() < 0.75:
        return rng.choice(FORMATS[fmt].structural)(data, rng)
    change, mutant = damage_bytes(data, rng)
    return f"bytes: {change}", mutant


def mutants(source: str, *, seed: str, count: int) -> list[Mutant]:
    """``count`` mutants of ``source`` from the random stream named ``seed``."""
    fmt, make = SOURCES[source]
    data = make()
    rng = random.Random(f"{seed}/{source}")
    found = []
    for index in range(count):
        description, mutant = mutate(fmt, data, rng)
        if mutant != data:
            found.append((f"{source} #{index}: {description}", mutant))
    return found
