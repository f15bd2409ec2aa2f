"""Shadows computed from the subject's mask (``shadow_type``: drop, 3D, car).

Every shape is drawn from the subject's own silhouette, sized from its
box, so a tall bottle and a wide car each get a shadow that fits them:

- drop: the silhouette offset down and right and blurred, as a flat
  product or a graphic lifted off the page casts it;
- 3D: the silhouette laid on the ground behind the subject (squashed to a
  quarter of its height and leaning right), fading away from the subject,
  plus a contact shadow where it stands;
- car: a contact shadow only, dark where the subject meets the ground and
  spreading softly around it (products and cars).

A shadow is soft, so it is computed on a copy of the mask at most
``WORK_SIDE`` pixels long and enlarged back: at 12 MP it costs a few tens
of milliseconds instead of seconds of full-size blurring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

WORK_SIDE = 1024
# A shadow pixel fainter than this (of 255) is not kept (nor grows a crop).
VISIBLE = 2


@dataclass(frozen=True)
class Shadow:
    """The shadow's opacity (L) and where its top-left corner lies on the
    canvas (it may reach past the canvas: ``crop`` grows to keep it)."""

    alpha: Image.Image
    origin: tuple[int, int]

    @property
    def box(self) -> tuple[int, int, int, int]:
        x, y = self.origin
        return (x, y, x + self.alpha.width, y + self.alpha.height)

    def moved(self, dx: int, dy: int) -> Shadow:
        return Shadow(self.alpha, (self.origin[0] + dx, self.origin[1] + dy))

    def layer(self, size: tuple[int, int]) -> Image.Image:
        """The shadow on a canvas of ``size`` (cut to it)."""
        out = Image.new("L", size, 0)
        out.paste(self.alpha, self.origin)
        return out


def cast_shadow(
    alpha: Image.Image, subject: tuple[int, int, int, int], kind: str, strength: float
) -> Shadow | None:
    """The shadow of the subject whose mask is ``alpha`` (the canvas's) and
    whose box is ``subject``; ``strength`` is its opacity, 0-1."""
    left, top, right, bottom = subject
    extent = max(right - left, bottom - top)
    if extent < 1 or strength <= 0:
        return None
    # Room around the subject for every shape: the drop's offset and blur,
    # the 3D shadow's lean (half the subject's height at most, squashed).
    reach = math.ceil(0.35 * extent) + 4
    region = (left - reach, top - reach, right + reach, bottom + reach)
    width, height = region[2] - region[0], region[3] - region[1]
    scale = min(1.0, WORK_SIDE / max(width, height))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = alpha.crop(region).resize(small_size, Image.Resampling.BOX)
    box = (reach * scale, reach * scale, (width - reach) * scale, (height - reach) * scale)
    shape = _SHAPES[kind](small, box)
    opacity = np.asarray(shape, dtype=np.float32) * strength
    small_shadow = Image.fromarray(np.clip(opacity + 0.5, 0, 255).astype(np.uint8), "L")
    visible = small_shadow.point(lambda v: 255 if v >= VISIBLE else 0).getbbox()
    if visible is None:
        return None
    # Back to canvas pixels, only the part where the shadow shows.
    x0, y0, x1, y1 = visible
    full = (
        math.floor(x0 / scale),
        math.floor(y0 / scale),
        min(width, math.ceil(x1 / scale)),
        min(height, math.ceil(y1 / scale)),
    )
    piece = small_shadow.resize(
        (full[2] - full[0], full[3] - full[1]),
        Image.Resampling.BILINEAR,
        box=(full[0] * scale, full[1] * scale, full[2] * scale, full[3] * scale),
    )
    return Shadow(piece, (region[0] + full[0], region[1] + full[1]))


# --- The shapes, each on the small mask (subject box in its pixels) -------------


def _blur(img: Image.Image, sigma: float) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(max(0.5, sigma)))


def _drop(mask: Image.Image, box) -> Image.Image:
    extent = max(box[2] - box[0], box[3] - box[1])
    offset = max(1, round(0.025 * extent))
    shifted = Image.new("L", mask.size, 0)
    shifted.paste(mask, (offset, offset))
    return _blur(shifted, 0.02 * extent)


def _flattened(mask: Image.Image, box, *, squash: float, lean: float, widen: float = 1.0):
    """The silhouette laid on the ground line (the box's bottom): each row
    ``h`` above it lands ``h * squash`` above it, shifted ``h * lean``
    right; ``widen`` stretches it about the subject's centre."""
    base = box[3]
    centre = (box[0] + box[2]) / 2
    # Image.transform maps each output pixel (x, y) back to the input:
    # y_in = base + (y - base) / squash, and x = centre + (x_in - centre) *
    # widen + lean * (base - y_in) solved for x_in.
    a = 1.0 / widen
    b = lean / (squash * widen)
    c = centre - centre / widen - lean * base / (squash * widen)
    e = 1.0 / squash
    f = base - base / squash
    return mask.transform(
        mask.size, Image.Transform.AFFINE, (a, b, c, 0.0, e, f), Image.Resampling.BILINEAR
    )


def _contact(mask: Image.Image, box, *, squash: float, widen: float, blur: float):
    """A dark, flat footprint centred on the ground line."""
    extent = max(box[2] - box[0], box[3] - box[1])
    flat = _flattened(mask, box, squash=squash, lean=0.0, widen=widen)
    down = round(squash * (box[3] - box[1]) / 2)
    moved = Image.new("L", mask.size, 0)
    moved.paste(flat, (0, down))
    return _blur(moved, blur * extent)


def _fade(shadow: Image.Image, box, *, length: float, far: float) -> Image.Image:
    """Fainter away from the ground line: 1 at it, ``far`` ``length`` px behind."""
    height = shadow.height
    rows = np.arange(height, dtype=np.float32)
    behind = np.clip((box[3] - rows) / max(length, 1.0), 0.0, 1.0)
    weight = 1.0 - (1.0 - far) * behind
    out = np.asarray(shadow, dtype=np.float32) * weight[:, None]
    return Image.fromarray(out.astype(np.uint8), "L")


def _screen(*layers: Image.Image) -> Image.Image:
    """Shadows laid over each other: 1 - (1 - a)(1 - b)..."""
    clear = np.ones(layers[0].size[::-1], dtype=np.float32)
    for layer in layers:
        clear *= 1.0 - np.asarray(layer, dtype=np.float32) / 255.0
    return Image.fromarray(((1.0 - clear) * 255.0 + 0.5).astype(np.uint8), "L")


def _three_d(mask: Image.Image, box) -> Image.Image:
    extent = max(box[2] - box[0], box[3] - box[1])
    squash, lean = 0.25, 0.5
    cast = _blur(_flattened(mask, box, squash=squash, lean=lean), 0.015 * extent)
    cast = _fade(cast, box, length=squash * (box[3] - box[1]), far=0.25)
    cast = cast.point(lambda v: round(v * 0.7))
    contact = _contact(mask, box, squash=0.04, widen=1.0, blur=0.008)
    return _screen(cast, contact)


def _car(mask: Image.Image, box) -> Image.Image:
    contact = _contact(mask, box, squash=0.05, widen=1.03, blur=0.012)
    spread = _contact(mask, box, squash=0.12, widen=1.1, blur=0.035)
    return _screen(contact, spread.point(lambda v: round(v * 0.6)))


_SHAPES = {"drop": _drop, "3D": _three_d, "car": _car}
