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
    mdat with the coded picture); the box sizes are left alone. A run of
    bytes, not one: HEVC and AV1 decoders shrug off a single flipped byte in
    the picture, and the point is to reach what they refuse too."""
    boxes = _isobmff_boxes(data)
    if rng.random() < 0.3:
        # The coded picture cut short (the last box, its header kept): the
        # framing still reads, the decoder meets the end of its data.
        offset, kind, length = boxes[-1]
        cut = offset + 8 + rng.randrange(max(1, min(length, len(data) - offset) - 8))
        return f"cut {kind!r} box at {cut}", data[:cut]
    out = bytearray(data)
    offset, kind, length = rng.choice(boxes)
    start = offset + 8 + rng.randrange(max(1, length - 8))
    run = rng.choice([1, 1, 4, 16])
    end = min(len(out), start + run, offset + max(length, 8))
    for spot in range(start, end):
        out[spot] = rng.randrange(256)
    return f"damage {kind!r} box at {offset}: bytes {start}-{end}", bytes(out)


def tiff_directory(data: bytes, rng: random.Random) -> Mutant:
    """The header and the first directory (sizes, offsets, compression)."""
    out = bytearray(data)
    (ifd,) = struct.unpack("<I" if data[:2] == b"II" else ">I", data[4:8])
    start = rng.choice([4, min(ifd, len(data) - 1)])
    spots = [rng.randrange(start, min(len(data), start + 160)) for _ in range(rng.randint(1, 2))]
    for spot in spots:
        out[spot] = rng.choice([0, 1, 0xFF, rng.randrange(256)])
    return f"damage TIFF directory: bytes {spots}", bytes(out)
