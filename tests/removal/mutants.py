"""Damaged copies of real images, made by someone who knows each format.

The fuzzer (``test_pipeline_fuzz.py``) wants mutants that get past the
framing of a file and reach the decoder inside it: a bit flipped at random
in a PNG mostly breaks a chunk's CRC, and the file is refused before any
pixel is read. So besides plain byte damage, each format has mutations that
keep its framing valid and damage what is framed: PNG chunk payloads with
their lengths and CRCs fixed, the scanlines inside IDAT (inflated, damaged
and deflated again) and the deflate stream itself, JPEG segments with their
lengths fixed and the entropy-coded scans with their markers intact, WebP
chunks with the RIFF sizes fixed, BMP header fields and pixel runs.

``FORMATS`` has one entry per accepted format: the files it starts from and
its structure-aware mutations. Adding a format is adding its entry (the
fuzzer fails until every format the pipeline accepts has one).
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests.images import encode, photo

Mutant = tuple[str, bytes]
Mutation = Callable[[bytes, random.Random], Mutant]

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


# --- byte damage, to a whole file or to one payload ---------------------------


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


# --- PNG ----------------------------------------------------------------------

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


# --- JPEG ---------------------------------------------------------------------

RST = range(0xD0, 0xD8)
NO_LENGTH = {0x01, *RST}  # markers without a length field


def jpeg_parts(data: bytes) -> list[list]:
    """The file after SOI as ["seg", marker, payload] and ["scan", entropy-coded bytes]
    (restart markers inside a scan stay in it), up to EOI or the end."""
    parts, offset = [], 2
    while offset + 2 <= len(data):
        if data[offset] != 0xFF:
            break
        marker = data[offset + 1]
        if marker == 0xFF:  # a fill byte
            offset += 1
            continue
        if marker == 0xD9:
            break
        if marker in NO_LENGTH:
            parts.append(["seg", marker, None])
            offset += 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        parts.append(["seg", marker, data[offset + 4 : offset + 2 + length]])
        offset += 2 + length
        if marker == 0xDA:
            end = offset
            while end + 1 < len(data) and not (
                data[end] == 0xFF and data[end + 1] not in (0x00, 0xFF, *RST)
            ):
                end += 1
            parts.append(["scan", data[offset:end]])
            offset = end
    return parts


def jpeg_build(parts: list[list], *, eoi: bool = True) -> bytes:
    out = [b"\xff\xd8"]
    for part in parts:
        if part[0] == "scan":
            out.append(part[1])
        elif part[2] is None:
            out.append(bytes([0xFF, part[1]]))
        else:
            payload = part[2][:65533]
            out.append(bytes([0xFF, part[1]]) + struct.pack(">H", len(payload) + 2) + payload)
    if eoi:
        out.append(b"\xff\xd9")
    return b"".join(out)


def _segments(parts: list[list], markers=None) -> list[int]:
    return [
        i
        for i, part in enumerate(parts)
        if part[0] == "seg" and part[2] is not None and (markers is None or part[1] in markers)
    ]


def jpeg_segment_payload(data: bytes, rng: random.Random) -> Mutant:
    parts = jpeg_parts(data)
    index = rng.choice(_segments(parts))
    change, parts[index][2] = damage_bytes(parts[index][2], rng)
    return f"JPEG segment {parts[index][1]:#04x} #{index}: {change}", jpeg_build(parts)


SOF = {0xC0, 0xC1, 0xC2}


def jpeg_frame_field(data: bytes, rng: random.Random) -> Mutant:
    """A field of the frame (SOF), a scan header (SOS) or the restart interval."""
    parts = jpeg_parts(data)
    target = rng.choice(["frame", "frame", "scan", "restart"])
    if target == "restart":
        at = next((i for i in _segments(parts, {0xDD})), None)
        value = rng.choice([0, 1, 2, 7, 0xFFFF])
        if at is None:
            parts.insert(_segments(parts, SOF)[0] + 1, ["seg", 0xDD, struct.pack(">H", value)])
        else:
            parts[at][2] = struct.pack(">H", value)
        return f"JPEG restart interval = {value}", jpeg_build(parts)
    index = rng.choice(_segments(parts, SOF if target == "frame" else {0xDA}))
    payload = bytearray(parts[index][2])
    if target == "frame":
        # precision, height, width, count, then (id, sampling, table) per component
        field = rng.choice(["precision", "height", "width", "count", "sampling", "table", "id"])
        if field in ("height", "width"):
            at = 1 if field == "height" else 3
            (current,) = struct.unpack(">H", payload[at : at + 2])
            value = interesting_sizes(current, rng, 16)
            payload[at : at + 2] = struct.pack(">H", value)
        else:
            component = rng.randrange(max(1, payload[5]))
            at = {"precision": 0, "count": 5}.get(field)
            if at is None:
                at = 6 + 3 * component + {"id": 0, "sampling": 1, "table": 2}[field]
            options = {
                "precision": [8, 12, 16, 0, 255],
                "count": [0, 1, 2, 3, 4, 255],
                "sampling": [0x11, 0x22, 0x21, 0x12, 0x41, 0x44, 0x00, 0xFF],
                "table": [0, 1, 2, 3, 4, 255],
                "id": [0, 1, 2, 3, 4, 255],
            }[field]
            value = rng.choice(options)
            if at < len(payload):
                payload[at] = value
    else:
        # count, then (id, tables) per component, then Ss, Se, Ah/Al
        field = rng.choice(["count", "tables", "id", "start", "end", "approximation"])
        count = payload[0]
        at = {
            "count": 0,
            "id": 1 + 2 * rng.randrange(max(1, count)),
            "tables": 2 + 2 * rng.randrange(max(1, count)),
            "start": 1 + 2 * count,
            "end": 2 + 2 * count,
            "approximation": 3 + 2 * count,
        }[field]
        value = rng.choice([0, 1, 2, 3, 4, 0x10, 0x11, 0x3F, 0x40, 0xFF])
        if at < len(payload):
            payload[at] = value
    parts[index][2] = bytes(payload)
    return f"JPEG {target} #{index} {field} = {value}", jpeg_build(parts)


def _stuffed(data: bytes) -> bytes:
    """Entropy-coded bytes with every 0xFF stuffed, so no marker appears inside."""
    return data.replace(b"\xff", b"\xff\x00")


def jpeg_entropy(data: bytes, rng: random.Random) -> Mutant:
    """Damage inside a scan's entropy-coded data, its markers kept framed."""
    parts = jpeg_parts(data)
    scans = [i for i, part in enumerate(parts) if part[0] == "scan" and part[1]]
    index = rng.choice(scans)
    scan = parts[index][1]
    at = rng.randrange(len(scan))
    kind = rng.randrange(4)
    if kind == 0:
        marker = rng.choice(list(RST))
        scan = scan[:at] + bytes([0xFF, marker]) + scan[at:]
        change = f"restart marker {marker:#04x} at {at}"
    elif kind == 1:
        change, scan = f"cut at {at}", scan[:at]
    elif kind == 2:
        junk = _stuffed(rng.randbytes(rng.randint(1, 64)))
        change, scan = f"{len(junk)} bytes inserted at {at}", scan[:at] + junk + scan[at:]
    else:
        spots = [rng.randrange(len(scan)) for _ in range(rng.randint(1, 6))]
        out = bytearray(scan)
        for spot in spots:
            if out[spot] != 0xFF and (spot == 0 or out[spot - 1] != 0xFF):
                out[spot] = rng.randrange(0xFF)  # never a new 0xFF
        change, scan = f"bytes {spots} changed", bytes(out)
    parts[index][1] = scan
    return f"JPEG scan #{index}: {change}", jpeg_build(parts)


def jpeg_segment_order(data: bytes, rng: random.Random) -> Mutant:
    parts = jpeg_parts(data)
    index = rng.randrange(len(parts))
    name = f"{parts[index][1]:#04x}" if parts[index][0] == "seg" else "scan data"
    kind = rng.randrange(5)
    if kind == 0:
        del parts[index]
        change = f"drop {name} #{index}"
    elif kind == 1:
        parts.insert(index, list(parts[index]))
        change = f"repeat {name} #{index}"
    elif kind == 2:
        other = rng.randrange(len(parts))
        parts[index], parts[other] = parts[other], parts[index]
        change = f"swap #{index} and #{other}"
    elif kind == 3:
        marker = rng.choice([0xE1, 0xE2, 0xEE, 0xFE, 0xC4, 0xDB, 0xF7, 0xC3])
        parts.insert(index, ["seg", marker, rng.randbytes(rng.randrange(64))])
        change = f"insert segment {marker:#04x} at #{index}"
    else:
        return "JPEG without EOI", jpeg_build(parts, eoi=False)
    return f"JPEG segments: {change}", jpeg_build(parts)


# --- WebP ---------------------------------------------------------------------


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


# --- BMP ----------------------------------------------------------------------

# The file header and the BITMAPINFOHEADER: (name, offset, struct format, edge values).
BMP_FIELDS = (
    ("file size", 2, "<I", None),
    ("pixel offset", 10, "<I", None),
    ("header size", 14, "<I", [0, 12, 40, 52, 56, 64, 108, 124, 0xFFFFFFFF]),
    ("width", 18, "<i", None),
    ("height", 22, "<i", None),
    ("planes", 26, "<H", [0, 1, 2, 0xFFFF]),
    ("bit count", 28, "<H", [0, 1, 2, 4, 8, 16, 24, 32, 64, 0xFFFF]),
    ("compression", 30, "<I", [0, 1, 2, 3, 4, 5, 6, 255]),
    ("image size", 34, "<I", None),
    ("colours used", 46, "<I", [0, 1, 2, 16, 255, 256, 257, 0xFFFFFFFF]),
)


def bmp_header_field(data: bytes, rng: random.Random) -> Mutant:
    out = bytearray(data)
    name, at, fmt, edges = rng.choice(BMP_FIELDS)
    (current,) = struct.unpack(fmt, out[at : at + struct.calcsize(fmt)])
    if edges is not None:
        value = rng.choice(edges)
    elif fmt == "<i":
        value = rng.choice([-current, 0, 1, -1, current + 1, current - 1, 1 << 20, -(1 << 31)])
    else:
        value = interesting_sizes(current, rng, 32)
    out[at : at + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return f"BMP {name} = {value}", bytes(out)


def bmp_pixels(data: bytes, rng: random.Random) -> Mutant:
    """Damage in the palette or the pixel array (RLE escapes included), headers kept."""
    (offset,) = struct.unpack("<I", data[10:14])
    (header_size,) = struct.unpack("<I", data[14:18])
    start = rng.choice([14 + header_size, offset]) if offset > 14 + header_size else offset
    if rng.random() < 0.3:
        # An RLE escape: end of line, end of bitmap, a jump, or a literal run.
        out = bytearray(data)
        at = rng.randrange(offset, len(out) - 1)
        escape = rng.choice([0, 1, 2, 3, 255])
        out[at : at + 2] = bytes([0, escape])
        return f"BMP escape 00 {escape:02x} at {at}", bytes(out)
    change, damaged = damage_bytes(data[start:], rng)
    return f"BMP from {start}: {change}", data[:start] + damaged


def rle8_bmp(img: Image.Image) -> bytes:
    """An 8-bit palette BMP with RLE8 compression (Pillow writes none): runs of
    one index, an end of line after each row, an end of bitmap."""
    img = img.quantize(colors=32)
    width, height = img.size
    pixels = img.tobytes()
    encoded = bytearray()
    for y in reversed(range(height)):  # bottom-up
        row = pixels[y * width : (y + 1) * width]
        x = 0
        while x < width:
            run = 1
            while x + run < width and run < 255 and row[x + run] == row[x]:
                run += 1
            encoded += bytes([run, row[x]])
            x += run
        encoded += b"\x00\x00"
    encoded += b"\x00\x01"
    palette = img.getpalette()[: 3 * 256]
    palette += [0] * (3 * 256 - len(palette))
    table = b"".join(bytes([b, g, r, 0]) for r, g, b in zip(*[iter(palette)] * 3, strict=True))
    offset = 14 + 40 + len(table)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(encoded), 2835, 2835, 256, 0)
    head = b"BM" + struct.pack("<IHHI", offset + len(encoded), 0, 0, offset)
    return head + info + table + bytes(encoded)


# --- the sources, and the table -----------------------------------------------


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def source_image(mode: str = "RGB") -> Image.Image:
    """A real photo, small so that each surviving mutant costs little."""
    img = photo("chelsea").resize((72, 48), Image.Resampling.LANCZOS)
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(Image.linear_gradient("L").resize(img.size))
    elif mode == "P":
        img = img.quantize(colors=64)
    elif mode == "PT":  # a palette with a transparent entry
        img = img.quantize(colors=64)
        img.info["transparency"] = 0
    elif mode != "RGB":
        img = img.convert(mode)
    return img


def _png_sixteen_bit_grey() -> bytes:
    levels = np.asarray(source_image("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(levels), "PNG")


@dataclass(frozen=True)
class Format:
    sources: dict[str, Callable[[], bytes]]
    structural: tuple[Mutation, ...]  # mutations that keep the framing valid


FORMATS: dict[str, Format] = {
    "png": Format(
        sources={
            "png-rgb": lambda: encode(source_image(), "PNG"),
            "png-rgba-exif": lambda: encode(source_image("RGBA"), "PNG", exif=_exif(6)),
            "png-palette-trns": lambda: encode(source_image("PT"), "PNG", transparency=0),
            "png-grey16": _png_sixteen_bit_grey,
        },
        structural=(
            png_chunk_payload,
            png_header_field,
            png_inflated_idat,
            png_inflated_idat,
            png_compressed_idat,
            png_chunk_order,
        ),
    ),
    "jpeg": Format(
        sources={
            "jpeg-baseline-exif": lambda: encode(source_image(), "JPEG", quality=85, exif=_exif(6)),
            "jpeg-progressive": lambda: encode(
                source_image(), "JPEG", quality=85, progressive=True
            ),
            "jpeg-grey-restarts": lambda: encode(
                source_image("L"), "JPEG", quality=80, restart_marker_blocks=4
            ),
            "jpeg-cmyk-444": lambda: encode(
                source_image("CMYK"), "JPEG", quality=80, subsampling=0
            ),
        },
        structural=(
            jpeg_segment_payload,
            jpeg_frame_field,
            jpeg_entropy,
            jpeg_entropy,
            jpeg_segment_order,
        ),
    ),
    "webp": Format(
        sources={
            "webp-lossy": lambda: encode(source_image(), "WEBP", quality=80),
            "webp-lossless-rgba": lambda: encode(source_image("RGBA"), "WEBP", lossless=True),
            "webp-lossy-alpha-exif": lambda: encode(
                source_image("RGBA"), "WEBP", quality=80, exif=_exif(3)
            ),
        },
        structural=(
            webp_chunk_payload,
            webp_header_field,
            webp_bitstream,
            webp_bitstream,
            webp_chunk_order,
        ),
    ),
    "bmp": Format(
        sources={
            "bmp-rgb": lambda: encode(source_image(), "BMP"),
            "bmp-palette": lambda: encode(source_image("P"), "BMP"),
            "bmp-32bit": lambda: encode(source_image("RGBA"), "BMP"),
            "bmp-rle8": lambda: rle8_bmp(source_image()),
        },
        structural=(bmp_header_field, bmp_pixels),
    ),
}

SOURCES: dict[str, tuple[str, Callable[[], bytes]]] = {
    name: (fmt, make) for fmt, spec in FORMATS.items() for name, make in spec.sources.items()
}


def mutate(fmt: str, data: bytes, rng: random.Random) -> Mutant:
    """One mutant: three in four know the format's structure, the rest is byte damage."""
    if rng.random() < 0.75:
        return rng.choice(FORMATS[fmt].structural)(data, rng)
    change, mutant = damage_bytes(data, rng)
    return f"bytes: {change}", mutant


def mutants(source: str, *, seed: str, count: int) -> list[Mutant]:
    """``count`` mutants of ``source`` from the random stream named ``seed``."""
    fmt, make = SOURCES[source]
    data = make()
    rng = random.Random(f"{seed}/{source}")
    found = []
    for index in range(count):
        description, mutant = mutate(fmt, data, rng)
        if mutant != data:
            found.append((f"{source} #{index}: {description}", mutant))
    return found
