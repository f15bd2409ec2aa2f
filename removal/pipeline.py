"""Bytes in, PNG bytes out. No Django here, so it can be benchmarked and
tested on its own and reused by any caller.

Two entry points:

* ``inspect_image``: the cheap, defensive check the API runs before it
  charges anything (format sniffed from the bytes, size from the header,
  a decode to prove the file is whole).
* ``remove_background``: what the worker runs (decode, model, cut-out,
  PNG encode), reporting progress through a callback.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile

from removal.finishing import DEFAULT_OPTIONS, Finished, OutputOptions, finish_taking

SUPPORTED_FORMATS = ("png", "jpeg", "webp", "bmp")
SUPPORTED_NAMES = "png, jpg, jpeg, webp, bmp"
# The media type of each accepted input format (outputs: finishing.CONTENT_TYPES).
INPUT_CONTENT_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "bmp": "image/bmp",
}
# How each format is named to a customer.
_FORMAT_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP", "bmp": "BMP"}

# The longest side the pipeline can finish. A 1x50,000,000 image is within
# the pixel limit, but resizing the mask back to it needs more resampling
# coefficients than Pillow allows (and gigabytes to hold them). 65,535 is
# also the most a JPEG can declare, so no photograph comes near it.
DEFAULT_MAX_SIDE = 65_535

logger = logging.getLogger(__name__)

# Pillow's own bomb guard is global; ours is per call (max_pixels), so keep
# Pillow's as a last resort only and never let it load truncated files.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class PipelineError(Exception):
    """Base for everything the pipeline refuses; the message is for humans."""


class UnsupportedFormat(PipelineError):
    def __init__(self, detected: str):
        self.detected = detected
        super().__init__(f"Unsupported image format: {detected}. Supported: {SUPPORTED_NAMES}")


class UndecodableImage(PipelineError):
    pass


def _damaged(fmt: str, exc: BaseException | None = None) -> UndecodableImage:
    """What went wrong, in words a customer can act on; never Pillow's own text.

    Pillow's messages name its modules, limits and buffer objects
    (``PngImagePlugin.MAX_TEXT_CHUNK``, ``<_io.BytesIO object at 0x...>``).
    """
    name = _FORMAT_NAMES.get(fmt, fmt.upper())
    if isinstance(exc, ValueError) and "MAX_TEXT_CHUNK" in str(exc):
        return UndecodableImage(
            f"The {name} file carries a text or metadata block too large to read safely."
        )
    return UndecodableImage(f"The {name} file is damaged or truncated and could not be decoded.")


class TooManyPixels(PipelineError):
    def __init__(self, width: int, height: int, max_pixels: int):
        self.width, self.height, self.max_pixels = width, height, max_pixels
        super().__init__(
            f"Image is {width}x{height} ({width * height:,} pixels); "
            f"the limit is {max_pixels:,} pixels."
        )


class SideTooLong(TooManyPixels):
    """Within the pixel limit but too long and thin to process (e.g. 1x50,000,000)."""

    def __init__(self, width: int, height: int, max_side: int):
        self.width, self.height, self.max_side = width, height, max_side
        PipelineError.__init__(
            self,
            f"Image is {width}x{height}; the longest side allowed is {max_side:,} pixels.",
        )


class DecompressionBomb(TooManyPixels):
    """Pillow's own guard fired while reading the header: far too many pixels."""

    def __init__(self):
        PipelineError.__init__(
            self, "The image declares an absurd number of pixels and was refused unread."
        )


class DeadlineExceeded(PipelineError):
    pass


@dataclass(frozen=True)
class ImageInfo:
    format: str  # one of SUPPORTED_FORMATS
    width: int  # as displayed, EXIF orientation applied
    height: int


class NoSubjectFound(PipelineError):
    """An option needs the subject (crop) and the mask is empty."""


# What ``remove_background`` returns: the finished file and its geometry.
Cutout = Finished


ProgressCallback = Callable[[int, str], None]

# Magic numbers of the formats people actually upload, so the refusal can
# name what was sent ("gif", "tiff", ...) rather than "unknown".
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"BM", 0, "bmp"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"%PDF", 0, "pdf"),
    (b"8BPS", 0, "psd"),
    (b"\x00\x00\x01\x00", 0, "ico"),
    (b"\xff\x0a", 0, "jxl"),
    (b"\x00\x00\x00\x0cJXL ", 0, "jxl"),
)


def sniff_format(head: bytes) -> str:
    """Names the format from the first bytes; never trusts a file name."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "heic"
        return "mp4"
    for magic, offset, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    text = head[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in head[:2048].lower()):
        return "svg"
    if text.startswith(b"<"):
        return "xml/html"
    return "unknown"


# EXIF orientation -> the turn that shows the image upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8), 1 when absent or unreadable.

    Call it only after ``load()``: on a PNG, ``getexif`` decodes the whole
    image to reach an eXIf chunk after the pixels, and a decode error there
    must not be mistaken for "no orientation". Unreadable EXIF is ignored in
    the API's check and in the worker alike, so both agree on the size.
    """
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:
        return 1
    return orientation if isinstance(orientation, int) and orientation in _UPRIGHT else 1


def _open(data: bytes, max_pixels: int, max_side: int) -> tuple[Image.Image, str]:
    fmt = sniff_format(data[:4096])
    if fmt not in SUPPORTED_FORMATS:
        raise UnsupportedFormat(fmt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt.upper()])
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DecompressionBomb() from None
    except MemoryError:
        raise
    except Exception as exc:
        raise _damaged(fmt, exc) from None
    width, height = img.size
    if width < 1 or height < 1:
        raise UndecodableImage("The image has no pixels.")
    if width * height > max_pixels:
        raise TooManyPixels(width, height, max_pixels)
    if max(width, height) > max_side:
        raise SideTooLong(width, height, max_side)
    return img, fmt


def inspect_image(data: bytes, *, max_pixels: int, max_side: int = DEFAULT_MAX_SIDE) -> ImageInfo:
    """Validates an upload without keeping a full decode around.

    The size limits are checked from the header, before anything is
    decoded, so a decompression bomb costs nothing. Then the image is
    decoded once (JPEGs at 1/8 scale: libjpeg still entropy-decodes every
    byte, only the inverse DCT is smaller) so a truncated or corrupt file is
    refused before it is charged for. The decode comes before anything else
    touches the image: reading a PNG's EXIF decodes it as a side effect.
    """
    if not data:
        raise UndecodableImage("The file is empty.")
    img, fmt = _open(data, max_pixels, max_side)
    width, height = img.size  # before draft() shrinks it
    try:
        if fmt == "jpeg":
            img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        img.load()
    except MemoryError:
        img.close()
        raise
    except Exception as exc:
        img.close()
        raise _damaged(fmt, exc) from None
    orientation = _orientation(img)
    img.close()
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return ImageInfo(format=fmt, width=width, height=height)


def decode_for_model(
    data: bytes, *, max_pixels: int, max_side: int = DEFAULT_MAX_SIDE
) -> Image.Image:
    """Decodes the upload upright (EXIF applied) as RGB or RGBA."""
    img, fmt = _open(data, max_pixels, max_side)
    try:
        img.load()
    except MemoryError:
        raise
    except Exception as exc:
        raise _damaged(fmt, exc) from None
    turn = _UPRIGHT.get(_orientation(img))
    if turn is not None:
        img = img.transpose(turn)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA")
    if img.mode == "I;16" or img.mode.startswith("I"):
        # 16-bit grayscale: scale to 8 bits rather than clip.
        arr = np.asarray(img, dtype=np.uint32) >> 8
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def cut_out(img: Image.Image, mask: Image.Image) -> Image.Image:
    """The subject's colours with the mask as alpha (input alpha respected)."""
    return Image.fromarray(cutout_pixels(img, mask), "RGBA")


def cutout_pixels(img: Image.Image, mask: Image.Image, *, reuse_img: bool = False) -> np.ndarray:
    """The cut-out as an HxWx4 array, ready for ``encode_png``.

    Colour under fully transparent pixels is invisible; zeroing it makes
    the PNG smaller and faster to compress and leaks nothing of the
    removed background. Colours stay straight (not premultiplied), so
    soft edges keep their true colour. With ``reuse_img`` the alpha is put
    into ``img`` itself, saving a full-size copy (12 MP: 36 MB).
    """
    alpha = mask if mask.mode == "L" else mask.convert("L")
    if img.mode == "RGBA":
        combined = (
            np.asarray(alpha, dtype=np.uint16) * np.asarray(img.getchannel("A"), dtype=np.uint16)
        ) // 255
        alpha = Image.fromarray(combined.astype(np.uint8), "L")
        rgba = img if reuse_img else img.copy()
    elif img.mode == "RGB":
        rgba = img if reuse_img else img.copy()
    else:
        rgba = img.convert("RGB")
    # putalpha interleaves in C: far cheaper than stacking arrays in numpy.
    rgba.putalpha(alpha)
    # One pixel is one 32-bit word: a single pass keeps or zeroes it whole.
    words = np.asarray(rgba).view(np.uint32)[..., 0]
    kept = np.where(np.asarray(alpha) != 0, words, np.uint32(0))
    return kept.view(np.uint8).reshape(rgba.height, rgba.width, 4)


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
_BAND_MIN_ROWS = 64
# (most bytes of filtered rows, zlib-ng level, adaptive filter): the first
# line that fits an image is used.
_MB = 1024 * 1024
_ENCODING_BY_SIZE: tuple[tuple[float, int, bool], ...] = (
    (2 * _MB, 7, True),  # up to ~0.5 MP RGBA
    (8 * _MB, 6, True),  # ~2 MP
    (32 * _MB, 6, False),  # ~8 MP
    (float("inf"), 5, False),
)
_ADLER_BASE = 65521
_encoder_pool: ThreadPoolExecutor | None = None
_encoder_pool_pid = 0
_encoder_pool_lock = threading.Lock()


def png_encode_threads() -> int:
    """Threads that compress one large PNG: the cores this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _pool(threads: int) -> ThreadPoolExecutor:
    """A pool per process: a forked child has its parent's pool but not its threads."""
    global _encoder_pool, _encoder_pool_pid
    with _encoder_pool_lock:
        stale = _encoder_pool is None or _encoder_pool_pid != os.getpid()
        if stale or _encoder_pool._max_workers < threads:
            _encoder_pool = ThreadPoolExecutor(threads, thread_name_prefix="png-encode")
            _encoder_pool_pid = os.getpid()
        return _encoder_pool


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


def png_encoding_for(filtered_bytes: int) -> tuple[int, bool]:
    """(zlib-ng level, adaptive filter?) for an image of this many bytes of rows."""
    for most, level, adaptive in _ENCODING_BY_SIZE:
        if filtered_bytes <= most:
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
            from removal.pngfilter import adaptive_filter_rows

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
    level, adaptive = png_encoding_for(filtered_bytes)
    if compress_level is not None:
        level = compress_level

    threads = png_encode_threads()
    if threads > 1 and filtered_bytes >= _PARALLEL_MIN_BYTES:
        bands = min(threads, max(1, height // _BAND_MIN_ROWS))
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
        pieces = list(_pool(bands).map(lambda band: _encode_band(*band), args))
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
# normalise the first output and LANCZOS-resize it back. The same steps in
# float32 give the same mask for a fraction of the time; any other session
# (u2net_cloth_seg, a test double) keeps its own ``predict``.
_PREPROCESSING: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], int]] = {
    "U2netSession": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 320),
    "U2netpSession": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 320),
    "U2netHumanSegSession": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 320),
    "SiluetaSession": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 320),
    "DisSession": ((0.5, 0.5, 0.5), (1.0, 1.0, 1.0), 1024),
}


def _preprocessing_for(session) -> tuple | None:
    inner = getattr(session, "inner_session", None)
    if inner is None:
        return None
    return _PREPROCESSING.get(type(session).__name__)


# Pillow resizes in two passes and releases the GIL in both. Shrinking 12 MP
# to 320x320 along the rows first (Pillow 13's choice unless the image is
# much taller than wide: it goes down the columns first when
# ``height - out_height > 2 * (width - out_width)``), the row pass is about
# 90 % of the work and each row is independent: bands of rows are shrunk on
# the encoder threads (each band's column pass is then an exact identity)
# and the column pass runs once on the joined result. Bit for bit what one
# resize() gives; a test holds it to that on both sides of Pillow's choice.
_PARALLEL_RESIZE_MIN_PIXELS = 4_000_000


def _lanczos_shrink(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``img.resize(size, LANCZOS)`` exactly, faster where there are free cores."""
    width, height = img.size
    bands = min(png_encode_threads(), height // _BAND_MIN_ROWS)
    rows_first = height - size[1] <= 2 * (width - size[0])
    if (
        bands < 2
        or width * height < _PARALLEL_RESIZE_MIN_PIXELS
        or width <= size[0]
        or height <= size[1]
        or not rows_first
    ):
        return img.resize(size, Image.Resampling.LANCZOS)
    edges = [round(height * i / bands) for i in range(bands + 1)]

    def shrink_rows(band: int) -> Image.Image:
        top, bottom = edges[band], edges[band + 1]
        return img.resize(
            (size[0], bottom - top), Image.Resampling.LANCZOS, box=(0, top, width, bottom)
        )

    rows = Image.new(img.mode, (size[0], height))
    for top, part in zip(edges, _pool(bands).map(shrink_rows, range(bands)), strict=False):
        rows.paste(part, (0, top))
    return rows.resize(size, Image.Resampling.LANCZOS)


def _model_sized(img: Image.Image, side: int) -> Image.Image:
    """The RGB image rembg feeds the model: ``img.convert("RGB").resize(..., LANCZOS)``.

    Exactly that, never a shortcut: a box pre-shrink (``reducing_gap=3``) is
    about 3.5x faster from 12 MP, but on a small or thin subject it moves the
    mask (IoU 0.98 against rembg on a 12 MP photo of a narrow subject).
    """
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    return _lanczos_shrink(rgb, (side, side))


def model_input(img: Image.Image, mean, std, side: int) -> np.ndarray:
    """The 1x3xSxS float32 tensor rembg's ``normalize`` builds, without float64."""
    arr = np.asarray(_model_sized(img, side), dtype=np.float32)
    arr = arr / max(float(arr.max()), 1e-6)
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


def predict_mask(img: Image.Image, session) -> Image.Image:
    """The model's mask at the image's size, one channel.

    rembg's u2net_cloth_seg returns one mask per garment class; they are
    merged so the output keeps the input's size like every other model.
    """
    preprocessing = _preprocessing_for(session)
    if preprocessing is None:
        return _predict_with_rembg(img, session)
    mean, std, side = preprocessing
    inner = session.inner_session
    feed = {inner.get_inputs()[0].name: model_input(img, mean, std, side)}
    pred = inner.run([inner.get_outputs()[0].name], feed)[0][0, 0]
    low, high = float(pred.min()), float(pred.max())
    if not np.isfinite(low) or not np.isfinite(high):
        raise PipelineError("The model returned an invalid mask.")
    # A constant prediction would divide by zero (rembg returns garbage).
    pred = (pred - low) / (high - low) if high > low else np.zeros_like(pred)
    small = Image.fromarray((pred.clip(0, 1) * 255).astype(np.uint8), "L")
    return small.resize(img.size, Image.Resampling.LANCZOS)


def _predict_with_rembg(img: Image.Image, session) -> Image.Image:
    masks = session.predict(img.convert("RGB") if img.mode != "RGB" else img)
    if not masks:
        raise PipelineError("The model returned no mask.")
    if len(masks) == 1:
        return masks[0]
    merged = np.maximum.reduce([np.asarray(m.convert("L")) for m in masks])
    return Image.fromarray(merged, "L")


# Images smaller than this finish too fast for progress to be worth its writes.
PROGRESS_MIN_PIXELS = 2_000_000

# The stage each progress step starts, for ``remove_background(timings=...)``
# (``removal.finishing`` reports 60, 80 and 90; 95 is the end).
_STAGE_STARTING_AT = {50: "model", 60: "matting", 80: "composite", 90: "encode", 95: "done"}


def remove_background(
    data: bytes,
    session,
    *,
    max_pixels: int,
    options: OutputOptions = DEFAULT_OPTIONS,
    on_progress: ProgressCallback | None = None,
    deadline: float | None = None,
    timings: dict[str, float] | None = None,
) -> Cutout:
    """Runs the whole removal; ``deadline`` is a ``time.monotonic()`` value.

    ``options`` (see ``removal.finishing``) shape the file; the defaults give
    the same PNG, byte for byte and as fast, as before they existed.
    ``timings``, if given, receives the seconds of each stage (decode, model,
    matting, composite, encode): where a job's time went, for the job's
    record and the benchmark.
    """
    stage_started = ["decode", time.perf_counter()]

    def check() -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceeded("Processing took longer than the time limit.")

    # Each report is a database write in the worker; an image that is done
    # in well under a second reports none (the claim shows 5 %, completion 100 %).
    report = on_progress

    def step(percent: int, message: str) -> None:
        check()
        if timings is not None and percent in _STAGE_STARTING_AT:
            now = time.perf_counter()
            name, started = stage_started
            timings[name] = timings.get(name, 0.0) + now - started
            stage_started[:] = [_STAGE_STARTING_AT[percent], now]
        if report is not None:
            report(percent, message)

    check()
    img = decode_for_model(data, max_pixels=max_pixels)
    if img.width * img.height < PROGRESS_MIN_PIXELS:
        report = None
    step(50, "Removing background from image...")
    mask = predict_mask(img, session)
    # Handed over as a list so finishing can drop them before it encodes.
    parts = [img, mask]
    del img, mask
    finished = finish_taking(parts, options, on_step=step, check=check)
    step(95, "Saving result...")
    return finished
