"""Where the subject goes: region of interest, crop and margin, scale, position, size."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from PIL import Image

from imaging.parsers import MAX_MARGIN_FRACTION, MAX_MARGIN_PX, Length
from imaging.subject import alpha_band, subject_box

if TYPE_CHECKING:
    from imaging.options import OutputOptions


def apply_roi(mask: Image.Image, roi) -> Image.Image:
    """The mask with everything outside ``roi`` (x1 y1 x2 y2 in px or % of it) zeroed."""
    width, height = mask.size
    x1, y1, x2, y2 = roi
    left = min(width, max(0, round(x1.resolve(width))))
    top = min(height, max(0, round(y1.resolve(height))))
    right = min(width, max(left, round(x2.resolve(width))))
    bottom = min(height, max(top, round(y2.resolve(height))))
    out = Image.new("L", mask.size, 0)
    if right > left and bottom > top:
        box = (left, top, right, bottom)
        out.paste(mask.crop(box), box)
    return out


def crop_box(box, margin) -> tuple[int, int, int, int]:
    """The subject's ``box`` grown by ``margin`` (top, right, bottom, left),
    each side capped at half the subject or 500 px. It may reach past the
    image: that part is transparent (or bg_color), as remove.bg pads it."""
    left, top, right, bottom = box
    sw, sh = right - left, bottom - top
    t, r, b, lft = margin

    def side(length: Length, whole: int) -> int:
        return round(min(length.resolve(whole), MAX_MARGIN_FRACTION * whole, MAX_MARGIN_PX))

    return (left - side(lft, sw), top - side(t, sh), right + side(r, sw), bottom + side(b, sh))


def arrange(rgba: Image.Image, box, options: OutputOptions):
    """crop (+ margin), scale and position, remove.bg's way: the canvas is the
    subject's box plus the margin when cropping, else the whole image; the
    subject is scaled to ``scale`` % of the canvas (fit, aspect kept) and
    placed at ``position`` (x %, y % of the free space; "center" = 50 % 50 %;
    "original": where it was). A scale without a position centres it.
    Returns the new image and the subject's box in it."""
    width, height = rgba.size
    canvas = (0, 0, width, height)
    if options.crop:
        canvas = crop_box(box, options.crop_margin)
    cx0, cy0, cx1, cy1 = canvas
    cw, ch = cx1 - cx0, cy1 - cy0
    position = options.position
    if position is None:
        position = (50.0, 50.0) if options.scale is not None else "original"
    left, top, right, bottom = box
    if options.scale is None and position == "original":
        return rgba.crop(canvas), (left - cx0, top - cy0, right - cx0, bottom - cy0)

    subject = rgba.crop(box)
    sw, sh = subject.size
    if options.scale is not None:
        factor = options.scale / 100.0 * min(cw / sw, ch / sh)
        size = (max(1, round(sw * factor)), max(1, round(sh * factor)))
        if size != subject.size:
            subject = subject.resize(size, Image.Resampling.LANCZOS)
    nw, nh = subject.size
    if position == "original":  # scaled about its own centre
        x = round((left + right) / 2 - cx0 - nw / 2)
        y = round((top + bottom) / 2 - cy0 - nh / 2)
    else:
        x = round((cw - nw) * position[0] / 100.0)
        y = round((ch - nh) * position[1] / 100.0)
    out = Image.new(rgba.mode, (cw, ch), 0)
    out.paste(subject, (x, y))
    new_box = subject_box(alpha_band(out))
    return out, new_box


def fit_size(size: tuple[int, int], options: OutputOptions) -> tuple[int, int]:
    """The largest size within max_pixels / max_width / max_height, aspect
    kept, never larger than ``size``."""
    width, height = size
    factor = 1.0
    if options.max_pixels is not None and width * height > options.max_pixels:
        factor = min(factor, math.sqrt(options.max_pixels / (width * height)))
    if options.max_width is not None:
        factor = min(factor, options.max_width / width)
    if options.max_height is not None:
        factor = min(factor, options.max_height / height)
    if factor >= 1.0:
        return size
    # The epsilon keeps 3464 x sqrt(250000 / 3464^2) at 500, not 499.99...
    target = (max(1, math.floor(width * factor + 1e-9)), max(1, math.floor(height * factor + 1e-9)))
    while options.max_pixels is not None and target[0] * target[1] > options.max_pixels:
        target = (max(1, target[0] - 1), max(1, target[1] - 1))  # float rounding
    return target
