"""The layers under and of the cut-out: a background image, hard edges, the stack.

A result with a background image, a shadow or hard edges is built as
layers, bottom up: the background (transparent, ``bg_color`` or the image,
scaled to cover the canvas and centred), the shadow (black at its
opacity), the subject.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from PIL import Image

from imaging import parallel
from imaging.shadows import Shadow

logger = logging.getLogger(__name__)

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
    # A background is scenery: Lanczos after a box pre-shrink when it is
    # reduced; enlarged (most of a 12 MP output's pixels), bilinear up to
    # twice its size (a mean difference of 0.07/255 from bicubic's, at two
    # thirds of its cost) and bicubic beyond, where bilinear would show.
    enlarging = factor > 1
    if not enlarging:
        method = Image.Resampling.LANCZOS
    elif factor < 2:
        method = Image.Resampling.BILINEAR
    else:
        method = Image.Resampling.BICUBIC
    return background.resize(
        size,
        method,
        box=(left, top, left + seen_w, top + seen_h),
        reducing_gap=None if enlarging else 2.0,
    )


_HARD_LUT = [0] * HARD_EDGE_THRESHOLD + [255] * (256 - HARD_EDGE_THRESHOLD)
# Pixels at least this opaque hold the subject's own colour: they keep it and
# lend it to the edge pixels around them. (An upscaled mask is seldom exactly
# 255: most of a 12 MP subject reads 250-254.)
SOLID_ALPHA = 250


def harden(rgba: Image.Image) -> Image.Image:
    """A hard-edged, opaque subject: alpha 0 or 255, without a halo.

    A pixel the mask left partly transparent mixes the subject's colour
    with the old background's; made opaque as it is, it would draw a rim
    of that background around the subject. Each such pixel (alpha from
    ``HARD_EDGE_THRESHOLD`` to below ``SOLID_ALPHA``) moves towards the mean
    colour of the solid pixels around it (within ``EDGE_COLOUR_RADIUS``),
    the more so the more transparent it was: up to halfway between the
    threshold and opaque it takes the inside colour, then less and less
    (a large, almost opaque region, as in hair, must not be painted over
    by the few solid pixels near it). One compiled pass over the pixels
    (numba, row bands on threads; numpy where it cannot be built).
    """
    src = np.asarray(rgba if rgba.mode == "RGBA" else rgba.convert("RGBA"))
    kernel = _harden_rows()
    if kernel is None:
        return Image.fromarray(_harden_numpy(src), "RGBA")
    dst = np.empty_like(src)
    parallel.in_row_bands(
        src.shape[0],
        lambda first, stop: kernel(
            src, first, stop, EDGE_COLOUR_RADIUS, SOLID_ALPHA, HARD_EDGE_THRESHOLD, dst
        ),
    )
    return Image.fromarray(dst, "RGBA")


def _harden_numpy(src: np.ndarray) -> np.ndarray:
    """``edgekernels.harden_rows`` in numpy: the edge pixels, one offset at a time."""
    pixels = src.copy()
    levels = src[..., 3]
    height, width = levels.shape
    ys, xs = np.nonzero((levels >= HARD_EDGE_THRESHOLD) & (levels < SOLID_ALPHA))
    total = np.zeros((ys.size, 3), dtype=np.float32)
    count = np.zeros(ys.size, dtype=np.float32)
    reach = range(-EDGE_COLOUR_RADIUS, EDGE_COLOUR_RADIUS + 1)
    for dy in reach:
        rows = ys + dy
        row_inside = (rows >= 0) & (rows < height)
        rows = np.clip(rows, 0, height - 1)
        for dx in reach:
            cols = xs + dx
            inside = row_inside & (cols >= 0) & (cols < width)
            cols = np.clip(cols, 0, width - 1)
            solid = inside & (levels[rows, cols] >= SOLID_ALPHA)
            total += src[rows, cols, :3] * solid[:, None]
            count += solid
    own = src[ys, xs, :3].astype(np.float32)
    share = np.float32(2.0) * (np.float32(255.0) - levels[ys, xs].astype(np.float32))
    share = np.clip(share / np.float32(255 - HARD_EDGE_THRESHOLD), 0.0, 1.0).astype(np.float32)
    inside = np.where((count > 0)[:, None], total / np.maximum(count, 1)[:, None], own)
    mixed = own + (inside - own) * share[:, None]
    pixels[ys, xs, :3] = (mixed + np.float32(0.5)).astype(np.uint8)
    pixels[..., 3] = np.where(levels >= HARD_EDGE_THRESHOLD, 255, 0)
    # What is now clear keeps none of its colour (as the cut-out's own clear pixels).
    pixels.view(np.uint32)[..., 0][levels < HARD_EDGE_THRESHOLD] = 0
    return pixels


_kernel_state: list = []
_kernel_lock = threading.Lock()


def _harden_rows():
    """The compiled pass, or None (then numpy) where numba cannot build it."""
    with _kernel_lock:
        if not _kernel_state:
            try:
                from imaging.edgekernels import harden_rows

                # The argument types of the real call (numba compiles one
                # version per type; a PIL image's pixels are read-only).
                src = np.asarray(Image.new("RGBA", (2, 2), (9, 9, 9, 200)))
                harden_rows(src, 0, 2, 1, 250, 128, np.empty_like(src))
                _kernel_state.append(harden_rows)
            except Exception:
                logger.warning("Hard edge kernel unavailable; using numpy", exc_info=True)
                _kernel_state.append(None)
        return _kernel_state[0]


def warm_up_hard_edges() -> float:
    """Compiles (or loads from numba's disk cache) the kernel; returns seconds."""
    started = time.monotonic()
    square = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    square.paste((200, 60, 40, 160), (2, 2, 14, 14))
    square.paste((200, 60, 40, 255), (4, 4, 12, 12))
    harden(square)
    return time.monotonic() - started


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
    ``subject`` is the caller's to give up: it may be drawn on.
    """
    size = subject.size
    base = None  # nothing under the subject yet: transparent
    if background is not None:
        base = cover(background, size)
        if base is background:
            base = base.copy()  # the layers are drawn on it
    elif bg_color is not None:
        opaque = bg_color[3] == 255
        base = Image.new("RGB" if opaque else "RGBA", size, bg_color[: 3 if opaque else 4])
    elif flatten_on_white:
        base = Image.new("RGB", size, (255, 255, 255))
    if base is not None and base.mode == "RGB":
        return _stack_on_opaque(base, subject, shadow, flatten_on_white)
    if base is None and shadow is not None:
        return _shadow_under(subject, shadow)
    if base is not None and base.mode != "RGBA":
        base = base.convert("RGBA")
    if shadow is not None:
        dark = Image.new("RGBA", size, (0, 0, 0, 0))
        dark.putalpha(shadow.layer(size))
        base = dark if base is None else Image.alpha_composite(base, dark)
    out = subject if base is None else Image.alpha_composite(base, subject)
    if flatten_on_white:
        out = Image.alpha_composite(Image.new("RGBA", size, (255, 255, 255, 255)), out)
        return out.convert("RGB")
    return out


def _stack_on_opaque(base: Image.Image, subject: Image.Image, shadow, rgb: bool) -> Image.Image:
    """``stack`` on an opaque (RGB) base, drawn in place: the shadow as black
    through its opacity, the subject through its alpha (Pillow blends in C;
    the same pixels as compositing RGBA layers, without their copies)."""
    if shadow is not None:
        base.paste((0, 0, 0), (0, 0), shadow.layer(base.size))
    base.paste(subject, (0, 0), subject)
    if rgb:
        return base
    base.putalpha(255)
    return base


def _shadow_under(subject: Image.Image, shadow: Shadow) -> Image.Image:
    """``stack`` on a transparent background: the subject over the shadow,
    composited where the shadow lies only (a contact shadow is a band along
    the bottom), the rest of the subject untouched."""
    width, height = subject.size
    x, y = shadow.origin
    left, top = max(0, x), max(0, y)
    right, bottom = min(width, x + shadow.alpha.width), min(height, y + shadow.alpha.height)
    if left >= right or top >= bottom:
        return subject
    dark = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
    dark.putalpha(shadow.alpha.crop((left - x, top - y, right - x, bottom - y)))
    piece = Image.alpha_composite(dark, subject.crop((left, top, right, bottom)))
    out = subject.copy() if subject.readonly else subject
    out.paste(piece, (left, top))
    return out
