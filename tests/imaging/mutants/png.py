"""PNG: chunks rebuilt with their lengths and CRCs right, IDAT inflated and deflated."""

from __future__ import annotations

import random
import struct
import zlib

from tests.imaging.mutants.damage import Mutant, damage_bytes, interesting_sizes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes) -> list[list[bytes]]:
    """[kind, body] of each whole chunk after the signature."""
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        body = data[offset + 8 : offset + 8 + length]
        chunks.append([data[offset + 4 : offset + 8], body])
        offset += 12 + length
    return chunks


def png_build(chunks: list[list[bytes]]) -> bytes:
    """The file of these chunks, every length and CRC right."""
    out = [PNG_SIGNATURE]
    for kind, body in chunks:
        crc = zlib.crc32(kind + body)
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc))
    return b"".join(out)


def _idat_span(chunks: list[list[bytes]]) -> tuple[int, int]:
    """The first IDAT's index and the index after the run of IDATs."""
    first = next(i for i, (kind, _) in enumerate(chunks) if kind == b"IDAT")
    last = first
    while last < len(chunks) and chunks[last][0] == b"IDAT":
        last += 1
    return first, last


def _with_idat(chunks: list[list[bytes]], stream: bytes, rng: random.Random) -> bytes:
    """The chunks with their IDATs replaced by ``stream`` in 1-3 chunks."""
    first, last = _idat_span(chunks)
    cuts = sorted(rng.randrange(len(stream) + 1) for _ in range(rng.randrange(3)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return png_build(chunks[:first] + [[b"IDAT", piece] for piece in pieces] + chunks[last:])


def png_chunk_payload(data: bytes, rng: random.Random) -> Mutant:
    chunks = png_chunks(data)
    index = rng.randrange(len(chunks))
    change, chunks[index][1] = damage_bytes(chunks[index][1], rng)
    return f"PNG {chunks[index][0].decode()} #{index}: {change}", png_build(chunks)


def png_header_field(data: bytes, rng: random.Random) -> Mutant:
    chunks = png_chunks(data)
    header = bytearray(chunks[0][1])  # IHDR comes first
    field = rng.choice(["width", "height", "depth", "colour", "compression", "filter", "interlace"])
    if field in ("width", "height"):
        at = 0 if field == "width" else 4
        (current,) = struct.unpack(">I", header[at : at + 4])
        value = interesting_sizes(current, rng, 31 + rng.randrange(2))
        header[at : at + 4] = struct.pack(">I", value)
    else:
        at = {"depth": 8, "colour": 9, "compression": 10, "filter": 11, "interlace": 12}[field]
        choices = {"depth": [0, 1, 2, 4, 8, 16, 3, 255], "colour": [0, 1, 2, 3, 4, 5, 6, 7]}
        value = rng.choice(choices.get(field, [0, 1, 2, 255]))
        header[at] = value
    chunks[0][1] = bytes(header)
    return f"PNG IHDR {field} = {value}", png_build(chunks)


def _png_stride(header: bytes) -> int:
    width, _, depth, colour = struct.unpack(">IIBB", header[:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1)
    return 1 + (width * channels * depth + 7) // 8


def png_inflated_idat(data: bytes, rng: random.Random) -> Mutant:
    """Damage to the filtered scanlines, deflated again: a valid zlib stream
    of wrong pixels, wrong filter types, or too few or too many rows."""
    chunks = png_chunks(data)
    first, last = _idat_span(chunks)
    raw = bytearray(zlib.decompress(b"".join(body for _, body in chunks[first:last])))
    stride = _png_stride(chunks[0][1])
    rows = len(raw) // stride
    kind = rng.randrange(4)
    if kind == 0:
        row = rng.randrange(rows)
        value = rng.choice([0, 1, 2, 3, 4, 5, 0x80, 0xFF])
        raw[row * stride] = value
        change = f"row {row} filter = {value}"
    elif kind == 1:
        keep = rng.randrange(rows * stride)
        change, raw = f"scanlines cut to {keep} bytes", raw[:keep]
    elif kind == 2:
        extra = rng.randbytes(rng.choice([1, stride, stride * rng.randint(2, 8)]))
        change, raw = f"{len(extra)} bytes of scanlines more", raw + extra
    else:
        change, damaged = damage_bytes(bytes(raw), rng)
        raw = bytearray(damaged)
    level = rng.choice([0, 1, 6, 9])
    stream = zlib.compress(bytes(raw), level)
    return f"PNG inflated IDAT: {change} (deflate level {level})", _with_idat(chunks, stream, rng)


def png_compressed_idat(data: bytes, rng: random.Random) -> Mutant:
    """Damage to the deflate stream itself (its header and checksum mostly spared)."""
    chunks = png_chunks(data)
    first, last = _idat_span(chunks)
    stream = b"".join(body for _, body in chunks[first:last])
    head = 0 if rng.random() < 0.1 else 2
    tail = 0 if rng.random() < 0.1 else 4
    middle = stream[head : len(stream) - tail]
    change, middle = damage_bytes(middle, rng)
    stream = stream[:head] + middle + stream[len(stream) - tail :]
    return f"PNG deflate stream in IDAT: {change}", _with_idat(chunks, stream, rng)


def png_chunk_order(data: bytes, rng: random.Random) -> Mutant:
    chunks = png_chunks(data)
    index = rng.randrange(len(chunks))
    kind = rng.randrange(5)
    name = chunks[index][0].decode()
    if kind == 0:
        del chunks[index]
        change = f"drop {name} #{index}"
    elif kind == 1:
        chunks.insert(index, list(chunks[index]))
        change = f"repeat {name} #{index}"
    elif kind == 2:
        other = rng.randrange(len(chunks))
        chunks[index], chunks[other] = chunks[other], chunks[index]
        change = f"swap #{index} and #{other}"
    elif kind == 3:
        unknown = rng.choice([b"zzZz", b"ZZZZ", b"tEXt", b"iCCP", b"IDAT"])
        chunks.insert(index, [unknown, rng.randbytes(rng.randrange(32))])
        change = f"insert {unknown.decode()} at #{index}"
    else:
        # The one framing lie: a length that disagrees with the chunk.
        built = bytearray(png_build(chunks))
        offset = len(PNG_SIGNATURE) + sum(12 + len(body) for _, body in chunks[:index])
        length = interesting_sizes(len(chunks[index][1]), rng, 31)
        built[offset : offset + 4] = struct.pack(">I", length)
        return f"PNG {name} #{index} length lies", bytes(built)
    return f"PNG chunks: {change}", png_build(chunks)
