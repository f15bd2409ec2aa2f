"""Edges: the subject's true colour in the mask's soft band, and a sharper mask.

**Colour cleaning** (``clean_cutout``). Where the mask is partly transparent
the photo's pixel is a mix, ``I = a F + (1 - a) B``, of the subject's colour
``F`` and the old background ``B``. Keeping ``I`` as the cut-out's colour
(what rembg does by default) lets the old background show through: a light
halo in hair, a green fringe after a green screen. Here ``F`` is estimated
in the soft band while the alpha stays exactly the model's:

1. Local colour models. On a coarse grid (the photo box-reduced to ~200 px):
   the subject's mean colour F~ and variance around each pixel over a wide
   window, weighted by alpha^COARSE_POWER, and the background's B~, weighted
   by (1 - alpha)^COARSE_POWER (after Forte and Pitié's "blur fusion",
   ICIP 2021, with variances and sharper weights).
2. Per pixel, how much of it is subject, judged by its colour: the alpha
   that best explains ``I`` as a mix of the two local colour models (their
   Gaussian likelihood, solved in ALPHA_ROUNDS fixed-point steps), with a
   prior that pulls it towards the model's alpha. U2-Net's mask comes from
   320x320 and is blurred at full size: in hair it says 0.9 over gaps that
   show only background, and the colours see that. Where F~ and B~ are
   close, or the background is textured, the colours cannot tell and the
   model's alpha is kept (a confidence mixes the two).
3. The subject's colour given that alpha: the Gaussian models' conditional
   mean, ``F = F~ + a var(F) / (a^2 var(F) + (1-a)^2 var(B)) (I - a F~ - (1-a) B~)``,
   which is ``I`` itself where the pixel is all subject.
4. Refinement. On a fine grid (~800 px) steps 2-3 run on the soft band and
   the estimates, weighted by their alpha squared, give F~ and var(F) again
   over a narrow window (ROUNDS times); then steps 2-3 run once more at
   every full-size pixel with alpha 1..BAND_MAX, with both grids' fields
   interpolated.

The grids cost milliseconds; the full-size pass reads each pixel once and
works on the band alone (numba, row bands on the shared pool, releasing the
GIL), and replaces ``finishing.cutout_pixels``' own pass. Without numba the
same estimate runs in numpy on the band's pixels (slower, same colours to
within rounding). bench/bench_edges.py measures it on photos with known
answers against rembg's default, its ``decontaminate=True`` and alpha matting.

**Edge refinement** (``refine_edges``, the ``refine=edges`` option). The
model's mask is 320x320 scaled up: at 12 MP its edge is a ramp tens of
pixels wide wherever the subject's real edge is. A guided filter (He, Sun
and Tang) fitted on a grid of ~REFINE_SIDE px explains the mask locally as
a linear function of the photo's colours, ``mask ~ a . I + b``; at full
size the soft band then gets the part of the photo's detail that this
function predicts, ``alpha + REFINE_GAIN * a . (I - I~)``, so its edge
follows the photo's edges. Where the colours explain nothing (a ~ 0) the
mask is kept as it is: unlike the plain filter's output, it is never
blurred further. Alpha 0 and above REFINE_MAX are kept.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from imaging import parallel

logger = logging.getLogger(__name__)

# Pixels with alpha in 1..BAND_MAX are cleaned. Above it the old background
# makes at most 2 % of the colour (5 levels in 255); U2-Net's subject is
# mostly 254, so cleaning up to 254 would touch the whole subject for nothing.
BAND_MAX = 250
# The grids' long sides (pixels), and the windows' half-widths as fractions
# of the photo's long side (blur fusion's 90 and 6 px on a 1 MP photo).
COARSE_SIDE = 192
FINE_SIDE = 800
# The fine grid's estimates are summed in cells of POOL x POOL pixels for
# the narrow window (a box mean there costs a ninth of one on the grid).
POOL = 3
WIDE_WINDOW = 0.078
NARROW_WINDOW = 0.0052
# Rounds of step 4 (a second one gained nothing measurable on the benchmark).
ROUNDS = 1
# The coarse means weigh each pixel by alpha (or 1 - alpha) to this power,
# so they come from the surest pixels nearby: where every colour is a mix
# of the same two, the estimate can only be as pure as F~ and B~ (weighted
# by alpha alone, a flat red disc on green came out 10 % green).
COARSE_POWER = 8
# Step 2: the rounds of its fixed-point solution, the prior's deviation
# around the model's alpha, the colour models' variance floor, and the
# confidence |F~ - B~|^2 / (|F~ - B~|^2 + TRUST + SPREAD * total var(B)).
ALPHA_ROUNDS = 2
PRIOR = 0.3
NOISE = 1e-3
TRUST = 0.01
SPREAD = 3.0
# Refinement: the guided filter's grid (long side, px), its window (half
# width as a fraction of the grid's long side), its regulariser, and how
# much of the predicted detail is added.
REFINE_SIDE = 400
REFINE_WINDOW = 0.02
REFINE_EPS = 1e-3
REFINE_GAIN = 1.5
# Mask values refined: 1..REFINE_MAX. U2-Net's subject is 254 nearly
# everywhere and the colours explain nothing there; 251-253 is the inner
# side of its edge, where refinement sharpens it.
REFINE_MAX = 253
# A fine-grid pixel whose narrow window holds this much estimated subject
# (mean of alpha^2) uses the fine fields alone; less, in proportion.
FINE_ENOUGH = 0.01


def _params() -> np.ndarray:
    return np.asarray([ALPHA_ROUNDS, PRIOR, NOISE, TRUST, SPREAD], dtype=np.float32)


def _box_mean(values: np.ndarray, radius: int, *, edge: str = "constant") -> np.ndarray:
    """Mean over a (2r+1)^2 window per channel; outside the image: zero
    ("constant", for weighted sums whose ratio is taken) or the edge ("nearest")."""
    from scipy import ndimage

    size = (2 * radius + 1, 2 * radius + 1) + ((1,) if values.ndim == 3 else ())
    return ndimage.uniform_filter(values, size=size, mode=edge, cval=0.0)


def _reduced(img: Image.Image, factor: int) -> Image.Image:
    return img.reduce(factor) if factor > 1 else img


def _coarse_fields(colours: np.ndarray, alpha: np.ndarray, radius: int) -> np.ndarray:
    """Step 1 on the coarse grid: F~ (3), B~ (3), var(F), var(B) (means over channels)."""
    a = alpha[..., None] ** COARSE_POWER
    b = (1.0 - alpha[..., None]) ** COARSE_POWER
    squares = (colours * colours).sum(axis=-1, keepdims=True)
    stacked = np.concatenate([a, a * colours, a * squares, b, b * colours, b * squares], axis=-1)
    sums = _box_mean(stacked.astype(np.float32), radius)
    fields = np.empty((*alpha.shape, 8), dtype=np.float32)
    for offset, (weight, start) in enumerate(((0, 1), (5, 6))):
        total = sums[..., weight : weight + 1] + 1e-12
        mean = sums[..., start : start + 3] / total
        fields[..., 3 * offset : 3 * offset + 3] = mean
        spread = sums[..., start + 3] / total[..., 0] - (mean * mean).sum(axis=-1)
        fields[..., 6 + offset] = np.maximum(spread, 0.0) / 3.0
    return fields


def _fine_fields(sums: np.ndarray, radius: int) -> np.ndarray:
    """Step 4's narrow window: w F~ (3), w var(F), w from the estimates' pooled sums."""
    means = _box_mean(sums / np.float32(POOL * POOL), radius)
    total = means[..., 0] + 1e-9
    colour = means[..., 1:4] / total[..., None]
    spread = np.maximum(means[..., 4] / total - (colour * colour).sum(axis=-1), 0.0) / 3.0
    weight = np.minimum(means[..., 0] / FINE_ENOUGH, 1.0)
    fine = np.empty((*total.shape, 5), dtype=np.float32)
    fine[..., :3] = colour * weight[..., None]
    fine[..., 3] = spread * weight
    fine[..., 4] = weight
    return fine


def edge_fields(img: Image.Image, mask: Image.Image) -> tuple[np.ndarray, int, np.ndarray, int]:
    """Steps 1 and 4 on the grids: (coarse fields, coarse factor, fine fields,
    fine factor), the factors in full-size pixels per grid pixel."""
    long_side = max(img.size)
    fine_factor = max(1, math.ceil(long_side / FINE_SIDE))
    fine_img, fine_mask = _reduced(img, fine_factor), _reduced(mask, fine_factor)
    step = max(1, math.ceil(max(fine_img.size) / COARSE_SIDE))
    coarse_factor = fine_factor * step

    colours = np.asarray(_reduced(fine_img, step), dtype=np.float32)[..., :3] / 255.0
    alpha = np.asarray(_reduced(fine_mask, step), dtype=np.float32) / 255.0
    coarse = _coarse_fields(colours, alpha, max(1, round(WIDE_WINDOW * long_side / coarse_factor)))

    colours = np.ascontiguousarray(np.asarray(fine_img, dtype=np.float32)[..., :3] / 255.0)
    alpha = np.asarray(fine_mask, dtype=np.float32) / 255.0
    height, width = alpha.shape
    fine = np.zeros((1, 1, 5), dtype=np.float32)  # no fine fields yet
    narrow = max(1, round(NARROW_WINDOW * long_side / (fine_factor * POOL)))
    kernels = _kernels()
    params = _params()
    band_max = BAND_MAX / 255.0
    for _ in range(ROUNDS):
        sums = np.zeros((-(-height // POOL), -(-width // POOL), 5), dtype=np.float32)
        if kernels is None:
            _estimate_grid_numpy(colours, alpha, coarse, float(step), fine, band_max, sums)
        else:
            grid_kernel = kernels[0]
            parallel.in_row_bands(
                height,
                lambda y0, y1, fine=fine, sums=sums, grid_kernel=grid_kernel: grid_kernel(
                    colours,
                    alpha,
                    coarse,
                    float(step),
                    fine,
                    float(POOL),
                    band_max,
                    params,
                    POOL,
                    y0,
                    y1,
                    sums,
                ),
                multiple=POOL,
            )
        fine = _fine_fields(sums, narrow)
    return coarse, coarse_factor, fine, fine_factor * POOL


_kernel_state: list = []
_kernel_lock = threading.Lock()


def _kernels():
    """(estimate_grid, clean_rows, refine_rows) compiled, or None (then numpy)
    where numba cannot build them."""
    with _kernel_lock:
        if not _kernel_state:
            try:
                _kernel_state.append(_compile())
            except Exception:
                logger.warning("Edge colour kernels unavailable; using numpy", exc_info=True)
                _kernel_state.append(None)
        return _kernel_state[0]


def _compile():
    from imaging.edgekernels import clean_rows, estimate_grid, refine_rows

    coarse = np.full((1, 1, 8), 0.5, dtype=np.float32)
    fine = np.zeros((1, 1, 5), dtype=np.float32)
    colours = np.zeros((2, 2, 3), dtype=np.float32)
    alpha = np.full((2, 2), 0.5, dtype=np.float32)
    sums = np.zeros((1, 1, 5), dtype=np.float32)
    estimate_grid(colours, alpha, coarse, 1.0, fine, 2.0, 0.98, _params(), 2, 0, 2, sums)
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    mask = np.full((2, 2), 128, dtype=np.uint8)
    out = np.empty((2, 2, 4), dtype=np.uint8)
    clean_rows(
        pixels, mask, coarse, 1.0, fine, 1.0, BAND_MAX, _params(), 0, 2, out.view(np.uint32)[..., 0]
    )
    refined = np.empty_like(mask)
    grid = np.zeros((1, 1, 6), np.float32)
    refine_rows(pixels, mask, grid, 1.0, np.float32(1.0), BAND_MAX, 0, 2, refined)
    return estimate_grid, clean_rows, refine_rows


def clean_cutout(
    img: Image.Image, mask: Image.Image, *, check: Callable[[], None] | None = None
) -> np.ndarray:
    """The cut-out as ``finishing.cutout_pixels`` makes it (HxWx4, colour zeroed
    under alpha 0, input alpha respected), with the soft band's colours cleaned."""
    tick = check or (lambda: None)
    rgb = img if img.mode in ("RGB", "RGBA") else img.convert("RGB")
    if mask.mode != "L":
        mask = mask.convert("L")
    coarse, coarse_factor, fine, fine_factor = edge_fields(rgb, mask)
    tick()
    pixels = np.asarray(rgb)
    alpha = np.asarray(mask)
    out = np.empty((*alpha.shape, 4), dtype=np.uint8)
    kernels = _kernels()
    if kernels is None or sys.byteorder != "little":
        _clean_numpy(pixels, alpha, coarse, coarse_factor, fine, fine_factor, out)
    else:
        params = _params()
        words = out.view(np.uint32)[..., 0]
        parallel.in_row_bands(
            alpha.shape[0],
            lambda y0, y1: kernels[1](
                pixels,
                alpha,
                coarse,
                float(coarse_factor),
                fine,
                float(fine_factor),
                BAND_MAX,
                params,
                y0,
                y1,
                words,
            ),
        )
    if rgb.mode == "RGBA":
        combined = (alpha.astype(np.uint16) * pixels[..., 3]) // 255
        out[..., 3] = combined
        out[combined == 0] = 0
    return out


def refine_grid(img: Image.Image, mask: Image.Image) -> tuple[np.ndarray, int]:
    """The guided filter on the grid: (a (3) and I~ (3) per grid pixel, the grid's factor)."""
    factor = max(1, math.ceil(max(img.size) / REFINE_SIDE))
    colours = np.asarray(_reduced(img, factor), dtype=np.float32)[..., :3] / 255.0
    target = np.asarray(_reduced(mask, factor), dtype=np.float32) / 255.0
    radius = max(1, round(REFINE_WINDOW * max(target.shape)))
    pairs = [(i, j) for i in range(3) for j in range(i, 3)]
    stacked = np.concatenate(
        [
            colours,
            target[..., None],
            colours * target[..., None],
            np.stack([colours[..., i] * colours[..., j] for i, j in pairs], axis=-1),
        ],
        axis=-1,
    )
    means = _box_mean(stacked, radius, edge="nearest")
    mean_colour, mean_target = means[..., :3], means[..., 3]
    covariance = means[..., 4:7] - mean_colour * mean_target[..., None]
    # The colours' covariance (symmetric: xx, xy, xz, yy, yz, zz) plus the
    # regulariser, solved for the slope by Cramer's rule, all pixels at once.
    xx, xy, xz, yy, yz, zz = (
        means[..., 7 + k] - mean_colour[..., i] * mean_colour[..., j]
        for k, (i, j) in enumerate(pairs)
    )
    xx, yy, zz = xx + REFINE_EPS, yy + REFINE_EPS, zz + REFINE_EPS
    cofactors = (
        yy * zz - yz * yz,
        xz * yz - xy * zz,
        xy * yz - xz * yy,
        xx * zz - xz * xz,
        xy * xz - xx * yz,
        xx * yy - xy * xy,
    )
    c_xx, c_xy, c_xz, c_yy, c_yz, c_zz = cofactors
    determinant = xx * c_xx + xy * c_xy + xz * c_xz
    bx, by, bz = covariance[..., 0], covariance[..., 1], covariance[..., 2]
    slope = (
        np.stack(
            [
                c_xx * bx + c_xy * by + c_xz * bz,
                c_xy * bx + c_yy * by + c_yz * bz,
                c_xz * bx + c_yz * by + c_zz * bz,
            ],
            axis=-1,
        )
        / determinant[..., None]
    )
    grid = np.concatenate([slope, mean_colour], axis=-1).astype(np.float32)
    grid = _box_mean(grid, radius, edge="nearest")
    return np.ascontiguousarray(grid, dtype=np.float32), factor


def refine_edges(
    img: Image.Image, mask: Image.Image, *, check: Callable[[], None] | None = None
) -> Image.Image:
    """The mask with its soft band following the photo's edges (see the module's notes)."""
    tick = check or (lambda: None)
    rgb = img if img.mode in ("RGB", "RGBA") else img.convert("RGB")
    if mask.mode != "L":
        mask = mask.convert("L")
    grid, factor = refine_grid(rgb, mask)
    tick()
    pixels = np.asarray(rgb)
    alpha = np.asarray(mask)
    out = np.empty_like(alpha)
    kernels = _kernels()
    if kernels is None:
        _refine_numpy(pixels, alpha, grid, factor, out)
    else:
        parallel.in_row_bands(
            alpha.shape[0],
            lambda y0, y1: kernels[2](
                pixels, alpha, grid, float(factor), np.float32(REFINE_GAIN), REFINE_MAX, y0, y1, out
            ),
        )
    return Image.fromarray(out, "L")


# --- The same in numpy (no numba) ---------------------------------------------------


def _sample(grid: np.ndarray, ys: np.ndarray, xs: np.ndarray, scale: float) -> np.ndarray:
    """``grid`` at full-size pixels (ys, xs), ``scale`` pixels per grid pixel, bilinear."""
    height, width = grid.shape[:2]
    gy = np.clip((ys + 0.5) / scale - 0.5, 0.0, height - 1).astype(np.float32)
    gx = np.clip((xs + 0.5) / scale - 0.5, 0.0, width - 1).astype(np.float32)
    y0, x0 = gy.astype(np.intp), gx.astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    fy, fx = (gy - y0)[:, None], (gx - x0)[:, None]
    top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
    bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _fields_numpy(coarse, coarse_scale, fine, fine_scale, ys, xs) -> np.ndarray:
    value = _sample(coarse, ys, xs, coarse_scale)
    extra = _sample(fine, ys, xs, fine_scale)
    keep = 1.0 - np.clip(extra[:, 4:5], 0.0, 1.0)
    value[:, :3] = extra[:, :3] + keep * value[:, :3]
    value[:, 6] = extra[:, 3] + keep[:, 0] * value[:, 6]
    return value


def _estimate_numpy(colour: np.ndarray, a: np.ndarray, value: np.ndarray):
    """``edgekernels._estimate`` for N pixels: (colours N x 3, the alphas used)."""
    subject, background = value[:, :3], value[:, 3:6]
    var_f, var_b = value[:, 6] + NOISE, value[:, 7] + NOISE
    line = subject - background
    length = (line * line).sum(axis=-1)
    along = (line * (colour - background)).sum(axis=-1)
    confidence = length / (length + TRUST + SPREAD * 3.0 * value[:, 7])
    prior = np.float32(1.0 / (PRIOR * PRIOR))
    t = a
    for _ in range(ALPHA_ROUNDS):
        spread = t * t * var_f + (1 - t) * (1 - t) * var_b
        t = np.clip((along + a * prior * spread) / (length + prior * spread), 0.0, 1.0)
    mixed = confidence * t + (1 - confidence) * a
    spread = mixed * mixed * var_f + (1 - mixed) * (1 - mixed) * var_b
    m = mixed[:, None]
    r = colour - m * subject - (1 - m) * background
    return np.clip(subject + (mixed * var_f / spread)[:, None] * r, 0.0, 1.0), mixed


def _estimate_grid_numpy(colours, alpha, coarse, coarse_scale, fine, band_max, sums) -> None:
    ys, xs = np.nonzero(alpha > 0.0)
    a = alpha[ys, xs]
    estimate, used = colours[ys, xs].copy(), a.copy()
    soft = a <= band_max
    if soft.any():
        value = _fields_numpy(coarse, coarse_scale, fine, float(POOL), ys[soft], xs[soft])
        estimate[soft], used[soft] = _estimate_numpy(colours[ys[soft], xs[soft]], a[soft], value)
    weight = used * used
    cells = (ys // POOL, xs // POOL)
    np.add.at(sums[..., 0], cells, weight)
    for c in range(3):
        np.add.at(sums[..., 1 + c], cells, weight * estimate[:, c])
    np.add.at(sums[..., 4], cells, weight * (estimate * estimate).sum(axis=-1))


def _clean_numpy(pixels, alpha, coarse, coarse_factor, fine, fine_factor, out) -> None:
    out[..., :3] = pixels[..., :3]
    out[..., 3] = alpha
    ys, xs = np.nonzero((alpha >= 1) & (alpha <= BAND_MAX))
    if len(ys):
        value = _fields_numpy(coarse, coarse_factor, fine, fine_factor, ys, xs)
        colour = pixels[ys, xs, :3].astype(np.float32) / 255.0
        cleaned, _ = _estimate_numpy(colour, alpha[ys, xs].astype(np.float32) / 255.0, value)
        out[ys, xs, :3] = (cleaned * 255.0 + 0.5).astype(np.uint8)
    out[alpha == 0] = 0


def _refine_numpy(pixels, alpha, grid, factor, out) -> None:
    out[:] = alpha
    ys, xs = np.nonzero((alpha > 0) & (alpha <= REFINE_MAX))
    if len(ys):
        value = _sample(grid, ys, xs, float(factor))
        colour = pixels[ys, xs, :3].astype(np.float32) / 255.0
        detail = (value[:, :3] * (colour - value[:, 3:6])).sum(axis=-1)
        refined = np.clip(alpha[ys, xs] / np.float32(255.0) + REFINE_GAIN * detail, 0.0, 1.0)
        out[ys, xs] = (refined * 255.0 + 0.5).astype(np.uint8)


def warm_up_edges() -> float:
    """Compiles (or loads from numba's disk cache) the kernels; returns seconds.

    The first compile takes several seconds; a worker pays it when it
    starts (``sessions.warm_models``), not in its first job.
    """
    started = time.monotonic()
    if _kernels() is not None:
        # Through the real path: numba compiles one version per argument
        # type, and a PIL image's pixels are a read-only array.
        img = Image.new("RGB", (64, 48), (200, 60, 40))
        mask = Image.new("L", img.size, 0)
        mask.paste(128, (8, 8, 56, 40))
        mask.paste(255, (16, 16, 48, 32))
        clean_cutout(img, mask)
        refine_edges(img, mask)
    return time.monotonic() - started
