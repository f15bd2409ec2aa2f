"""HEIC/AVIF (ISO-BMFF boxes) and TIFF (header and directories): damage inside
one unit of the file, its framing kept, so the mutant reaches the decoder."""

from __future__ import annotations

import random
import struct

from tests.imaging.mutants.damage import Mutant


def _isobmff_boxes(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, type, size) of each top-level box of a HEIF or AVIF file."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        (size,) = struct.unpack(">I", data[offset : offset + 4])
        boxes.append((offset, data[offset + 4 : offset + 8], size))
        if size < 8:
            break
        offset += size
    return boxes


def isobmff_box(data: bytes, rng: random.Random) -> Mutant:
    """Inside one top-level box (ftyp, meta with its item sizes and properties,
    mdat with the coded picture); the box sizes are left alone."""
    out = bytearray(data)
    offset, kind, length = rng.choice(_isobmff_boxes(data))
    spots = [offset + 8 + rng.randrange(max(1, length - 8)) for _ in range(rng.randint(1, 3))]
    for spot in spots:
        out[min(spot, len(out) - 1)] = rng.randrange(256)
    return f"damage {kind!r} box at {offset}: bytes {spots}", bytes(out)


def tiff_directory(data: bytes, rng: random.Random) -> Mutant:
    """The header and the first directory (sizes, offsets, compression)."""
    out = bytearray(data)
    (ifd,) = struct.unpack("<I" if data[:2] == b"II" else ">I", data[4:8])
    start = rng.choice([4, min(ifd, len(data) - 1)])
    spots = [rng.randrange(start, min(len(data), start + 160)) for _ in range(rng.randint(1, 2))]
    for spot in spots:
        out[spot] = rng.choice([0, 1, 0xFF, rng.randrange(256)])
    return f"damage TIFF directory: bytes {spots}", bytes(out)
