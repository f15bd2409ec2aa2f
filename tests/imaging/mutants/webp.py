"""WebP: RIFF chunks rebuilt with every size right."""

from __future__ import annotations

import random
import struct

from tests.imaging.mutants.damage import INTERESTING_BYTES, Mutant, damage_bytes, interesting_sizes


def riff_chunks(data: bytes) -> list[list[bytes]]:
    """[fourcc, payload] of each chunk inside RIFF/WEBP."""
    chunks, offset = [], 12
    while offset + 8 <= len(data):
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        chunks.append([data[offset : offset + 4], data[offset + 8 : offset + 8 + size]])
        offset += 8 + size + (size & 1)
    return chunks


def riff_build(chunks: list[list[bytes]]) -> bytes:
    """The file of these chunks, every size (and the RIFF's) right, odd ones padded."""
    body = b"".join(
        fourcc + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)
        for fourcc, payload in chunks
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def webp_chunk_payload(data: bytes, rng: random.Random) -> Mutant:
    chunks = riff_chunks(data)
    index = rng.randrange(len(chunks))
    change, chunks[index][1] = damage_bytes(chunks[index][1], rng)
    return f"WebP {chunks[index][0].decode()} #{index}: {change}", riff_build(chunks)


def webp_header_field(data: bytes, rng: random.Random) -> Mutant:
    """The canvas (VP8X), the key frame's size (VP8) or the lossless header (VP8L)."""
    chunks = riff_chunks(data)
    index = rng.randrange(len(chunks))
    fourcc, payload = chunks[index][0], bytearray(chunks[index][1])
    if fourcc == b"VP8X" and len(payload) >= 10:
        field = rng.choice(["flags", "canvas width", "canvas height"])
        if field == "flags":
            value = rng.choice([0, 0x10, 0x08, 0x20, 0x02, 0x3E, 0xFF])
            payload[0] = value
        else:
            at = 4 if field == "canvas width" else 7
            current = int.from_bytes(payload[at : at + 3], "little")
            value = interesting_sizes(current, rng, 24)
            payload[at : at + 3] = value.to_bytes(3, "little")
    elif fourcc == b"VP8 " and len(payload) >= 10:
        field = rng.choice(["frame tag", "start code", "width", "height"])
        if field in ("width", "height"):
            at = 6 if field == "width" else 8
            (current,) = struct.unpack("<H", payload[at : at + 2])
            value = interesting_sizes(current, rng, 16)
            payload[at : at + 2] = struct.pack("<H", value)
        else:
            at = rng.randrange(3) + (0 if field == "frame tag" else 3)
            value = rng.choice(INTERESTING_BYTES)
            payload[at] = value
    elif fourcc == b"VP8L" and len(payload) >= 5:
        field = rng.choice(["signature", "size", "version"])
        (bits,) = struct.unpack("<I", payload[1:5])
        if field == "signature":
            value = rng.choice([0x2F, 0x2E, 0x00, 0xFF])
            payload[0] = value
        elif field == "size":
            value = interesting_sizes(bits & 0x0FFFFFFF, rng, 28)
            payload[1:5] = struct.pack("<I", (bits & 0xF0000000) | value)
        else:
            value = rng.randrange(8)
            payload[1:5] = struct.pack("<I", (bits & 0x1FFFFFFF) | (value << 29))
    else:
        change, damaged = damage_bytes(bytes(payload), rng)
        chunks[index][1] = damaged
        return f"WebP {fourcc.decode()} #{index}: {change}", riff_build(chunks)
    chunks[index][1] = bytes(payload)
    return f"WebP {fourcc.decode()} {field} = {value}", riff_build(chunks)


def webp_bitstream(data: bytes, rng: random.Random) -> Mutant:
    """Damage past the VP8/VP8L/ALPH header, inside the compressed image itself."""
    chunks = riff_chunks(data)
    skip = {b"VP8 ": 10, b"VP8L": 5, b"ALPH": 1}
    index = rng.choice([i for i, (fourcc, _) in enumerate(chunks) if fourcc in skip])
    fourcc, payload = chunks[index]
    head = skip[fourcc]
    change, damaged = damage_bytes(payload[head:], rng)
    chunks[index][1] = payload[:head] + damaged
    return f"WebP {fourcc.decode()} bitstream: {change}", riff_build(chunks)


def webp_chunk_order(data: bytes, rng: random.Random) -> Mutant:
    chunks = riff_chunks(data)
    index = rng.randrange(len(chunks))
    name = chunks[index][0].decode()
    kind = rng.randrange(5)
    if kind == 0:
        del chunks[index]
        change = f"drop {name}"
    elif kind == 1:
        chunks.insert(index, list(chunks[index]))
        change = f"repeat {name}"
    elif kind == 2:
        other = rng.randrange(len(chunks))
        chunks[index], chunks[other] = chunks[other], chunks[index]
        change = f"swap #{index} and #{other}"
    elif kind == 3:
        fourcc = rng.choice([b"EXIF", b"ICCP", b"XMP ", b"ALPH", b"ANIM", b"zzzz"])
        chunks.insert(index, [fourcc, rng.randbytes(rng.randrange(40))])
        change = f"insert {fourcc.decode()} at #{index}"
    else:
        built = bytearray(riff_build(chunks))
        size = interesting_sizes(len(built) - 8, rng, 32)
        built[4:8] = struct.pack("<I", size)
        return f"WebP RIFF size = {size}", bytes(built)
    return f"WebP chunks: {change}", riff_build(chunks)
