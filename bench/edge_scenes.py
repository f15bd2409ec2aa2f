"""Photos with known answers for the edge benchmark (bench/bench_edges.py).

A scene is a foreground whose true colour ``F`` and true alpha ``a`` are
known at every pixel, composited over a background ``B`` exactly as a
camera mixes them at a soft edge: ``I = a F + (1 - a) B``. The foreground
is made here, offline, from a scikit-image photo and procedural hair:

- the body: a head-and-shoulders silhouette cut from ``skimage.data.chelsea``
  (the cat's fur fills it), its outline drawn 4x supersampled and slightly
  defocused, so its edge is a real soft band a few pixels wide;
- the hair: a few thousand curved strands grown outwards from the upper
  outline, 0.7-2.2 px wide at 1 MP (2.4-7.5 px at 12 MP), drawn 2-4x
  supersampled and box-reduced, so their alpha is true fractional coverage;
  three shades of a hair colour that drifts from dark brown to blond across
  the head, the shades stacked with the "over" operator as layers.

Where ``a`` is 0 the foreground has no colour of its own; there ``F`` is
the colour of the nearest pixel that is at least half foreground (what a
method that paints an edge pixel should paint it; see bench/notes.md).
Every size is drawn from the same geometry in relative units, so the 1 MP
and the 12 MP scene are the same picture. Nothing here depends on any
method under test.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

# The benchmark's sizes (4:3, as a camera).
SIZES = {"1 MP": (1152, 864), "12 MP": (4000, 3000)}
BACKGROUNDS = ("green", "blue", "orange", "sky", "brick", "grass")
STRANDS = 2600
SEED = 20


@dataclass
class Scene:
    """The true foreground (float32 0..1 colours and alpha) at one size."""

    size: tuple[int, int]
    colour: np.ndarray  # H x W x 3, F
    alpha: np.ndarray  # H x W, a

    def composite(self, background: str) -> np.ndarray:
        """The photo a camera would take: ``a F + (1 - a) B``, 8-bit."""
        back = background_pixels(background, self.size)
        a = self.alpha[..., None]
        mixed = self.colour * a + back * (1.0 - a)
        return (np.clip(mixed, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def photo_png(self, background: str) -> bytes:
        """The composite as a PNG (lossless: the known answer stays exact)."""
        buffer = io.BytesIO()
        Image.fromarray(self.composite(background), "RGB").save(buffer, "PNG", compress_level=1)
        return buffer.getvalue()


def _smooth_noise(size: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise in 0..1: a few random cells, bicubic-upsampled."""
    width, height = size
    coarse = rng.random((max(2, cells * height // width), cells)).astype(np.float32)
    img = Image.fromarray(coarse, "F").resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img), 0.0, 1.0)


def _photo(name: str, size: tuple[int, int]) -> np.ndarray:
    import skimage.data

    pixels = getattr(skimage.data, name)()
    img = Image.fromarray(pixels)
    return np.asarray(img.resize(size, Image.Resampling.BICUBIC), dtype=np.float32) / 255.0


def background_pixels(name: str, size: tuple[int, int]) -> np.ndarray:
    """H x W x 3 float32: saturated screens, a sky, and two photographed textures."""
    width, height = size
    rng = np.random.default_rng(BACKGROUNDS.index(name))
    light = 0.9 + 0.2 * _smooth_noise(size, 4, rng)[..., None]  # uneven lighting
    if name in ("green", "blue", "orange"):
        colour = {
            "green": (0.05, 0.72, 0.25),
            "blue": (0.08, 0.25, 0.92),
            "orange": (0.95, 0.45, 0.05),
        }[name]
        return np.clip(np.asarray(colour, dtype=np.float32) * light, 0.0, 1.0)
    if name == "sky":
        y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        top = np.asarray((0.20, 0.45, 0.85), dtype=np.float32)
        horizon = np.asarray((0.72, 0.84, 0.95), dtype=np.float32)
        sky = top * (1.0 - y) + horizon * y
        clouds = np.clip((_smooth_noise(size, 9, rng) - 0.55) * 3.0, 0.0, 1.0)[..., None]
        return sky * (1.0 - clouds) + 0.97 * clouds
    grey = {"brick": "brick", "grass": "grass"}[name]
    tint = {"brick": (1.0, 0.55, 0.42), "grass": (0.45, 0.85, 0.3)}[name]
    texture = _tiled(grey, size)
    return np.clip(texture[..., None] * np.asarray(tint, dtype=np.float32) * light, 0.0, 1.0)


def _tiled(name: str, size: tuple[int, int]) -> np.ndarray:
    """A grey scikit-image texture, tiled at its own scale relative to the frame."""
    import skimage.data

    width, height = size
    tile = Image.fromarray(getattr(skimage.data, name)())
    side = max(8, round(width / 3))  # three tiles across, whatever the size
    tile = tile.resize((side, side), Image.Resampling.BICUBIC)
    canvas = Image.new("L", size)
    for y in range(0, height, side):
        for x in range(0, width, side):
            canvas.paste(tile, (x, y))
    return np.asarray(canvas, dtype=np.float32) / 255.0


# --- The foreground ------------------------------------------------------------


def _outline(t: np.ndarray) -> np.ndarray:
    """Points on the head's upper outline, t in 0..1 from left to right (relative units)."""
    angle = np.pi * (1.0 + t)  # pi .. 2 pi: the top half of the head ellipse
    cx, cy, rx, ry = 0.5, 0.42, 0.17, 0.25
    return np.stack([cx + rx * 1.03 * np.cos(angle), cy + ry * 1.03 * np.sin(angle)], axis=-1)


def _strands(rng: np.random.Generator):
    """Each strand: (points in relative units, width in relative units, shade 0-2)."""
    strands = []
    for _ in range(STRANDS):
        t = rng.random()
        root = _outline(np.asarray([t]))[0]
        # Outwards, with a spread; flyaways are longer and finer.
        normal = root - np.asarray([0.5, 0.42])
        normal /= np.linalg.norm(normal)
        heading = np.arctan2(normal[1], normal[0]) + rng.normal(0.0, 0.45)
        flyaway = rng.random() < 0.12
        length = rng.uniform(0.06, 0.16) if flyaway else rng.uniform(0.02, 0.09)
        width = rng.uniform(0.0006, 0.0011) if flyaway else rng.uniform(0.0008, 0.0025)
        bend = rng.normal(0.0, 2.5)
        steps = 24
        points = [root - normal * 0.01]  # rooted a little inside the body
        step = length / steps
        for _ in range(steps):
            heading += bend * step + rng.normal(0.0, 0.04)
            x, y = points[-1]
            points.append(np.asarray([x + np.cos(heading) * step, y + np.sin(heading) * step]))
        strands.append((np.asarray(points), width, int(rng.integers(0, 3))))
    return strands


def _coverage(size: tuple[int, int], supersample: int, draw) -> np.ndarray:
    """float32 0..1 coverage of what ``draw(ImageDraw, scale)`` paints, box-reduced."""
    width, height = size
    canvas = Image.new("L", (width * supersample, height * supersample), 0)
    draw(ImageDraw.Draw(canvas), (width * supersample, height * supersample))
    return np.asarray(canvas.reduce(supersample), dtype=np.float32) / 255.0


def _body(pen: ImageDraw.ImageDraw, scale: tuple[int, int]) -> None:
    sx, sy = scale
    pen.ellipse([(0.33 * sx, 0.17 * sy), (0.67 * sx, 0.67 * sy)], fill=255)  # head
    pen.rectangle([(0.44 * sx, 0.55 * sy), (0.56 * sx, 0.8 * sy)], fill=255)  # neck
    pen.ellipse([(0.16 * sx, 0.72 * sy), (0.84 * sx, 1.35 * sy)], fill=255)  # shoulders


@cache
def scene(label: str) -> Scene:
    """The foreground at one of SIZES (cached: the 12 MP one takes a few seconds)."""
    from scipy import ndimage

    size = SIZES[label]
    width, height = size
    rng = np.random.default_rng(SEED)
    strands = _strands(rng)
    # Fine strands need a finer pen at small sizes to keep their coverage exact.
    supersample = 4 if width * height < 4_000_000 else 2

    body_alpha = _coverage(size, 4 if width * height < 4_000_000 else 2, _body)
    # Defocus: a real lens never draws a one-pixel edge.
    body_alpha = ndimage.gaussian_filter(body_alpha, sigma=0.6 * width / 1152.0)
    body_colour = _photo("chelsea", size)

    # Dark brown on the left, blond on the right, with blotches.
    across = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    hair_field = np.clip(0.75 * across + 0.5 * _smooth_noise(size, 5, rng) - 0.25, 0.0, 1.0)
    hair_field = np.clip((hair_field - 0.2) / 0.6, 0.0, 1.0)[..., None]
    dark = np.asarray((0.22, 0.13, 0.07), dtype=np.float32)
    blond = np.asarray((0.86, 0.70, 0.42), dtype=np.float32)
    hair = dark * (1.0 - hair_field) + blond * hair_field
    del hair_field

    premultiplied = body_colour * body_alpha[..., None]
    alpha = body_alpha.copy()
    del body_colour, body_alpha
    for shade, gain in enumerate((0.7, 1.0, 1.25)):
        chosen = [s for s in strands if s[2] == shade]

        def draw(pen, scale, chosen=chosen):
            sx, sy = scale
            for points, stroke, _ in chosen:
                xy = [(float(x * sx), float(y * sy)) for x, y in points]
                pen.line(xy, fill=255, width=max(1, round(stroke * sy)), joint="curve")

        layer = _coverage(size, supersample, draw)
        colour = np.clip(hair * gain, 0.0, 1.0)
        premultiplied = colour * layer[..., None] + premultiplied * (1.0 - layer[..., None])
        alpha = layer + alpha * (1.0 - layer)
        del layer, colour
    del hair

    colour = np.zeros_like(premultiplied)
    visible = alpha > 1e-4
    colour[visible] = premultiplied[visible] / alpha[visible][:, None]
    del premultiplied
    # Where nothing of the subject is, its colour is that of the nearest
    # pixel that is mostly subject.
    _, (rows, cols) = ndimage.distance_transform_edt(alpha < 0.5, return_indices=True)
    empty = ~visible
    colour[empty] = colour[rows[empty], cols[empty]]
    return Scene(size=size, colour=np.clip(colour, 0.0, 1.0), alpha=alpha)
