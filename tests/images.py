"""Real photographs (scikit-image ships them offline) and images made here."""

import io
import struct
import zlib
from functools import cache

import numpy as np
from PIL import Image


@cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def photo(name: str = "astronaut") -> Image.Image:
    """astronaut (512x512), coffee (600x400), chelsea (451x300), ..."""
    return Image.fromarray(_photo(name))


def encode(img: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buffer = io.BytesIO()
    if fmt.upper() == "JPEG" and img.mode not in ("RGB", "L", "CMYK"):
        img = img.convert("RGB")
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def photo_bytes(name: str = "astronaut", fmt: str = "JPEG", **params) -> bytes:
    if fmt.upper() == "JPEG":
        params.setdefault("quality", 90)
    return encode(photo(name), fmt, **params)


def solid_png(width: int = 64, height: int = 48, color=(200, 30, 30)) -> bytes:
    return encode(Image.new("RGB", (width, height), color), "PNG")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@cache
def grey_png(width: int, height: int, *, level: int = 128) -> bytes:
    """A valid 8-bit greyscale PNG of one flat grey, built without a pixel buffer.

    Any shape at all (1x50,000,000 is about 100 kB): the rows are fed to
    zlib a few megabytes at a time.
    """
    row = b"\x00" + bytes([level]) * width
    rows_per_piece = max(1, 4_000_000 // len(row))
    compressor = zlib.compressobj(9)
    pieces, left = [], height
    while left:
        count = min(rows_per_piece, left)
        pieces.append(compressor.compress(row * count))
        left -= count
    pieces.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            png_chunk(b"IHDR", header),
            png_chunk(b"IDAT", b"".join(pieces)),
            png_chunk(b"IEND", b""),
        ]
    )


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims ``width`` x ``height``.

    Its pixel data is one short row, nowhere near the claim: only a check
    that reads the header before decoding refuses it cheaply.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            png_chunk(b"IHDR", header),
            png_chunk(b"IDAT", zlib.compress(b"\x00" * (1 + 3 * 64))),
            png_chunk(b"IEND", b""),
        ]
    )


def with_damaged_idat(png: bytes) -> bytes:
    """``png`` with bytes in the middle of its first IDAT overwritten, CRC fixed.

    The chunk structure stays valid, so only a decode of the pixels finds it.
    """
    offset = png.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", png[offset : offset + 4])
    body = bytearray(png[offset + 8 : offset + 8 + length])
    middle = len(body) // 2
    body[middle : middle + 16] = bytes(range(0xF0, 0x100))
    return png[:offset] + png_chunk(b"IDAT", bytes(body)) + png[offset + 12 + length :]


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# Small and thin subjects in a 12 MP frame: where a resize shortcut shows.
FRAME_12MP = (4000, 3000)


@cache
def _background(kind: str, size: tuple[int, int]) -> Image.Image:
    if kind == "plain":
        return Image.new("RGB", size, (214, 209, 199))
    # A photo shrunk to a thumbnail and enlarged again: a heavy blur, and cheap.
    thumbnail = photo(kind).convert("RGB").resize((32, 24), Image.Resampling.BOX)
    return thumbnail.resize(size, Image.Resampling.BILINEAR)


def placed_subject(
    name: str,
    *,
    width: int,
    height: int,
    at: tuple[float, float] = (0.5, 0.5),
    background: str = "plain",
    frame: tuple[int, int] = FRAME_12MP,
) -> Image.Image:
    """``name`` resized to width x height and pasted into a large frame.

    ``at`` is the subject's centre as fractions of the frame; ``background``
    is "plain" or the name of another photo, enlarged (hence blurred).
    """
    canvas = _background(background, frame).copy()
    subject = photo(name).convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    left = round(at[0] * frame[0] - width / 2)
    top = round(at[1] * frame[1] - height / 2)
    canvas.paste(subject, (left, top))
    return canvas


# (label, photo, subject width, subject height, centre, background): each
# subject covers under 5 % of its 4000x3000 frame; "thin" ones are narrow.
SMALL_SUBJECTS = (
    ("rocket-1.5pct", "rocket", 520, 347, (0.62, 0.55), "plain"),
    ("astronaut-2pct", "astronaut", 490, 490, (0.30, 0.40), "coffee"),
    ("chelsea-4pct", "chelsea", 850, 565, (0.70, 0.35), "plain"),
    ("coffee-1pct", "coffee", 420, 280, (0.20, 0.75), "rocket"),
    ("thin-astronaut", "astronaut", 90, 1100, (0.45, 0.50), "plain"),
    ("thin-rocket", "rocket", 1400, 70, (0.50, 0.30), "chelsea"),
)


def small_subject_jpeg(label: str) -> bytes:
    """One of SMALL_SUBJECTS as a 12 MP JPEG (q90), made once per process."""
    return _small_subject_jpeg(label)


@cache
def _small_subject_jpeg(label: str) -> bytes:
    for name, source, width, height, at, background in SMALL_SUBJECTS:
        if name == label:
            img = placed_subject(source, width=width, height=height, at=at, background=background)
            return encode(img, "JPEG", quality=90)
    raise KeyError(label)


@cache
def noisy_photo_png(side: int) -> bytes:
    """The astronaut enlarged to side x side with pixel noise, as a PNG that
    hardly compresses (about 0.78 byte a pixel channel): a photo of a given
    size in bytes, for upload limits."""
    enlarged = photo("astronaut").resize((side, side), Image.Resampling.BICUBIC)
    pixels = np.asarray(enlarged).astype(np.int16)
    noise = np.random.default_rng(side).integers(-20, 21, pixels.shape, dtype=np.int16)
    noisy = np.clip(pixels + noise, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(noisy), "PNG", compress_level=1)
