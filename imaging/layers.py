"""The layers under and of the cut-out: a background image, hard edges, the stack.

A result with a background image, a shadow or hard edges is built as
layers, bottom up: the background (transparent, ``bg_color`` or the image,
scaled to cover the canvas and centred), the shadow (black at its
opacity), the subject.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

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
    # A background is scenery: bicubic when it is enlarged (most of a 12 MP
    # output's pixels), Lanczos after a box pre-shrink when it is reduced.
    enlarging = factor > 1
    return background.resize(
        size,
        Image.Resampling.BICUBIC if enlarging else Image.Resampling.LANCZOS,
        box=(left, top, left + seen_w, top + seen_h),
        reducing_gap=None if enlarging else 2.0,
    )


_HARD_LUT = [0] * HARD_EDGE_THRESHOLD + [255] * (256 - HARD_EDGE_THRESHOLD)


def harden(rgba: Image.Image) -> Image.Image:
    """A hard-edged, opaque subject: alpha 0 or 255, without a halo.

    A pixel the mask left partly transparent mixes the subject's colour
    with the old background's; made opaque as it is, it would draw a rim
    of that background around the subject. Each such pixel moves towards
    the mean colour of the fully opaque pixels around it (within
    ``EDGE_COLOUR_RADIUS``), the more so the more transparent it was. Only
    those pixels are visited (the outline: a fraction of a percent of a
    12 MP photo), one offset at a time.
    """
    alpha = rgba.getchannel("A")
    levels = np.asarray(alpha)
    pixels = np.array(rgba.convert("RGBA") if rgba.mode != "RGBA" else rgba)
    ys, xs = np.nonzero((levels >= HARD_EDGE_THRESHOLD) & (levels < 255))
    if ys.size:
        height, width = levels.shape
        total = np.zeros((ys.size, 3), dtype=np.float32)
        count = np.zeros(ys.size, dtype=np.float32)
        reach = range(-EDGE_COLOUR_RADIUS, EDGE_COLOUR_RADIUS + 1)
        for dy in reach:
            rows = np.clip(ys + dy, 0, height - 1)
            for dx in reach:
                cols = np.clip(xs + dx, 0, width - 1)
                solid = levels[rows, cols] == 255
                total += pixels[rows, cols, :3] * solid[:, None]
                count += solid
        found = count > 0
        inside = total[found] / count[found, None]
        # The more transparent a pixel was, the more of the old background
        # it holds: up to halfway between the threshold and opaque it takes
        # the inside colour, then less and less; nearly opaque it keeps its
        # own (a large, almost opaque region, as in hair, must not be
        # painted over by the few opaque pixels near it).
        alpha_found = levels[ys[found], xs[found]].astype(np.float32)
        share = np.clip(2.0 * (255.0 - alpha_found) / (255.0 - HARD_EDGE_THRESHOLD), 0.0, 1.0)
        own = pixels[ys[found], xs[found], :3].astype(np.float32)
        mixed = own + (inside - own) * share[:, None]
        pixels[ys[found], xs[found], :3] = (mixed + 0.5).astype(np.uint8)
    pixels[..., 3] = np.asarray(alpha.point(_HARD_LUT))
    # What is now clear keeps none of its colour (as the cut-out's own clear pixels).
    words = pixels.view(np.uint32)[..., 0]
    words[pixels[..., 3] == 0] = 0
    return Image.fromarray(pixels, "RGBA")


def harden_mask(mask: Image.Image) -> Image.Image:
    """The mask alone (channels=alpha) with hard edges."""
    return mask.point(_HARD_LUT)


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
    base = None  # nothing under the subject yet: transparent
    if background is not None:
        base = cover(background, size)
        base = base.convert("RGBA") if base.mode != "RGBA" else base.copy()
    elif bg_color is not None:
        base = Image.new("RGBA", size, bg_color)
    if shadow is not None:
        dark = Image.new("RGBA", size, (0, 0, 0, 0))
        dark.putalpha(shadow.layer(size))
        base = dark if base is None else Image.alpha_composite(base, dark)
    out = subject if base is None else Image.alpha_composite(base, subject)
    if flatten_on_white:
        out = Image.alpha_composite(Image.new("RGBA", size, (255, 255, 255, 255)), out)
        return out.convert("RGB")
    return out
