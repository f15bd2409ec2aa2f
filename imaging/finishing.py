"""What a customer may ask of the result, applied after the mask.

The seed API, the web page and the remove.bg endpoint all describe a
request as one ``OutputOptions``, and the worker turns the model's mask
into the file they asked for with ``finish``:

    roi on the mask -> post_process_mask -> refine=edges -> alpha matting
    -> cut-out (edge colours cleaned unless decontaminate=false)
    -> crop (+ margin) / scale / position -> bg_color -> size limit
    -> channels -> encode (png, webp, jpg, avif or zip)

With a background image, a shadow or hard edges (semitransparency=false)
the result is built in layers instead (``layers``), after the geometry:

    ... -> crop / scale / position -> shadow (crop grows to keep it)
    -> size limit -> hard edges -> background, shadow, subject -> encode

so the shadow is sized from the subject and stays whole, and the edges are
hardened at the output's own size.

Every step is skipped when its option is at its default, and the default
options take the plain path: the cut-out with its edge colours cleaned
(``edges.clean_cutout``, which replaces ``cutout_pixels``' own pass) and
``encode_png``. With ``decontaminate=false`` and nothing else, the path is
the one from before edge cleaning existed, step for step: the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imaging.codecs import encode
from imaging.edges import clean_cutout, refine_edges
from imaging.errors import NoSubjectFound
from imaging.formats import CONTENT_TYPES
from imaging.geometry import apply_roi, arrange, fit_size
from imaging.layers import harden, harden_mask, stack
from imaging.matting import alpha_matting, post_process_mask
from imaging.options import DEFAULT_OPTIONS, OutputOptions, resolve_auto_format
from imaging.png import encode_png
from imaging.shadows import Shadow, cast_shadow
from imaging.subject import alpha_band, alpha_image, foreground_box, scale_box, subject_box

# --- Finishing --------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    data: bytes
    format: str  # png, jpg, webp, zip
    content_type: str
    extension: str
    width: int
    height: int
    # The subject's box in output pixels: {"top", "left", "width", "height"},
    # counting alpha >= FOREGROUND_MIN_ALPHA; None when there is no subject.
    foreground: dict | None


StepCallback = Callable[[int, str], None]


def finish(
    img: Image.Image,
    mask: Image.Image,
    options: OutputOptions = DEFAULT_OPTIONS,
    *,
    background: Image.Image | None = None,
    on_step: StepCallback | None = None,
    check: Callable[[], None] | None = None,
) -> Finished:
    """The file the options ask for, from the decoded image and the model's mask.

    ``background`` is the decoded background image (``options.bg_image``).
    ``on_step(percent, message)`` is told when a stage starts (the worker
    shows it as progress); ``check()`` is called between the slow pieces and
    may raise to abandon the work (the job's deadline). ``img`` is not changed.
    """
    return finish_taking(
        [img, mask],
        options,
        background=background,
        on_step=on_step,
        check=check,
        reuse_img=False,
    )


def finish_taking(
    parts: list,
    options: OutputOptions = DEFAULT_OPTIONS,
    *,
    background: Image.Image | None = None,
    on_step: StepCallback | None = None,
    check: Callable[[], None] | None = None,
    reuse_img: bool = True,
) -> Finished:
    """``finish`` for ``parts == [img, mask]`` that it may consume: it empties
    the list once they are no longer needed, so a 12 MP job does not keep
    two more full-size copies alive while it encodes (and with ``reuse_img``
    puts the alpha into ``img`` itself)."""

    def stage(percent: int, message: str) -> None:
        if on_step is not None:
            on_step(percent, message)

    tick = check or (lambda: None)
    if options.bg_image is not None and background is None:
        raise ValueError("options.bg_image is set but no background image was given")
    options = resolve_auto_format(
        options, opaque_background=background is not None and "A" not in background.getbands()
    )
    img, mask = parts
    parts.clear()
    if mask.mode != "L":
        mask = mask.convert("L")
    if mask.size != img.size:
        raise ValueError(f"mask is {mask.size}, image is {img.size}")

    if options.replace(decontaminate=True).is_default:
        # The plain cut-out, no extra copies; without decontaminate, the
        # path from before edge cleaning, step for step: the same bytes.
        stage(80, "Compositing cut-out...")
        if options.decontaminate:
            pixels = clean_cutout(img, mask, check=tick)
        else:
            pixels = cutout_pixels(img, mask, reuse_img=reuse_img)
        box = subject_box(mask if img.mode != "RGBA" else alpha_image(pixels))
        del img, mask
        stage(90, "Encoding PNG...")
        data = encode_png(pixels)
        height, width = pixels.shape[:2]
        return _finished(data, "png", width, height, foreground_box(box))

    if options.roi is not None:
        mask = apply_roi(mask, options.roi)
    if options.post_process_mask:
        tick()
        mask = post_process_mask(mask)
    if options.refine == "edges":
        tick()
        mask = refine_edges(img, mask, check=tick)
    if options.alpha_matting:
        stage(60, "Refining edges (alpha matting)...")
        img, mask = alpha_matting(
            img,
            mask,
            foreground_threshold=options.alpha_matting_foreground_threshold,
            background_threshold=options.alpha_matting_background_threshold,
            erode_size=options.alpha_matting_erode_size,
            estimate_colours=options.channels == "rgba",
            check=tick,
        )
        if options.channels == "rgba":
            reuse_img = True  # a copy of ours now
    tick()
    stage(80, "Compositing cut-out...")
    if options.channels == "alpha":
        # The mask alone: no colours to carry through the steps below.
        rgba = _combined_alpha(img, mask)
    elif options.decontaminate and not options.alpha_matting:
        rgba = Image.fromarray(clean_cutout(img, mask, check=tick), "RGBA")
    else:
        # Alpha matting has estimated the band's colours already.
        rgba = Image.fromarray(cutout_pixels(img, mask, reuse_img=reuse_img), "RGBA")
    del img, mask

    box = subject_box(alpha_band(rgba))
    if options.crop and box is None:
        raise NoSubjectFound("No subject was found to crop to.")
    if options.changes_geometry and box is not None:
        tick()
        rgba, box = arrange(rgba, box, options)

    if _layered(options):
        return _finish_in_layers(rgba, box, options, background, stage=stage, tick=tick)

    if options.channels == "alpha":
        out = rgba
    elif options.bg_color is not None or options.format == "jpg":
        out = _flatten(rgba, options)
    else:
        out = rgba
    del rgba

    target = fit_size(out.size, options)
    if target != out.size:
        tick()
        box = scale_box(box, out.size, target)
        out = out.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)

    tick()
    stage(90, f"Encoding {options.format.upper()}...")
    data = encode(out, options.format)
    return _finished(data, options.format, out.width, out.height, foreground_box(box))


def _layered(options: OutputOptions) -> bool:
    """A background image, a shadow or hard edges: the result is built in layers."""
    return options.bg_image is not None or options.shadow != "none" or not options.semitransparency


def _finish_in_layers(rgba, box, options: OutputOptions, background, *, stage, tick) -> Finished:
    """The shadow, the size limit, hard edges, then background, shadow and
    subject stacked (``layers.stack``). A mask alone (channels=alpha) has
    no background or shadow; its edges are hardened if asked."""
    shadow = None
    if options.channels == "rgba" and options.shadow != "none" and box is not None:
        tick()
        stage(85, "Casting the shadow...")
        shadow = cast_shadow(alpha_band(rgba), box, options.shadow, options.shadow_strength)
        if shadow is not None and options.crop:
            rgba, box, shadow = _grow_to_keep(rgba, box, shadow)
    target = fit_size(rgba.size, options)
    if target != rgba.size:
        tick()
        if shadow is not None:
            layer = shadow.layer(rgba.size).resize(target, Image.Resampling.BILINEAR)
            shadow = Shadow(layer, (0, 0))
        box = scale_box(box, rgba.size, target)
        rgba = rgba.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if options.channels == "alpha":
        out = rgba if options.semitransparency else harden_mask(rgba)
    else:
        if not options.semitransparency:
            tick()
            rgba = harden(rgba)
        out = stack(
            rgba,
            shadow=shadow,
            bg_color=options.bg_color,
            background=background,
            flatten_on_white=options.format == "jpg",
        )
    del rgba
    tick()
    stage(90, f"Encoding {options.format.upper()}...")
    data = encode(out, options.format)
    return _finished(data, options.format, out.width, out.height, foreground_box(box))


def _grow_to_keep(rgba: Image.Image, box, shadow: Shadow):
    """With crop: the canvas grown to hold the whole shadow (padding is
    transparent, or the background under it)."""
    left = min(0, shadow.box[0])
    top = min(0, shadow.box[1])
    right = max(rgba.width, shadow.box[2])
    bottom = max(rgba.height, shadow.box[3])
    if (left, top, right, bottom) == (0, 0, rgba.width, rgba.height):
        return rgba, box, shadow
    grown = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
    grown.paste(rgba, (-left, -top))
    moved_box = (box[0] - left, box[1] - top, box[2] - left, box[3] - top)
    return grown, moved_box, shadow.moved(-left, -top)


def _finished(data: bytes, fmt: str, width: int, height: int, foreground) -> Finished:
    return Finished(
        data=data,
        format=fmt,
        content_type=CONTENT_TYPES[fmt],
        extension=fmt,
        width=width,
        height=height,
        foreground=foreground,
    )


def _combined_alpha(img: Image.Image, mask: Image.Image) -> Image.Image:
    """The cut-out's alpha without the cut-out: the mask, times the input's own alpha."""
    if img.mode != "RGBA":
        return mask
    combined = (
        np.asarray(mask, dtype=np.uint16) * np.asarray(img.getchannel("A"), dtype=np.uint16)
    ) // 255
    return Image.fromarray(combined.astype(np.uint8), "L")


def cut_out(img: Image.Image, mask: Image.Image) -> Image.Image:
    """The subject's colours with the mask as alpha (input alpha respected)."""
    return Image.fromarray(cutout_pixels(img, mask), "RGBA")


def cutout_pixels(img: Image.Image, mask: Image.Image, *, reuse_img: bool = False) -> np.ndarray:
    """The cut-out as an HxWx4 array, ready for ``encode_png``.

    Colour under fully transparent pixels is invisible; zeroing it makes
    the PNG smaller and faster to compress and leaks nothing of the
    removed background. Colours stay straight (not premultiplied), so
    soft edges keep their true colour. With ``reuse_img`` the alpha is put
    into ``img`` itself, saving a full-size copy (12 MP: 36 MB).
    """
    alpha = mask if mask.mode == "L" else mask.convert("L")
    if img.mode == "RGBA":
        combined = (
            np.asarray(alpha, dtype=np.uint16) * np.asarray(img.getchannel("A"), dtype=np.uint16)
        ) // 255
        alpha = Image.fromarray(combined.astype(np.uint8), "L")
        rgba = img if reuse_img else img.copy()
    elif img.mode == "RGB":
        rgba = img if reuse_img else img.copy()
    else:
        rgba = img.convert("RGB")
    # putalpha interleaves in C: far cheaper than stacking arrays in numpy.
    rgba.putalpha(alpha)
    # One pixel is one 32-bit word: a single pass keeps or zeroes it whole.
    words = np.asarray(rgba).view(np.uint32)[..., 0]
    kept = np.where(np.asarray(alpha) != 0, words, np.uint32(0))
    return kept.view(np.uint8).reshape(rgba.height, rgba.width, 4)


def _flatten(rgba: Image.Image, options: OutputOptions) -> Image.Image:
    """Over bg_color; a JPG has no alpha, so what stays translucent goes over white."""
    out = rgba
    if options.bg_color is not None:
        out = Image.alpha_composite(Image.new("RGBA", rgba.size, options.bg_color), rgba)
    if options.format == "jpg":
        if options.bg_color is None or options.bg_color[3] < 255:
            out = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), out)
        out = out.convert("RGB")
    return out
