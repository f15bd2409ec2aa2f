"""docs/edges.jpg: the README's picture of edge colour cleaning, made with the real u2net.

Two edges, each put over a dark blue background after the cut-out, as a
customer would: the astronaut's hair (scikit-image's photo at 2048x2048)
and hair over a green screen (bench/edge_scenes.py, 1 MP). Left to right:
``rembg.remove()``, ours with ``decontaminate=false`` (the photo's colours)
and ours by default (cleaned). Magnified, nearest neighbour.

    .venv/bin/python bench/edge_figure.py
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NEW_BACKGROUND = (24, 40, 72, 255)
TILE = 260
LABEL = 26
COLUMNS = ("rembg.remove()", "decontaminate=false", "default (cleaned)")


def _photos():
    """(name, PNG or JPEG bytes, crop box) for each row."""
    import skimage.data

    from bench import edge_scenes

    astronaut = Image.fromarray(skimage.data.astronaut()).resize((2048, 2048), Image.LANCZOS)
    buffer = io.BytesIO()
    astronaut.save(buffer, "JPEG", quality=92)
    scene = edge_scenes.scene("1 MP").photo_png("green")
    return [
        ("astronaut, 2048x2048", buffer.getvalue(), (600, 300, 760, 460)),
        ("hair on a green screen, 1 MP", scene, (330, 140, 450, 260)),
    ]


def main() -> int:
    os.environ.setdefault("U2NET_HOME", str(ROOT / "var" / "models"))
    from rembg import new_session, remove

    from imaging import pipeline
    from imaging.options import OutputOptions

    session = new_session("u2net", providers=["CPUExecutionProvider"])
    rows = _photos()
    figure = Image.new("RGB", (TILE * 3, (TILE + LABEL) * len(rows) + LABEL), (255, 255, 255))
    pen = ImageDraw.Draw(figure)
    font = ImageFont.load_default(size=15)
    for column, title in enumerate(COLUMNS):
        pen.text((column * TILE + 8, 5), title, fill=(30, 30, 40), font=font)
    for row, (name, data, box) in enumerate(rows):
        outputs = [
            remove(data, session=session),
            pipeline.remove_background(
                data, session, max_pixels=10**9, options=OutputOptions(decontaminate=False)
            ).data,
            pipeline.remove_background(data, session, max_pixels=10**9).data,
        ]
        top = LABEL + row * (TILE + LABEL)
        for column, output in enumerate(outputs):
            cut = Image.open(io.BytesIO(output)).convert("RGBA").crop(box)
            shown = Image.alpha_composite(Image.new("RGBA", cut.size, NEW_BACKGROUND), cut)
            tile = shown.convert("RGB").resize((TILE, TILE), Image.NEAREST)
            figure.paste(tile, (column * TILE, top))
        pen.text((8, top + TILE + 5), name, fill=(90, 90, 100), font=font)
    path = ROOT / "docs" / "edges.jpg"
    figure.save(path, "JPEG", quality=88, optimize=True)
    print(f"Wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
