"""The per-pixel half of edge colour cleaning, compiled with numba.

``imaging.edges`` explains the estimate; its ``_numpy`` functions are the
same thing in numpy (the tests hold the two to each other). Both kernels
read two grids of fields, interpolated bilinearly at each pixel:

- coarse (8 channels): F~ (3), B~ (3), var(F), var(B) over a wide window;
- fine (5 channels, premultiplied by their weight w): w F~ (3), w var(F), w,
  from the previous round's estimates over a narrow window (w = 0: none).

numba compiles them on first use and caches them on disk next to this file
(or in NUMBA_CACHE_DIR); workers pay that when they start
(``sessions.warm_models``). They release the GIL: row bands run on threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_OPTIONS = {"nogil": True, "cache": True, "boundscheck": False, "error_model": "numpy"}


@njit(inline="always", **_OPTIONS)
def _sample(grid, gy, gx, value, offset):  # pragma: no cover - compiled
    """``grid`` at grid coordinates (gy, gx), bilinear, clamped, into value[offset:]."""
    height, width = grid.shape[0], grid.shape[1]
    gy = min(max(gy, 0.0), height - 1.0)
    gx = min(max(gx, 0.0), width - 1.0)
    y0, x0 = int(gy), int(gx)
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    fy, fx = gy - y0, gx - x0
    for c in range(grid.shape[2]):
        top = grid[y0, x0, c] * (1.0 - fx) + grid[y0, x1, c] * fx
        bottom = grid[y1, x0, c] * (1.0 - fx) + grid[y1, x1, c] * fx
        value[offset + c] = top * (1.0 - fy) + bottom * fy


@njit(inline="always", **_OPTIONS)
def _fields_at(coarse, coarse_scale, fine, fine_scale, y, x, value):  # pragma: no cover
    """The 8 fields at pixel (y, x): the fine grid's F~ and var(F) where it has them."""
    _sample(coarse, (y + 0.5) / coarse_scale - 0.5, (x + 0.5) / coarse_scale - 0.5, value, 0)
    _sample(fine, (y + 0.5) / fine_scale - 0.5, (x + 0.5) / fine_scale - 0.5, value, 8)
    weight = min(max(value[12], np.float32(0.0)), np.float32(1.0))
    for c in range(3):
        value[c] = value[8 + c] + (np.float32(1.0) - weight) * value[c]
    value[6] = value[11] + (np.float32(1.0) - weight) * value[6]


@njit(inline="always", **_OPTIONS)
def _estimate(colour, a, value, params, result):  # pragma: no cover - compiled
    """The subject's colour at one pixel into ``result``; returns the alpha it used.

    params: rounds, prior, noise, trust, spread (see ``imaging.edges``).
    """
    rounds = int(params[0])
    prior = np.float32(1.0) / (params[1] * params[1])
    var_f = value[6] + params[2]
    var_b = value[7] + params[2]
    length = np.float32(0.0)
    along = np.float32(0.0)
    for c in range(3):
        line = value[c] - value[c + 3]
        length += line * line
        along += line * (colour[c] - value[c + 3])
    confidence = length / (length + params[3] + params[4] * np.float32(3.0) * value[7])
    t = a
    for _ in range(rounds):
        spread = t * t * var_f + (np.float32(1.0) - t) * (np.float32(1.0) - t) * var_b
        t = (along / spread + a * prior) / (length / spread + prior)
        t = min(max(t, np.float32(0.0)), np.float32(1.0))
    mixed = confidence * t + (np.float32(1.0) - confidence) * a
    spread = mixed * mixed * var_f + (np.float32(1.0) - mixed) * (np.float32(1.0) - mixed) * var_b
    gain = mixed * var_f / spread
    for c in range(3):
        r = colour[c] - mixed * value[c] - (np.float32(1.0) - mixed) * value[c + 3]
        result[c] = min(max(value[c] + gain * r, np.float32(0.0)), np.float32(1.0))
    return mixed


@njit(**_OPTIONS)
def estimate_grid(
    colours,
    alpha,
    coarse,
    coarse_scale,
    fine,
    fine_scale,
    band_max,
    params,
    pool,
    first,
    stop,
    sums,
):  # pragma: no cover - compiled
    """Rows first..stop-1 of the fine grid (``first`` a multiple of ``pool``): the
    estimates added into ``sums`` (pooled: one cell per pool x pool pixels, 5
    channels): w, w F (3), w |F|^2, with w = the alpha used, squared."""
    width = alpha.shape[1]
    value = np.empty(13, np.float32)
    colour = np.empty(3, np.float32)
    result = np.empty(3, np.float32)
    for y in range(first, stop):
        cy = y // pool
        for x in range(width):
            a = alpha[y, x]
            if a <= 0.0:
                continue
            for c in range(3):
                colour[c] = colours[y, x, c]
            if a > band_max:
                used = a
                for c in range(3):
                    result[c] = colour[c]
            else:
                _fields_at(coarse, coarse_scale, fine, fine_scale, y, x, value)
                used = _estimate(colour, a, value, params, result)
            weight = used * used
            cx = x // pool
            squares = np.float32(0.0)
            for c in range(3):
                sums[cy, cx, 1 + c] += weight * result[c]
                squares += result[c] * result[c]
            sums[cy, cx, 0] += weight
            sums[cy, cx, 4] += weight * squares


@njit(**_OPTIONS)
def clean_rows(
    pixels, alpha, coarse, coarse_scale, fine, fine_scale, band_max, params, first, stop, out
):  # pragma: no cover - compiled
    """Rows first..stop-1 of the cut-out into ``out`` (H x W x 4 uint8): colour
    zeroed under alpha 0, kept above ``band_max``, estimated between."""
    width = alpha.shape[1]
    value = np.empty(13, np.float32)
    colour = np.empty(3, np.float32)
    result = np.empty(3, np.float32)
    for y in range(first, stop):
        for x in range(width):
            a8 = alpha[y, x]
            out[y, x, 3] = a8
            if a8 == 0:
                out[y, x, 0] = 0
                out[y, x, 1] = 0
                out[y, x, 2] = 0
            elif a8 > band_max:
                out[y, x, 0] = pixels[y, x, 0]
                out[y, x, 1] = pixels[y, x, 1]
                out[y, x, 2] = pixels[y, x, 2]
            else:
                _fields_at(coarse, coarse_scale, fine, fine_scale, y, x, value)
                for c in range(3):
                    colour[c] = pixels[y, x, c] / np.float32(255.0)
                _estimate(colour, a8 / np.float32(255.0), value, params, result)
                for c in range(3):
                    out[y, x, c] = np.uint8(result[c] * np.float32(255.0) + np.float32(0.5))


@njit(**_OPTIONS)
def refine_rows(pixels, alpha, grid, scale, gain, first, stop, out):  # pragma: no cover
    """Rows first..stop-1 of the refined mask into ``out`` (H x W uint8): alpha
    0 and 255 kept, the soft band moved by the guided filter's image detail,
    ``alpha + gain * a . (I - I~)`` with a (3) and I~ (3) from ``grid``."""
    width = alpha.shape[1]
    value = np.empty(6, np.float32)
    for y in range(first, stop):
        for x in range(width):
            a8 = alpha[y, x]
            if a8 == 0 or a8 == 255:
                out[y, x] = a8
                continue
            _sample(grid, (y + 0.5) / scale - 0.5, (x + 0.5) / scale - 0.5, value, 0)
            detail = np.float32(0.0)
            for c in range(3):
                detail += value[c] * (pixels[y, x, c] / np.float32(255.0) - value[3 + c])
            refined = a8 / np.float32(255.0) + gain * detail
            refined = min(max(refined, np.float32(0.0)), np.float32(1.0))
            out[y, x] = np.uint8(refined * np.float32(255.0) + np.float32(0.5))
