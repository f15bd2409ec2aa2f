"""The PNG encoder: standard PNGs that any decoder reads back to the same
pixels, whatever the size class, the filter or the process it runs in."""

import io
import multiprocessing
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from imaging import parallel, png
from imaging.pngfilter import adaptive_filter_rows
from tests.images import decode, photo


def _unfilter(kind: int, line: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """PNG's five filters undone byte by byte, as the specification writes them."""
    out = np.zeros_like(line)
    for i in range(len(line)):
        a = int(out[i - bpp]) if i >= bpp else 0
        b = int(above[i])
        c = int(above[i - bpp]) if i >= bpp else 0
        if kind == 0:
            predictor = 0
        elif kind == 1:
            predictor = a
        elif kind == 2:
            predictor = b
        elif kind == 3:
            predictor = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
        out[i] = (int(line[i]) + predictor) % 256
    return out


def read_png_strictly(png: bytes) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """A decoder independent of Pillow: chunk CRCs, one zlib stream, PNG filters."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, []
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, body = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        offset += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 6: 4}[colour_type]
    # zlib.decompress checks the zlib header, that the stream ends, and its Adler-32.
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), np.uint8)
    for y in range(height):
        kind, line = int(rows[y, 0]), rows[y, 1:]
        above = out[y - 1] if y else np.zeros_like(line)
        assert kind in (0, 1, 2, 3, 4), f"unknown filter {kind}"
        if kind == 2:  # the common case, fast enough for large images
            out[y] = line + above
        else:
            out[y] = _unfilter(kind, line, above, channels)
    return (width, height, depth, colour_type), out.reshape(height, width, channels)


def noisy_photo(shape: tuple[int, int, int]) -> np.ndarray:
    """A photo with noise: every filter type wins on some row."""
    img = photo("astronaut").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    pixels = np.asarray(img.convert("RGBA" if shape[2] == 4 else "RGB"), dtype=np.int16)
    if shape[2] == 1:
        pixels = pixels[..., :1]
    noise = np.random.default_rng(5).integers(-3, 4, pixels.shape)
    noisy = np.clip(pixels[..., : shape[2]] + noise, 0, 255).astype(np.uint8)
    noisy[: shape[0] // 4] = 0  # a transparent band, as in a cut-out
    return noisy


@pytest.mark.parametrize(
    "shape",
    [(1, 1, 4), (37, 53, 4), (48, 64, 3), (40, 30, 1), (300, 200, 4), (1100, 1000, 4)],
    ids=["one-pixel", "rgba", "rgb", "grey", "adaptive-in-bands", "up-filter-in-bands"],
)
@pytest.mark.parametrize("source", ["random", "photo"])
def test_its_png_encoder_writes_standard_pngs(shape, source, monkeypatch):
    # Small size classes so that every class and the banding run on small images.
    monkeypatch.setattr(png, "_PARALLEL_MIN_BYTES", 64 * 1024)
    monkeypatch.setattr(parallel, "BAND_MIN_ROWS", 16)
    monkeypatch.setattr(png, "_ENCODING_BY_SIZE", ((300_000, 7, True), (float("inf"), 5, False)))
    if source == "random":
        pixels = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    else:
        pixels = noisy_photo(shape)
    encoded = png.encode_png(pixels[..., 0] if shape[2] == 1 else pixels)

    header, decoded = read_png_strictly(encoded)
    assert header == (shape[1], shape[0], 8, {1: 0, 3: 2, 4: 6}[shape[2]])
    assert np.array_equal(decoded, pixels)
    via_pillow = np.asarray(Image.open(io.BytesIO(encoded))).reshape(shape)
    assert np.array_equal(via_pillow, pixels)


def test_its_adaptive_filter_uses_every_filter_type_on_a_noisy_photo():
    pixels = noisy_photo((300, 200, 4))
    rows = pixels.reshape(300, -1)
    filtered = np.empty((300, rows.shape[1] + 1), np.uint8)
    adaptive_filter_rows(rows, 0, 300, 4, filtered)
    assert set(filtered[:, 0].tolist()) >= {0, 1, 4}
    assert np.array_equal(read_png_strictly(png.encode_png(pixels))[1], pixels)


def test_its_adler32_combination_matches_zlibs_on_the_joined_bytes():
    rng = np.random.default_rng(3)
    for first_length, second_length in [(0, 1), (5, 70_000), (100_000, 65_521), (65_521, 3)]:
        first = rng.integers(0, 256, first_length, dtype=np.uint8).tobytes()
        second = rng.integers(0, 256, second_length, dtype=np.uint8).tobytes()
        combined = png._adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
        assert combined == zlib.adler32(first + second)


def _encode_large_image_in_child(pixels, results):
    results.put(png.encode_png(pixels) == png.encode_png(pixels.copy()))


def test_a_forked_worker_encodes_large_pngs_with_its_own_threads():
    """django-q2 forks its workers; the parent's encoder threads do not survive that."""
    pixels = np.random.default_rng(7).integers(0, 256, (1600, 1500, 4), dtype=np.uint8)
    png.encode_png(pixels)  # the parent now has an encoder pool

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_encode_large_image_in_child, args=(pixels, results))
    child.start()
    child.join(timeout=30)
    alive = child.is_alive()
    if alive:
        child.kill()

    assert not alive, "the child hung waiting for threads it does not have"
    assert results.get(timeout=5) is True


def test_without_the_compiled_filter_it_still_writes_standard_pngs(monkeypatch):
    """A read-only install where numba cannot cache: Up filter only, same pixels."""
    monkeypatch.setattr(png, "_adaptive_filter_state", [None])
    pixels = noisy_photo((60, 50, 4))
    encoded = png.encode_png(pixels)

    assert np.array_equal(read_png_strictly(encoded)[1], pixels)
    assert np.array_equal(np.asarray(decode(encoded)), pixels)


def test_a_large_opaque_image_is_compressed_faster_than_a_cut_out_of_its_size():
    """A background under the subject makes a whole photo: a faster level
    past the small sizes; cut-outs and small images keep theirs."""
    large = 3000 * (2000 * 4 + 1)
    assert png.png_encoding_for(large, opaque=True)[0] < png.png_encoding_for(large)[0]
    small = 500 * (500 * 4 + 1)
    assert png.png_encoding_for(small, opaque=True) == png.png_encoding_for(small)


def test_an_opaque_photo_gets_the_faster_level_and_decodes_to_the_same_pixels(monkeypatch):
    pixels = np.asarray(photo("astronaut").convert("RGBA").resize((1800, 1400)))
    levels = []
    encode_band = png._encode_band

    def spy(rows, first, stop, bpp, level, adaptive, last):
        levels.append(level)
        return encode_band(rows, first, stop, bpp, level, adaptive, last)

    monkeypatch.setattr(png, "_encode_band", spy)
    opaque = png.encode_png(pixels)
    assert set(levels) == {png._OPAQUE_LEVEL}
    assert np.array_equal(np.asarray(decode(opaque)), pixels)
    levels.clear()
    see_through = pixels.copy()
    see_through[0, 0, 3] = 0
    png.encode_png(see_through)
    assert png._OPAQUE_LEVEL not in levels
