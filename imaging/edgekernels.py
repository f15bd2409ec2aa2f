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

``harden_rows`` is hard edges' colour pull (``imaging.layers``),
compiled for the same reason: a loop over a window per edge pixel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_OPTIONS = {"nogil": True, "cache": True, "boundscheck": False, "error_model": "numpy"}
_INVERSE_255 = np.float32(1.0 / 255.0)


@njit(inline="always", **_OPTIONS)
def _grid_row(grid, scale, y):  # pragma: no cover - compiled
    """The two grid rows around full-size row ``y`` and the weight of the second."""
    height = grid.shape[0]
    gy = min(max((y + 0.5) / scale - 0.5, 0.0), height - 1.0)
    y0 = int(gy)
    return y0, min(y0 + 1, height - 1), np.float32(gy - y0)


@njit(inline="always", **_OPTIONS)
def _sample(grid, y0, y1, fy, scale, x, value, offset):  # pragma: no cover - compiled
    """``grid`` bilinearly at full-size column ``x`` between rows y0 and y1, into value[offset:]."""
    width = grid.shape[1]
    gx = min(max((x + 0.5) / scale - 0.5, 0.0), width - 1.0)
    x0 = int(gx)
    x1 = min(x0 + 1, width - 1)
    fx = np.float32(gx - x0)
    one = np.float32(1.0)
    for c in range(grid.shape[2]):
        top = grid[y0, x0, c] * (one - fx) + grid[y0, x1, c] * fx
        bottom = grid[y1, x0, c] * (one - fx) + grid[y1, x1, c] * fx
        value[offset + c] = top * (one - fy) + bottom * fy


@njit(inline="always", **_OPTIONS)
def _fields_at(coarse, coarse_scale, crow, fine, fine_scale, frow, x, value):  # pragma: no cover
    """The 8 fields at column x of a row: the fine grid's F~ and var(F) where it has them."""
    _sample(coarse, crow[0], crow[1], crow[2], coarse_scale, x, value, 0)
    _sample(fine, frow[0], frow[1], frow[2], fine_scale, x, value, 8)
    keep = np.float32(1.0) - min(max(value[12], np.float32(0.0)), np.float32(1.0))
    for c in range(3):
        value[c] = value[8 + c] + keep * value[c]
    value[6] = value[11] + keep * value[6]


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
        # (along / spread + a prior) / (length / spread + prior), one division.
        spread = t * t * var_f + (np.float32(1.0) - t) * (np.float32(1.0) - t) * var_b
        t = (along + a * prior * spread) / (length + prior * spread)
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
        crow = _grid_row(coarse, coarse_scale, y)
        frow = _grid_row(fine, fine_scale, y)
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
                _fields_at(coarse, coarse_scale, crow, fine, fine_scale, frow, x, value)
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
    """Rows first..stop-1 of the cut-out into ``out`` (H x W uint32, one RGBA
    pixel per little-endian word): colour zeroed under alpha 0, kept above
    ``band_max``, estimated between."""
    width = alpha.shape[1]
    value = np.empty(13, np.float32)
    colour = np.empty(3, np.float32)
    result = np.empty(3, np.float32)
    for y in range(first, stop):
        row = pixels[y]
        crow = _grid_row(coarse, coarse_scale, y)
        frow = _grid_row(fine, fine_scale, y)
        for x in range(width):
            a8 = np.uint32(alpha[y, x])
            if a8 == 0:
                out[y, x] = 0
            elif a8 > band_max:
                out[y, x] = (
                    np.uint32(row[x, 0])
                    | (np.uint32(row[x, 1]) << 8)
                    | (np.uint32(row[x, 2]) << 16)
                    | (a8 << 24)
                )
            else:
                _fields_at(coarse, coarse_scale, crow, fine, fine_scale, frow, x, value)
                for c in range(3):
                    colour[c] = row[x, c] * _INVERSE_255
                _estimate(colour, a8 * _INVERSE_255, value, params, result)
                word = a8 << 24
                for c in range(3):
                    word |= np.uint32(result[c] * np.float32(255.0) + np.float32(0.5)) << (8 * c)
                out[y, x] = word


@njit(**_OPTIONS)
def refine_rows(pixels, alpha, grid, scale, gain, band_max, first, stop, out):  # pragma: no cover
    """Rows first..stop-1 of the refined mask into ``out`` (H x W uint8): alpha
    0 and above ``band_max`` kept, the soft band moved by the guided filter's
    image detail, ``alpha + gain * a . (I - I~)`` with a (3) and I~ (3) from ``grid``."""
    width = alpha.shape[1]
    value = np.empty(6, np.float32)
    for y in range(first, stop):
        y0, y1, fy = _grid_row(grid, scale, y)
        for x in range(width):
            a8 = alpha[y, x]
            if a8 == 0 or a8 > band_max:
                out[y, x] = a8
                continue
            _sample(grid, y0, y1, fy, scale, x, value, 0)
            detail = np.float32(0.0)
            for c in range(3):
                detail += value[c] * (pixels[y, x, c] / np.float32(255.0) - value[3 + c])
            refined = a8 / np.float32(255.0) + gain * detail
            refined = min(max(refined, np.float32(0.0)), np.float32(1.0))
            out[y, x] = np.uint8(refined * np.float32(255.0) + np.float32(0.5))


@njit(**_OPTIONS)
def harden_rows(src, first, stop, radius, solid, threshold, dst):  # pragma: no cover - compiled
    """Rows first..stop-1 of hard edges (``layers.harden``) from ``src`` into
    ``dst`` (H x W x 4): alpha below ``threshold`` clear (colour too), at or
    above ``solid`` opaque with its colour, between them opaque with its
    colour moved towards the mean colour of the solid pixels within
    ``radius``, by its share (1 up to halfway between ``threshold`` and
    opaque, then less and less)."""
    height, width = src.shape[0], src.shape[1]
    span = np.float32(255 - threshold)
    for y in range(first, stop):
        for x in range(width):
            a8 = src[y, x, 3]
            if a8 < threshold:
                for c in range(4):
                    dst[y, x, c] = 0
                continue
            dst[y, x, 3] = 255
            if a8 >= solid:
                for c in range(3):
                    dst[y, x, c] = src[y, x, c]
                continue
            total0 = total1 = total2 = np.float32(0.0)
            count = np.float32(0.0)
            for yy in range(max(0, y - radius), min(height, y + radius + 1)):
                for xx in range(max(0, x - radius), min(width, x + radius + 1)):
                    if src[yy, xx, 3] >= solid:
                        total0 += np.float32(src[yy, xx, 0])
                        total1 += np.float32(src[yy, xx, 1])
                        total2 += np.float32(src[yy, xx, 2])
                        count += np.float32(1.0)
            if count == 0:
                for c in range(3):
                    dst[y, x, c] = src[y, x, c]
                continue
            share = np.float32(2.0) * (np.float32(255.0) - np.float32(a8)) / span
            share = min(max(share, np.float32(0.0)), np.float32(1.0))
            for c in range(3):
                total = total0 if c == 0 else (total1 if c == 1 else total2)
                own = np.float32(src[y, x, c])
                mixed = own + (total / count - own) * share
                dst[y, x, c] = np.uint8(mixed + np.float32(0.5))
