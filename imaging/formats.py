"""Every image format the engine reads or writes, declared once.

An input format is accepted when it is in ``INPUT_FORMATS``; its name,
media type and the names a customer may call it come from its row. An
output format's row gives its media type and extension; ``codecs`` holds
the encoder for each (a test checks every row has one). Adding a format is
a row here plus, for outputs, an encoder.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputFormat:
    name: str  # what ``sniff_format`` calls it
    display: str  # how a customer sees it named in a refusal
    content_type: str
    aliases: tuple[str, ...]  # what "Supported: ..." lists
    pillow: str  # Pillow's format id, the only decoder tried


@dataclass(frozen=True)
class OutputFormat:
    name: str
    content_type: str
    extension: str
    has_alpha: bool


INPUT_FORMATS: dict[str, InputFormat] = {
    f.name: f
    for f in (
        InputFormat("png", "PNG", "image/png", ("png",), "PNG"),
        InputFormat("jpeg", "JPEG", "image/jpeg", ("jpg", "jpeg"), "JPEG"),
        InputFormat("webp", "WebP", "image/webp", ("webp",), "WEBP"),
        InputFormat("bmp", "BMP", "image/bmp", ("bmp",), "BMP"),
    )
}
SUPPORTED_FORMATS = tuple(INPUT_FORMATS)
SUPPORTED_NAMES = ", ".join(alias for f in INPUT_FORMATS.values() for alias in f.aliases)
INPUT_CONTENT_TYPES = {f.name: f.content_type for f in INPUT_FORMATS.values()}

OUTPUT_FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat("png", "image/png", "png", True),
        OutputFormat("jpg", "image/jpeg", "jpg", False),
        OutputFormat("webp", "image/webp", "webp", True),
        OutputFormat("zip", "application/zip", "zip", True),
    )
}
FORMATS = tuple(OUTPUT_FORMATS)
CONTENT_TYPES = {f.name: f.content_type for f in OUTPUT_FORMATS.values()}


def display_name(fmt: str) -> str:
    """How a customer sees a sniffed format named ("PNG", "WebP")."""
    known = INPUT_FORMATS.get(fmt)
    return known.display if known else fmt.upper()


# Magic numbers of the formats people actually upload, so the refusal can
# name what was sent ("gif", "tiff", ...) rather than "unknown".
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"BM", 0, "bmp"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"%PDF", 0, "pdf"),
    (b"8BPS", 0, "psd"),
    (b"\x00\x00\x01\x00", 0, "ico"),
    (b"\xff\x0a", 0, "jxl"),
    (b"\x00\x00\x00\x0cJXL ", 0, "jxl"),
)


def sniff_format(head: bytes) -> str:
    """Names the format from the first bytes; never trusts a file name."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "heic"
        return "mp4"
    for magic, offset, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    text = head[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in head[:2048].lower()):
        return "svg"
    if text.startswith(b"<"):
        return "xml/html"
    return "unknown"
