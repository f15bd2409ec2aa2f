"""JPEG: segments rebuilt with their lengths right, scans with their markers kept."""

from __future__ import annotations

import random
import struct

from tests.imaging.mutants.damage import Mutant, damage_bytes, interesting_sizes

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
