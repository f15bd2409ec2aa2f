"""PNG's per-row adaptive filter, compiled with numba (imported only to encode).

libpng's heuristic, the one Pillow (hence rembg) uses: for each row, try
all five filters and keep the one whose bytes, read as signed, have the
smallest sum of absolute values. numpy would need a dozen full-size
temporaries for Paeth alone (seconds at 12 MP); one compiled pass per row
costs about as much as numpy's single subtraction for the "Up" filter.

numba compiles the kernel on first use (about 2 s) and caches it on disk
next to this file (or in NUMBA_CACHE_DIR); ``registry.warm_models`` pays
for it when a worker starts. numba is already here: rembg's alpha matting
(pymatting) is built on it.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, boundscheck=False)
def _paeth(a: int, b: int, c: int) -> int:  # pragma: no cover - compiled
    p = a + b - c
    pa = abs(p - a)
    pb = abs(p - b)
    pc = abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    if pb <= pc:
        return b
    return c


@njit(nogil=True, cache=True, boundscheck=False)
def adaptive_filter_rows(
    rows: np.ndarray, first: int, stop: int, bpp: int, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Filters ``rows[first:stop]`` (H x stride, uint8) into ``out`` (n x stride+1).

    Each output row starts with its filter type (0 None, 1 Sub, 2 Up,
    3 Average, 4 Paeth). Row ``first - 1`` is read as the row above, so
    bands filtered separately join into exactly the whole image's rows.
    Releases the GIL: bands run on threads.
    """
    stride = rows.shape[1]
    zero = np.zeros(stride, np.uint8)
    for y in range(first, stop):
        row = rows[y]
        up = rows[y - 1] if y > 0 else zero
        s0 = 0
        s1 = 0
        s2 = 0
        s3 = 0
        s4 = 0
        for i in range(stride):
            x = np.int32(row[i])
            b = np.int32(up[i])
            a = np.int32(row[i - bpp]) if i >= bpp else np.int32(0)
            c = np.int32(up[i - bpp]) if i >= bpp else np.int32(0)
            d0 = x
            d1 = (x - a) & 255
            d2 = (x - b) & 255
            d3 = (x - ((a + b) >> 1)) & 255
            d4 = (x - _paeth(a, b, c)) & 255
            s0 += d0 if d0 < 128 else 256 - d0
            s1 += d1 if d1 < 128 else 256 - d1
            s2 += d2 if d2 < 128 else 256 - d2
            s3 += d3 if d3 < 128 else 256 - d3
            s4 += d4 if d4 < 128 else 256 - d4
        # Ties go to the simpler filter, as in libpng.
        best = 0
        smallest = s0
        if s1 < smallest:
            best, smallest = 1, s1
        if s2 < smallest:
            best, smallest = 2, s2
        if s3 < smallest:
            best, smallest = 3, s3
        if s4 < smallest:
            best, smallest = 4, s4
        target = out[y - first]
        target[0] = best
        for i in range(stride):
            x = np.int32(row[i])
            b = np.int32(up[i])
            a = np.int32(row[i - bpp]) if i >= bpp else np.int32(0)
            if best == 0:
                v = x
            elif best == 1:
                v = x - a
            elif best == 2:
                v = x - b
            elif best == 3:
                v = x - ((a + b) >> 1)
            else:
                c = np.int32(up[i - bpp]) if i >= bpp else np.int32(0)
                v = x - _paeth(a, b, c)
            target[i + 1] = v & 255
