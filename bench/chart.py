"""The latency chart of docs/benchmarks.md, drawn with Pillow (no plotting library)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SERIES = (
    ("rembg", "(a) rembg.remove()", (190, 80, 70)),
    ("pipeline", "(b) pipeline", (70, 130, 190)),
    ("service", "(c) service end to end", (80, 160, 90)),
)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def draw_chart(rows, path: Path) -> None:
    """Horizontal bars: median seconds per model and image, one bar per way of running."""
    bar, gap, label_width, width = 18, 16, 150, 1000
    top = 70
    height = top + len(rows) * (bar * len(SERIES) + gap) + 30
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    title, small = _font(20), _font(14)
    draw.text((20, 12), "Median seconds per image (lower is better)", fill="black", font=title)
    x = 20
    for _, name, colour in SERIES:
        draw.rectangle((x, 44, x + 14, 58), fill=colour)
        draw.text((x + 20, 43), name, fill="black", font=small)
        x += 230
    longest = max(getattr(row, key).median for row in rows for key, _, _ in SERIES)
    scale = (width - label_width - 90) / longest
    y = top
    for row in rows:
        group = bar * len(SERIES)
        draw.text((20, y + group / 2 - 9), f"{row.model} {row.image}", fill="black", font=small)
        for key, _, colour in SERIES:
            seconds = getattr(row, key).median
            end = label_width + max(1, seconds * scale)
            draw.rectangle((label_width, y, end, y + bar - 3), fill=colour)
            draw.text((end + 6, y), f"{seconds:.2f} s", fill="black", font=small)
            y += bar
        y += gap
    img.save(path, optimize=True)
