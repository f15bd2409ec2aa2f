"""Reading an upload: its real format, its size from the header, a proof it decodes.

``inspect_image`` is the cheap, defensive check run before anything is
charged; ``decode_for_model`` is the worker's full decode, upright.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile

from imaging.errors import (
    DecompressionBomb,
    PipelineError,
    SideTooLong,
    TooManyPixels,
    UndecodableImage,
    UnsupportedFormat,
    damaged,
)
from imaging.formats import INPUT_FORMATS, SUPPORTED_FORMATS, sniff_format

# The longest side the pipeline can finish. A 1x50,000,000 image is within
# the pixel limit, but resizing the mask back to it needs more resampling
# coefficients than Pillow allows (and gigabytes to hold them). 65,535 is
# also the most a JPEG can declare, so no photograph comes near it.
DEFAULT_MAX_SIDE = 65_535

# Pillow's own bomb guard is global; ours is per call (max_pixels), so keep
# Pillow's as a last resort only and never let it load truncated files.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def _register_heif() -> None:
    """HEIC/HEIF through pillow-heif's Pillow plugin, unless Pillow reads it itself.

    Only the HEIF opener: AVIF is Pillow's own (``features.check("avif")``).
    Thumbnails are not needed (the primary image is what is decoded).
    """
    Image.init()
    if "HEIF" in Image.OPEN:
        return
    import pillow_heif

    pillow_heif.register_heif_opener(thumbnails=False)


_register_heif()


@dataclass(frozen=True)
class ImageInfo:
    format: str  # one of SUPPORTED_FORMATS
    width: int  # as displayed, EXIF orientation applied
    height: int
    has_alpha: bool = False  # the file can carry transparency (an alpha channel or key)


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
            img = Image.open(io.BytesIO(data), formats=[INPUT_FORMATS[fmt].pillow])
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DecompressionBomb() from None
    except MemoryError:
        raise
    except Exception as exc:
        raise damaged(fmt, exc) from None
    _check_size(img.size, max_pixels, max_side)
    if fmt in ("heic", "avif"):
        # The header's size is the picture cut to its clean aperture (clap):
        # a small crop of a huge picture would pass, and its decode would
        # still build the whole picture. Every picture it declares counts.
        for size in declared_pictures(data):
            _check_size(size, max_pixels, max_side)
    return img, fmt


# An ``ispe`` property box (ISO/IEC 23008-12): 4 bytes of size (always 20),
# "ispe", version 0 and no flags, then the picture's width and height.
_ISPE_HEADER = b"\0\0\0\x14ispe\0\0\0\0"


def declared_pictures(data: bytes) -> list[tuple[int, int]]:
    """The size of every picture a HEIF/AVIF file declares (its ``ispe``
    boxes: the image, its tiles, alpha, thumbnails), found by their exact
    header so that compressed bytes cannot pass for one."""
    sizes = []
    at = data.find(_ISPE_HEADER)
    while at >= 0:
        body = data[at + len(_ISPE_HEADER) : at + len(_ISPE_HEADER) + 8]
        if len(body) == 8:
            sizes.append(struct.unpack(">II", body))
        at = data.find(_ISPE_HEADER, at + 4)
    return sizes


def _check_size(size: tuple[int, int], max_pixels: int, max_side: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise UndecodableImage("The image has no pixels.")
    if width * height > max_pixels:
        raise TooManyPixels(width, height, max_pixels)
    if max(width, height) > max_side:
        raise SideTooLong(width, height, max_side)


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
        raise damaged(fmt, exc) from None
    if fmt != "jpeg":
        # What the decoder produced, as the worker's decode will: the header
        # can say otherwise. A HEIC's header size is libheif's, its picture
        # (ispe) cut to the clean aperture (clap) as declared; the decode
        # clamps that crop to the picture, so a clap wider or taller than the
        # picture, or shifted off it, decodes smaller than it declared
        # (pillow-heif then updates the size on load). JPEGs keep the header's
        # size: draft() made this decode smaller, the worker's is full size.
        width, height = img.size
        try:
            _check_size((width, height), max_pixels, max_side)
        except PipelineError:
            img.close()
            raise
    orientation = _orientation(img)
    has_alpha = _has_alpha(img)
    img.close()
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return ImageInfo(format=fmt, width=width, height=height, has_alpha=has_alpha)


def _has_alpha(img: Image.Image) -> bool:
    """As ``decode_for_model`` reads it: RGBA out, or RGB."""
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


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
        raise damaged(fmt, exc) from None
    _check_size(img.size, max_pixels, max_side)  # as inspect_image, on the decoded size
    turn = _UPRIGHT.get(_orientation(img))
    if turn is not None:
        img = img.transpose(turn)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA")
    if img.mode == "I;16" or img.mode.startswith("I"):
        # 16-bit grayscale: scale to 8 bits rather than clip.
        arr = np.asarray(img, dtype=np.uint32) >> 8
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":
        # A floating-point TIFF: its own range stretched over 0-255.
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        low, high = float(arr.min()), float(arr.max())
        scaled = (arr - low) * (255.0 / (high - low)) if high > low else np.zeros_like(arr)
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")
