"""Damaged uploads: the API's check refuses them, or the worker finishes them.

A seeded mutational fuzzer over small real photos in every supported
format: bit flips, inserted, deleted and overwritten bytes, truncations,
and damage inside the format's own structure (PNG chunks with their CRC
fixed so the decoder sees the damage, JPEG segments, WebP chunks, BMP
headers). For every mutant, either ``inspect_image`` refuses it with a
``PipelineError`` (the service answers 4xx before charging), or the
worker's ``decode_for_model`` and ``remove_background`` complete on it.
Anything else is a customer charged for a job that was bound to fail.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from functools import cache

import pytest
from PIL import Image

from imaging import errors, pipeline, png, reading
from removal import registry
from tests.images import encode, photo

# Small enough that a mutant that survives costs little to process; the
# same limit on both sides, as in the service.
MAX_PIXELS = 1_000_000
MUTANTS_PER_SOURCE = 32  # 8 sources: 256 mutants, about 100 get past the check


def _orientation_6_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()


def _source_image(mode: str) -> Image.Image:
    img = photo("chelsea").resize((72, 48), Image.Resampling.LANCZOS)
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(Image.linear_gradient("L").resize(img.size))
    elif mode == "P":
        img = img.quantize(colors=64)
    return img


# name -> (format, bytes): each format's common variants.
SOURCES: dict[str, Callable[[], bytes]] = {
    "png-rgb": lambda: encode(_source_image("RGB"), "PNG"),
    "png-rgba-exif": lambda: encode(_source_image("RGBA"), "PNG", exif=_orientation_6_exif()),
    "jpeg-baseline-exif": lambda: encode(
        _source_image("RGB"), "JPEG", quality=85, exif=_orientation_6_exif()
    ),
    "jpeg-progressive": lambda: encode(_source_image("RGB"), "JPEG", quality=85, progressive=True),
    "webp-lossy": lambda: encode(_source_image("RGB"), "WEBP", quality=80),
    "webp-lossless-rgba": lambda: encode(_source_image("RGBA"), "WEBP", lossless=True),
    "bmp-rgb": lambda: encode(_source_image("RGB"), "BMP"),
    "bmp-palette": lambda: encode(_source_image("P"), "BMP"),
}


# --- Mutations: each takes (data, rng) and returns (description, mutant) ----


def flip_bits(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    out = bytearray(data)
    spots = [rng.randrange(len(out) * 8) for _ in range(rng.randint(1, 4))]
    for bit in spots:
        out[bit // 8] ^= 1 << (bit % 8)
    return f"flip bits {spots}", bytes(out)


def insert_bytes(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    at, extra = rng.randrange(len(data) + 1), rng.randbytes(rng.randint(1, 16))
    return f"insert {extra.hex()} at {at}", data[:at] + extra + data[at:]


def delete_bytes(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    at, count = rng.randrange(len(data)), rng.randint(1, 16)
    return f"delete {count} at {at}", data[:at] + data[at + count :]


def truncate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    at = rng.randrange(1, len(data))
    return f"truncate at {at}", data[:at]


def overwrite_run(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    at, count = rng.randrange(len(data)), rng.randint(1, 32)
    fill = rng.choice([b"\x00" * count, b"\xff" * count, rng.randbytes(count)])
    return f"overwrite {count} at {at} with {fill[:4].hex()}..", data[:at] + fill + data[
        at + count :
    ]


def _png_chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, kind, body length) of each chunk."""
    chunks, offset = [], 8
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append((offset, data[offset + 4 : offset + 8], length))
        offset += 12 + length
    return chunks


def _jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(offset of the body, body length) of each marker segment, the scan's data included."""
    segments, offset = [], 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        segments.append((offset + 4, length - 2))
        offset += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the end
            segments.append((offset, len(data) - 2 - offset))
            break
    return segments


def damage_structure(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Damage inside one unit of the format, keeping its framing (and PNG CRCs) valid."""
    out = bytearray(data)
    if data.startswith(png.PNG_SIGNATURE):
        offset, kind, length = rng.choice(_png_chunks(data))
        body = offset + 8
        for _ in range(rng.randint(1, 3)):
            if length:
                out[body + rng.randrange(length)] = rng.randrange(256)
        if rng.random() < 0.2:  # or lie about the chunk's length
            out[offset : offset + 4] = struct.pack(">I", rng.randrange(2 * length + 16))
        else:
            crc = zlib.crc32(bytes(out[offset + 4 : body + length]))
            out[body + length : body + length + 4] = struct.pack(">I", crc)
        return f"damage PNG chunk {kind!r} at {offset}", bytes(out)
    if data.startswith(b"\xff\xd8"):
        body, length = rng.choice(_jpeg_segments(data))
        spots = [body + rng.randrange(max(1, length)) for _ in range(rng.randint(1, 3))]
        for spot in spots:
            out[spot] = rng.randrange(256)
        return f"damage JPEG segment at {body}: bytes {spots}", bytes(out)
    if data.startswith(b"RIFF"):
        # The VP8/VP8L/VP8X headers and the first bytes of the bitstream.
        spots = [rng.randrange(12, min(len(data), 64)) for _ in range(rng.randint(1, 3))]
        for spot in spots:
            out[spot] = rng.randrange(256)
        return f"damage WebP headers: bytes {spots}", bytes(out)
    # BMP: the file and info headers (sizes, offsets, depth, compression, palette).
    spots = [rng.randrange(2, min(len(data), 70)) for _ in range(rng.randint(1, 2))]
    for spot in spots:
        out[spot] = rng.choice([0, 1, 0xFF, rng.randrange(256)])
    return f"damage BMP header: bytes {spots}", bytes(out)


MUTATIONS = (
    flip_bits,
    insert_bytes,
    delete_bytes,
    truncate,
    overwrite_run,
    damage_structure,
    damage_structure,  # the mutants most likely to get past a shallow check
)


@cache
def mutants(source: str) -> tuple[tuple[str, bytes], ...]:
    """The same mutants on every run: the seed is the source's name."""
    data = SOURCES[source]()
    rng = random.Random(f"fuzz-{source}")
    found = []
    for index in range(MUTANTS_PER_SOURCE):
        description, mutant = rng.choice(MUTATIONS)(data, rng)
        if mutant != data:
            found.append((f"{source} #{index}: {description}", mutant))
    return tuple(found)


def checked(data: bytes) -> reading.ImageInfo | None:
    """What the API's check says: the size as displayed, or None for a refusal."""
    try:
        return reading.inspect_image(data, max_pixels=MAX_PIXELS)
    except errors.PipelineError as exc:
        message = str(exc)
        assert message and "0x" not in message and "object at" not in message, message
        return None


@pytest.mark.parametrize("source", SOURCES)
def test_every_mutant_the_check_accepts_decodes_in_the_worker_at_the_size_it_promised(source):
    for description, data in mutants(source):
        info = checked(data)
        if info is None:
            continue
        try:
            img = reading.decode_for_model(data, max_pixels=MAX_PIXELS)
        except Exception as exc:
            pytest.fail(f"{description}: accepted, then the worker failed: {exc!r}")
        assert img.size == (info.width, info.height), description
        assert img.mode in ("RGB", "RGBA"), description


def test_the_fuzzer_makes_both_refused_and_accepted_mutants_of_every_format():
    """A fuzzer whose mutants all fail (or all pass) the check would test nothing."""
    for source in SOURCES:
        verdicts = {checked(data) is None for _, data in mutants(source)}
        assert verdicts == {True, False}, source


@pytest.fixture(scope="module")
def u2netp():
    return registry.get_session("u2netp")


@pytest.mark.model
@pytest.mark.parametrize("source", SOURCES)
def test_every_mutant_is_refused_before_the_charge_or_completes(u2netp, source):
    for description, data in mutants(source):
        info = checked(data)
        if info is None:
            continue
        try:
            result = pipeline.remove_background(data, u2netp, max_pixels=MAX_PIXELS)
        except Exception as exc:
            pytest.fail(f"{description}: accepted and charged, then failed: {exc!r}")
        assert (result.width, result.height) == (info.width, info.height), description
        out = Image.open(io.BytesIO(result.data))
        out.load()
        assert out.size == (info.width, info.height), description
