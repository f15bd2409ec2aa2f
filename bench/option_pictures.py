"""Makes the README's pictures of shadows, background images and hard edges.

Run ``.venv/bin/python bench/option_pictures.py`` (needs u2net in
var/models). Every picture is the real model on skimage's photos, finished
by the engine exactly as a job is (``imaging.finishing.finish``); the
sheets are small JPEGs in docs/options/.

The product shot: skimage's coffee cup, cut out by the model, set on a
plain studio backdrop with room around it (a shop's photo of a product);
the model then runs on that shot as it would on a customer's.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw  # noqa: E402

from imaging import parsers  # noqa: E402
from imaging.finishing import finish  # noqa: E402
from imaging.model import predict_mask  # noqa: E402
from imaging.options import OutputOptions  # noqa: E402
from imaging.sessions import EngineConfig, get_session  # noqa: E402
from tests.images import photo  # noqa: E402

OUT = ROOT / "docs" / "options"
PANEL = (300, 225)
BACKDROP = (238, 236, 232)
LIGHT = (246, 246, 246, 255)


def session():
    return get_session("u2net", EngineConfig(models_dir=ROOT / "var" / "models"))


def result(img: Image.Image, options: OutputOptions, background=None) -> Image.Image:
    mask = predict_mask(img, session())
    done = finish(img, mask, options, background=background)
    out = Image.open(io.BytesIO(done.data))
    out.load()
    return out


def product_shot() -> Image.Image:
    """The coffee cup on a studio backdrop, room below and around it."""
    cup = photo("coffee").convert("RGB")
    cutout = result(cup, OutputOptions(crop=True))
    cutout = cutout.resize((cutout.width * 3 // 5, cutout.height * 3 // 5), Image.LANCZOS)
    shot = Image.new("RGB", (640, 480), BACKDROP)
    shot.paste(cutout, ((640 - cutout.width) // 2, 250 - cutout.height // 2), cutout)
    return shot


def labelled(img: Image.Image, label: str) -> Image.Image:
    panel = Image.new("RGB", PANEL, (255, 255, 255))
    fitted = img.convert("RGBA")
    fitted.thumbnail((PANEL[0], PANEL[1] - 22), Image.LANCZOS)
    panel.paste(fitted, ((PANEL[0] - fitted.width) // 2, 0), fitted)
    ImageDraw.Draw(panel).text((8, PANEL[1] - 18), label, fill=(40, 40, 40))
    return panel


def sheet(panels: list[Image.Image]) -> Image.Image:
    out = Image.new("RGB", (PANEL[0] * len(panels), PANEL[1]), (255, 255, 255))
    for index, panel in enumerate(panels):
        out.paste(panel, (index * PANEL[0], 0))
    return out


def save(img: Image.Image, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    img.save(OUT / name, "JPEG", quality=82, optimize=True)
    print(f"{OUT / name}: {(OUT / name).stat().st_size / 1024:.0f} KB")


def main() -> int:
    shot = product_shot()
    panels = [labelled(shot, "the photo")]
    for kind in ("drop", "3D", "car"):
        # crop: the output grows to keep the whole shadow.
        crop = {"crop": True, "crop_margin": parsers.parse_crop_margin("15%")}
        out = result(shot, OutputOptions(shadow_type=kind, bg_color=LIGHT, **crop))
        panels.append(labelled(out, f"shadow_type={kind}, crop"))
    save(sheet(panels), "shadows.jpg")

    person = photo("astronaut").convert("RGB")
    scenery = photo("rocket").convert("RGB")
    placed = result(person, OutputOptions(bg_image="0" * 64, format="jpg"), background=scenery)
    cropped = result(
        person,
        OutputOptions(bg_image="0" * 64, format="jpg", scale=70.0, position=(50.0, 100.0)),
        background=scenery,
    )
    save(
        sheet(
            [
                labelled(person, "the photo"),
                labelled(scenery, "bg_image_file"),
                labelled(placed, "the result (cover, centred)"),
                labelled(cropped, "with scale=70% position=50% 100%"),
            ]
        ),
        "background.jpg",
    )

    # Hard edges: the hair's edge, enlarged, on a dark background.
    region = (140, 20, 240, 95)
    soft = result(person, OutputOptions(bg_color=(30, 30, 60, 255)))
    hard = result(person, OutputOptions(bg_color=(30, 30, 60, 255), semitransparency=False))
    zoom = [img.crop(region).resize(PANEL, Image.NEAREST) for img in (soft, hard)]
    save(
        sheet(
            [
                labelled(zoom[0], "semitransparency=true (default)"),
                labelled(zoom[1], "semitransparency=false"),
            ]
        ),
        "hard_edges.jpg",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
