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
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps

SUPPORTED_FORMATS = ("png", "jpeg", "webp", "bmp")
SUPPORTED_NAMES = "png, jpg, jpeg, webp, bmp"

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


class TooManyPixels(PipelineError):
    def __init__(self, width: int, height: int, max_pixels: int):
        self.width, self.height, self.max_pixels = width, height, max_pixels
        super().__init__(
            f"Image is {width}x{height} ({width * height:,} pixels); "
            f"the limit is {max_pixels:,} pixels."
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


@dataclass(frozen=True)
class Cutout:
    png: bytes
    width: int
    height: int


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


def _displayed_size(img: Image.Image) -> tuple[int, int]:
    width, height = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:
        orientation = 1
    if orientation in (5, 6, 7, 8):
        return height, width
    return width, height


def _open(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    fmt = sniff_format(data[:4096])
    if fmt not in SUPPORTED_FORMATS:
        raise UnsupportedFormat(fmt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt.upper()])
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DecompressionBomb() from None
    except Exception as exc:
        raise UndecodableImage(f"The {fmt.upper()} file could not be read: {exc}") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise UndecodableImage("The image has no pixels.")
    if width * height > max_pixels:
        raise TooManyPixels(width, height, max_pixels)
    return img, fmt


def inspect_image(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Validates an upload without keeping a full decode around.

    The pixel limit is checked from the header, before anything is
    decoded, so a decompression bomb costs nothing. Then the image is
    decoded once (JPEGs at 1/8 scale, which still reads every byte) so a
    truncated or corrupt file is refused before it is charged for.
    """
    if not data:
        raise UndecodableImage("The file is empty.")
    img, fmt = _open(data, max_pixels)
    width, height = _displayed_size(img)
    try:
        if fmt == "jpeg":
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
        img.load()
    except Exception as exc:
        raise UndecodableImage(f"The {fmt.upper()} file is damaged or truncated: {exc}") from None
    finally:
        img.close()
    return ImageInfo(format=fmt, width=width, height=height)


def decode_for_model(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decodes the upload upright (EXIF applied) as RGB or RGBA."""
    img, _ = _open(data, max_pixels)
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
    except Exception as exc:
        raise UndecodableImage(f"The image could not be decoded: {exc}") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA")
    if img.mode == "I;16" or img.mode.startswith("I"):
        # 16-bit grayscale: scale to 8 bits rather than clip.
        arr = np.asarray(img, dtype=np.uint32) >> 8
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def cut_out(img: Image.Image, mask: Image.Image) -> Image.Image:
    """The subject's colours with the mask as alpha (input alpha respected)."""
    alpha = np.asarray(mask.convert("L"), dtype=np.uint8)
    if img.mode == "RGBA":
        rgba = np.array(img, dtype=np.uint8)
        combined = (alpha.astype(np.uint16) * rgba[..., 3]) // 255
        rgba[..., 3] = combined.astype(np.uint8)
    else:
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
        rgba = np.dstack([rgb, alpha])
    # Colour under fully transparent pixels is invisible; zeroing it makes
    # the PNG smaller and faster to compress and leaks nothing of the
    # removed background.
    rgba[rgba[..., 3] == 0] = 0
    return Image.fromarray(rgba, "RGBA")


def encode_png(img: Image.Image, *, compress_level: int = 1) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def predict_mask(img: Image.Image, session) -> Image.Image:
    """The model's mask at the image's size, one channel.

    rembg's u2net_cloth_seg returns one mask per garment class; they are
    merged so the output keeps the input's size like every other model.
    """
    masks = session.predict(img.convert("RGB") if img.mode != "RGB" else img)
    if not masks:
        raise PipelineError("The model returned no mask.")
    if len(masks) == 1:
        return masks[0]
    merged = np.maximum.reduce([np.asarray(m.convert("L")) for m in masks])
    return Image.fromarray(merged, "L")


def remove_background(
    data: bytes,
    session,
    *,
    max_pixels: int,
    on_progress: ProgressCallback | None = None,
    deadline: float | None = None,
) -> Cutout:
    """Runs the whole removal; ``deadline`` is a ``time.monotonic()`` value."""

    def step(percent: int, message: str) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceeded("Processing took longer than the time limit.")
        if on_progress is not None:
            on_progress(percent, message)

    step(10, "Decoding image...")
    img = decode_for_model(data, max_pixels=max_pixels)
    step(50, "Removing background from image...")
    mask = predict_mask(img, session)
    step(80, "Compositing cut-out...")
    cutout = cut_out(img, mask)
    step(90, "Encoding PNG...")
    png = encode_png(cutout)
    step(95, "Saving result...")
    return Cutout(png=png, width=cutout.width, height=cutout.height)
