"""The subject: where its pixels are, as a box in output pixels."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

# The subject's box counts pixels with at least this alpha (1/32). U2-Net's
# masks carry scattered alpha-1..3 specks far from the subject (measured on
# skimage's astronaut and rocket); counting them would make "crop to the
# subject" keep nearly the whole image. Pixels below it are invisible.
FOREGROUND_MIN_ALPHA = 8


def alpha_band(img: Image.Image) -> Image.Image:
    return img if img.mode == "L" else img.getchannel("A")


def alpha_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(pixels[..., 3]), "L")


_BOX_LUT = [0] * FOREGROUND_MIN_ALPHA + [255] * (256 - FOREGROUND_MIN_ALPHA)


def subject_box(alpha: Image.Image) -> tuple[int, int, int, int] | None:
    """The box ``foreground`` and ``crop`` use: (left, top, right, bottom) of
    alpha >= FOREGROUND_MIN_ALPHA, or None; Pillow does it in C."""
    band = alpha if alpha.mode == "L" else alpha.getchannel("A")
    return band.point(_BOX_LUT).getbbox()


def foreground_box(box) -> dict | None:
    if box is None:
        return None
    left, top, right, bottom = box
    return {"top": top, "left": left, "width": right - left, "height": bottom - top}


def scale_box(box, size, target):
    """The box after resizing from ``size`` to ``target``, rounded outwards."""
    if box is None:
        return None
    rx, ry = target[0] / size[0], target[1] / size[1]
    left, top, right, bottom = box
    return (
        max(0, math.floor(left * rx)),
        max(0, math.floor(top * ry)),
        min(target[0], max(math.floor(left * rx) + 1, math.ceil(right * rx))),
        min(target[1], max(math.floor(top * ry) + 1, math.ceil(bottom * ry))),
    )
