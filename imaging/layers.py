"""The layers under and of the cut-out: a background image, hard edges, the stack.

A result with a background image, a shadow or hard edges is built as
layers, bottom up: the background (transparent, ``bg_color`` or the image,
scaled to cover the canvas and centred), the shadow (black at its
opacity), the subject.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from imaging.shadows import Shadow

# semitransparency=false: alpha at or above this becomes opaque, below it clear.
HARD_EDGE_THRESHOLD = 128
# How far (px) an edge pixel looks inward for the subject's own colour.
EDGE_COLOUR_RADIUS = 3


def cover(background: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The background scaled to cover ``size``, aspect kept, centred (the
    overflow cut evenly from both sides), as remove.bg places it; a
    background of exactly that size is used as it is."""
    if background.size == size:
        return background
    width, height = size
    bw, bh = background.size
    factor = max(width / bw, height / bh)
    # The part of the background that shows, in its own pixels: resizing
    # only it (Pillow's box) costs no more than the output's size.
    seen_w, seen_h = width / factor, height / factor
    left, top = (bw - seen_w) / 2, (bh - seen_h) / 2
    return background.resize(
        size,
        Image.Resampling.LANCZOS,
        box=(left, top, left + seen_w, top + seen_h),
        reducing_gap=3.0 if factor < 1 / 3 else None,
    )


def harden(rgba: Image.Image) -> Image.Image:
    """A hard-edged, opaque subject: alpha 0 or 255, without a halo.

    A pixel the mask left partly transparent mixes the subject's colour
    with the old background's; made opaque as it is, it would draw a rim
    of that background around the subject. Each such pixel takes instead
    the mean colour of the fully opaque pixels around it (within
    ``EDGE_COLOUR_RADIUS``), found in C: a box blur of the colours
    weighted by opacity (Pillow's premultiplied ``RGBa``), divided back.
    """
    pixels = np.asarray(rgba)
    alpha = pixels[..., 3]
    opaque = alpha >= HARD_EDGE_THRESHOLD
    edge = opaque & (alpha < 255)
    out = pixels.copy()
    if edge.any():
        weighted = pixels.copy()
        weighted[..., 3] = np.where(alpha == 255, 255, 0).astype(np.uint8)
        spread = (
            Image.fromarray(weighted, "RGBA")
            .convert("RGBa")
            .filter(ImageFilter.BoxBlur(EDGE_COLOUR_RADIUS))
            .convert("RGBA")
        )
        inner = np.asarray(spread)
        found = edge & (inner[..., 3] > 0)
        out[found, :3] = inner[found, :3]
    out[..., 3] = np.where(opaque, 255, 0).astype(np.uint8)
    out[~opaque] = 0
    return Image.fromarray(out, "RGBA")


def harden_mask(mask: Image.Image) -> Image.Image:
    """The mask alone (channels=alpha) with hard edges."""
    return mask.point(lambda v: 255 if v >= HARD_EDGE_THRESHOLD else 0)


def stack(
    subject: Image.Image,
    *,
    shadow: Shadow | None = None,
    bg_color: tuple[int, int, int, int] | None = None,
    background: Image.Image | None = None,
    flatten_on_white: bool = False,
) -> Image.Image:
    """Background, shadow and subject, bottom up, at the subject's size.

    ``flatten_on_white``: the result cannot keep transparency (JPG), so
    whatever is still see-through lies on white, as with bg_color alone.
    """
    size = subject.size
    if background is not None:
        out = cover(background, size)
        out = out.convert("RGBA") if out.mode != "RGBA" else out.copy()
    elif bg_color is not None:
        out = Image.new("RGBA", size, bg_color)
    else:
        out = Image.new("RGBA", size, (0, 0, 0, 0))
    if shadow is not None:
        dark = Image.new("RGBA", size, (0, 0, 0, 0))
        dark.putalpha(shadow.layer(size))
        out = Image.alpha_composite(out, dark)
    out = Image.alpha_composite(out, subject)
    if flatten_on_white:
        out = Image.alpha_composite(Image.new("RGBA", size, (255, 255, 255, 255)), out)
        return out.convert("RGB")
    return out
