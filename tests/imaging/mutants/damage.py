"""Byte damage, to a whole file or to one payload, and edge values."""

from __future__ import annotations

import random
import struct

Mutant = tuple[str, bytes]

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


def interesting_sizes(current: int, rng: random.Random, bits: int) -> int:
    """A side, length or offset likely to find an off-by-one or an overflow."""
    top = (1 << bits) - 1
    return (
        rng.choice(
            [
                0,
                1,
                2,
                current - 1,
                current + 1,
                current * 2,
                current * 64,
                top,
                top // 2,
                top // 2 + 1,
            ]
            + [rng.randrange(top + 1)]
        )
        & top
    )


def damage_bytes(data: bytes, rng: random.Random) -> Mutant:
    """One byte-level change: flips, runs, inserts, deletes, a truncation,
    a duplicated run, or a 16/32-bit field set to an edge value."""
    out = bytearray(data)
    if not out:
        extra = rng.randbytes(rng.randint(1, 8))
        return f"insert {extra.hex()}", extra
    at = rng.randrange(len(out))
    kind = rng.randrange(8)
    if kind == 0:
        bits = [rng.randrange(len(out) * 8) for _ in range(rng.randint(1, 4))]
        for bit in bits:
            out[bit // 8] ^= 1 << (bit % 8)
        return f"flip bits {bits}", bytes(out)
    if kind == 1:
        value = rng.choice(INTERESTING_BYTES)
        out[at] = value
        return f"byte {at} = {value:#04x}", bytes(out)
    if kind == 2:
        extra = rng.randbytes(rng.randint(1, 16))
        return f"insert {extra.hex()} at {at}", bytes(out[:at] + extra + out[at:])
    if kind == 3:
        count = rng.randint(1, 16)
        return f"delete {count} at {at}", bytes(out[:at] + out[at + count :])
    if kind == 4:
        return f"truncate at {at}", bytes(out[:at])
    if kind == 5:
        count = rng.randint(1, 32)
        fill = rng.choice([b"\x00" * count, b"\xff" * count, rng.randbytes(count)])
        out[at : at + count] = fill
        return f"overwrite {count} at {at} with {fill[:4].hex()}..", bytes(out)
    if kind == 6:
        count = rng.randint(1, 64)
        run = out[at : at + count]
        return f"repeat {len(run)} at {at}", bytes(out[: at + count] + run + out[at + count :])
    width, order = rng.choice([(2, ">H"), (2, "<H"), (4, ">I"), (4, "<I")])
    if len(out) < width:
        return f"truncate at {at}", bytes(out[:at])
    at = rng.randrange(len(out) - width + 1)
    value = rng.choice([0, 1, len(data), (1 << (8 * width)) - 1, 1 << (8 * width - 1)])
    out[at : at + width] = struct.pack(order, value)
    return f"{order} field at {at} = {value}", bytes(out)
