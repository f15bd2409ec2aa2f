"""BMP: header fields, palette and pixel runs (RLE8 escapes included)."""

from __future__ import annotations

import random
import struct

from PIL import Image

from tests.imaging.mutants.damage import Mutant, damage_bytes, interesting_sizes

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
