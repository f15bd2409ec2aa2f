"""Our PNG writer: rembg's bytes or fewer, in a fraction of Pillow's time."""

from __future__ import annotations

import logging
import threading
import time
import zlib

import numpy as np
from PIL import Image

from imaging import parallel

logger = logging.getLogger(__name__)

# --- PNG encoding -----------------------------------------------------------
#
# rembg saves with Pillow at zlib level 6: every row tried with all five
# PNG filters in C, then zlib's slow, lazy-matching deflate, ~2 s at 12 MP.
# This writer gets the same bytes-or-fewer for a fraction of that:
#
# * rows are filtered by libpng's own adaptive heuristic (``pngfilter``,
#   one compiled pass) where the image is small enough to be encoded on
#   one thread; large images use the "Up" filter, one numpy subtraction,
#   which compresses as well on big photos and costs a quarter as much;
# * zlib-ng (``zlib_ng``: the same format, SIMD matchers) compresses at a
#   level per size: level 7 (lazy matching) where a file is small and each
#   byte saved is a larger share of it, a lower level on large images;
# * large images are compressed in horizontal bands on several threads
#   (filtering and deflate release the GIL), joined with sync flushes as
#   pigz does, and their Adler-32s combined: one ordinary zlib stream in
#   an ordinary PNG (one IHDR, one IDAT, IEND).
#
# Sizes and times per level are in bench/notes.md (``make bench`` measures
# them against rembg's own PNG of the same cut-out).

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_FILTER_UP = 2
# Below this many bytes of rows, one thread is faster than a hand-off.
_PARALLEL_MIN_BYTES = 1024 * 1024
# (most bytes of filtered rows, zlib-ng level, adaptive filter): the first
# line that fits an image is used.
_MB = 1024 * 1024
_ENCODING_BY_SIZE: tuple[tuple[float, int, bool], ...] = (
    (2 * _MB, 7, True),  # up to ~0.5 MP RGBA
    (8 * _MB, 6, True),  # ~2 MP
    (32 * _MB, 6, False),  # ~8 MP
    (float("inf"), 5, False),
)
# An opaque image past the small sizes (a background image under the
# subject) is a whole photo, not a cut-out that is mostly clear: there
# zlib-ng's level 3 writes ~6 % more bytes than level 5 in about half the
# time (12 MP photos: 0.21-0.30 s against 0.46-0.57 s; bench/notes.md).
_OPAQUE_LEVEL = 3
_ADLER_BASE = 65521


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (
        len(body).to_bytes(4, "big")
        + kind
        + body
        + zlib.crc32(body, zlib.crc32(kind)).to_bytes(4, "big")
    )


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two joined pieces from each piece's (zlib's adler32_combine)."""
    rem = second_length % _ADLER_BASE
    low1, high1 = first & 0xFFFF, first >> 16
    low2, high2 = second & 0xFFFF, second >> 16
    low = (low1 + low2 - 1) % _ADLER_BASE
    high = (rem * low1 + high1 + high2 - rem) % _ADLER_BASE
    return (high << 16) | low


def png_encoding_for(filtered_bytes: int, *, opaque: bool = False) -> tuple[int, bool]:
    """(zlib-ng level, adaptive filter?) for an image of this many bytes of
    rows; ``opaque``: it has no transparent pixel."""
    for most, level, adaptive in _ENCODING_BY_SIZE:
        if filtered_bytes <= most:
            if opaque and not adaptive:
                level = min(level, _OPAQUE_LEVEL)
            return level, adaptive
    raise AssertionError("the last size class has no limit")


_adaptive_filter_state: list = []
_adaptive_filter_lock = threading.Lock()


def _adaptive_filter():
    """The compiled adaptive filter, or None (then "Up") where numba cannot build it.

    numba needs a writable cache (next to the code, or NUMBA_CACHE_DIR):
    a read-only install must still encode, a little larger.
    """
    with _adaptive_filter_lock:
        return _load_adaptive_filter()


def _load_adaptive_filter():
    if not _adaptive_filter_state:
        try:
            from imaging.pngfilter import adaptive_filter_rows

            probe = np.zeros((2, 4), dtype=np.uint8)
            adaptive_filter_rows(probe, 0, 2, 4, np.empty((2, 5), dtype=np.uint8))
            _adaptive_filter_state.append(adaptive_filter_rows)
        except Exception:
            logger.warning("PNG adaptive filter unavailable; using the Up filter", exc_info=True)
            _adaptive_filter_state.append(None)
    return _adaptive_filter_state[0]


def _encode_band(
    rows: np.ndarray,
    first: int,
    stop: int,
    bpp: int,
    level: int,
    adaptive: bool,
    last: bool,
) -> tuple[bytes, int, int]:
    """Rows first..stop-1 filtered and deflated: (raw deflate, its Adler-32, bytes in)."""
    from zlib_ng import zlib_ng

    filtered = np.empty((stop - first, rows.shape[1] + 1), dtype=np.uint8)
    adaptive_filter_rows = _adaptive_filter() if adaptive else None
    if adaptive_filter_rows is not None:
        adaptive_filter_rows(rows, first, stop, bpp, filtered)
    else:
        filtered[:, 0] = _PNG_FILTER_UP
        if first == 0:
            filtered[0, 1:] = rows[0]
            np.subtract(rows[1:stop], rows[: stop - 1], out=filtered[1:, 1:])
        else:
            np.subtract(rows[first:stop], rows[first - 1 : stop - 1], out=filtered[:, 1:])
    compressor = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15, 8)
    deflated = compressor.compress(filtered) + compressor.flush(
        zlib_ng.Z_FINISH if last else zlib_ng.Z_SYNC_FLUSH
    )
    return deflated, zlib_ng.adler32(filtered), filtered.nbytes


def warm_up_encoder() -> float:
    """Compiles (or loads from numba's disk cache) the adaptive filter; returns seconds.

    The first compile takes a few seconds; a worker pays it when it starts,
    not in its first job.
    """
    started = time.monotonic()
    encode_png(np.zeros((2, 2, 4), dtype=np.uint8))
    return time.monotonic() - started


def encode_png(img: Image.Image | np.ndarray, *, compress_level: int | None = None) -> bytes:
    """An 8-bit RGBA (or RGB/L) PNG of ``img``.

    ``compress_level`` (zlib-ng's 1-9) overrides the level chosen by size.
    """
    pixels = np.asarray(img, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    height, width, channels = pixels.shape
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = np.ascontiguousarray(pixels).reshape(height, width * channels)
    filtered_bytes = height * (width * channels + 1)
    # Only large images are worth the look at their alpha (a few ms at 12 MP).
    opaque = channels == 4 and filtered_bytes > 8 * _MB and pixels[..., 3].min() == 255
    level, adaptive = png_encoding_for(filtered_bytes, opaque=opaque)
    if compress_level is not None:
        level = compress_level

    threads = parallel.cpu_threads()
    if threads > 1 and filtered_bytes >= _PARALLEL_MIN_BYTES:
        bands = min(threads, max(1, height // parallel.BAND_MIN_ROWS))
    else:
        bands = 1
    edges = np.linspace(0, height, bands + 1, dtype=int).tolist()
    args = [
        (rows, edges[i], edges[i + 1], channels, level, adaptive, i == bands - 1)
        for i in range(bands)
    ]
    if bands == 1:
        pieces = [_encode_band(*args[0])]
    else:
        pieces = list(parallel.shared_pool(bands).map(lambda band: _encode_band(*band), args))
    checksum = pieces[0][1]
    for _, adler, length in pieces[1:]:
        checksum = _adler32_combine(checksum, adler, length)
    # zlib's header for a 32 KiB window (its level bits are informative only).
    stream = b"".join(
        [b"\x78\x9c", *(piece for piece, _, _ in pieces), checksum.to_bytes(4, "big")]
    )
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, colour_type, 0, 0, 0])
    return b"".join(
        [
            PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", stream),
            _png_chunk(b"IEND", b""),
        ]
    )


# --- The model --------------------------------------------------------------
#
# rembg's sessions for these models all do the same thing with different
# constants: LANCZOS-resize to a square, divide by the image's maximum,
# subtract a mean and divide by a deviation (in float64), run, min-max
