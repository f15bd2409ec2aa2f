"""Real photographs (scikit-image ships them offline) and images made here."""

import io
from functools import cache

import numpy as np
from PIL import Image


@cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def photo(name: str = "astronaut") -> Image.Image:
    """astronaut (512x512), coffee (600x400), chelsea (451x300), ..."""
    return Image.fromarray(_photo(name))


def encode(img: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buffer = io.BytesIO()
    if fmt.upper() == "JPEG" and img.mode not in ("RGB", "L", "CMYK"):
        img = img.convert("RGB")
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def photo_bytes(name: str = "astronaut", fmt: str = "JPEG", **params) -> bytes:
    if fmt.upper() == "JPEG":
        params.setdefault("quality", 90)
    return encode(photo(name), fmt, **params)


def solid_png(width: int = 64, height: int = 48, color=(200, 30, 30)) -> bytes:
    return encode(Image.new("RGB", (width, height), color), "PNG")


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img
