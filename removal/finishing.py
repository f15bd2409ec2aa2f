"""What a customer may ask of the result, applied after the mask.

No Django here (like ``pipeline``): the seed API, the web page and the
remove.bg endpoint all describe a request as one ``OutputOptions``, and the
worker turns the model's mask into the file they asked for with ``finish``:

    roi on the mask -> post_process_mask -> alpha matting -> cut-out
    -> crop (+ margin) / scale / position -> bg_color -> size limit
    -> channels -> encode (png, webp, jpg or zip)

Every step is skipped when its option is at its default, and the default
options take exactly the old path (``cutout_pixels`` + ``encode_png``), so
a request without options gives the same bytes as before, as fast.

The parsers turn what a form or a JSON body sends into field values and
raise ``OptionError`` naming the field and its allowed values; mapping each
door's field names onto them is the request module's job.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import time
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageColor

# Imported lazily: ``removal.pipeline`` imports this module at its top, so a
# module-level ``from removal.pipeline import ...`` here would be circular.
# (``encode_png``, ``cutout_pixels``, ``png_encode_threads`` and
# ``NoSubjectFound`` live there.)

FORMATS = ("png", "jpg", "webp", "zip")
CHANNELS = ("rgba", "alpha")
CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "zip": "application/zip",
}
# remove.bg's size names and the most pixels each allows (None: the input's
# own size, within the service's MAX_IMAGE_PIXELS).
SIZES: dict[str, int | None] = {
    "auto": None,
    "preview": 250_000,
    "small": 250_000,
    "regular": 250_000,
    "medium": 1_500_000,
    "hd": 4_000_000,
    "full": None,
    "4k": None,
    "50mp": None,
}
# JPEG cannot be wider or taller than this; no output of ours can be either.
MAX_DIMENSION = 65_500
MAX_ERODE_SIZE = 40
# remove.bg caps every side of crop_margin at half the subject or 500 px.
MAX_MARGIN_FRACTION = 0.5
MAX_MARGIN_PX = 500
SCALE_RANGE = (10.0, 100.0)
JPEG_QUALITY = 90
# Lossless WebP's effort knobs: method 0 / quality 0 is 2-4x faster than the
# defaults at 12 MP for ~20 % more bytes, still ~25 % smaller than our PNG
# (measured in the report of the options branch; bench/bench_options.py).
WEBP_METHOD = 0
WEBP_QUALITY = 0
# The subject's box counts pixels with at least this alpha (1/32). U2-Net's
# masks carry scattered alpha-1..3 specks far from the subject (measured on
# skimage's astronaut and rocket); counting them would make "crop to the
# subject" keep nearly the whole image. Pixels below it are invisible.
FOREGROUND_MIN_ALPHA = 8
# Alpha matting (closed-form, pymatting, as rembg does) is solved on at most
# this many pixels, then the alpha is upsampled into the unknown band alone.
# rembg solves the whole image at full size: seconds at 1 MP, minutes at 12 MP.
MATTING_MAX_PIXELS = 1_000_000
# The solver refines its answer step by step; past this it keeps what it has.
MATTING_SOLVE_SECONDS = 15.0
# Foreground colours (pymatting's estimate_foreground_ml) are estimated at
# full resolution, on tiles that touch the unknown band only.
FOREGROUND_TILE = 256
FOREGROUND_TILE_MARGIN = 16

_ECHO_LIMIT = 40


class OptionError(ValueError):
    """A value a customer sent for ``field`` that we cannot honour; the message says why."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(message)


def _echo(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _ECHO_LIMIT else text[: _ECHO_LIMIT - 4] + "...'"


def _text(value: Any) -> str | None:
    """A form value as trimmed text; None for "not sent" (None or blank)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if not isinstance(value, str):
        return repr(value)  # a list or an object: matches nothing, so it is refused
    value = value.strip()
    return value or None


# --- Lengths (crop_margin, roi) --------------------------------------------


@dataclass(frozen=True)
class Length:
    """A length in pixels or in percent of some whole (the subject, the image)."""

    value: float
    unit: str = "px"  # "px" or "%"

    def resolve(self, whole: float) -> float:
        return self.value * whole / 100.0 if self.unit == "%" else self.value

    def __str__(self) -> str:
        number = f"{self.value:.6f}".rstrip("0").rstrip(".")
        return f"{number}{self.unit}"


ZERO = Length(0.0, "px")
NO_MARGIN = (ZERO, ZERO, ZERO, ZERO)
_LENGTH = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)\s*(px|%)?$", re.IGNORECASE)


def _length(token: Any) -> Length | None:
    if isinstance(token, bool):
        return None
    if isinstance(token, int | float):
        return Length(float(token), "px") if math.isfinite(token) and token >= 0 else None
    if not isinstance(token, str):
        return None
    match = _LENGTH.match(token.strip())
    if match is None:
        return None
    return Length(float(match.group(1)), (match.group(2) or "px").lower())


def _tokens(value: Any) -> list | None:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [value]
    if isinstance(value, str):
        return value.replace(",", " ").split()
    return None


# --- Parsers ----------------------------------------------------------------


def parse_format(value: Any, *, field: str = "format", allow_auto: bool = False) -> str:
    """png (default), jpg (jpeg), webp, zip; ``auto`` only where the door offers it."""
    text = _text(value)
    if text is None:
        return "png"
    name = text.lower()
    name = "jpg" if name == "jpeg" else name
    allowed = FORMATS + (("auto",) if allow_auto else ())
    if name not in allowed:
        shown = ", ".join(allowed)
        raise OptionError(field, f"{field} must be one of {shown}; got {_echo(value)}.")
    return name


def parse_channels(value: Any, *, field: str = "channels") -> str:
    text = _text(value)
    if text is None:
        return "rgba"
    if text.lower() not in CHANNELS:
        raise OptionError(
            field,
            f"{field} must be rgba (the cut-out) or alpha (the mask alone); got {_echo(value)}.",
        )
    return text.lower()


_HEX = re.compile(r"^#?([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")


def parse_bg_color(value: Any, *, field: str = "bg_color") -> tuple[int, int, int, int] | None:
    """Hex with 3, 4, 6 or 8 digits (``#`` optional) or a CSS colour name; RGBA out."""
    if isinstance(value, list | tuple) and len(value) in (3, 4):
        channels = list(value) + [255] * (4 - len(value))
        if all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in channels):
            return tuple(channels)  # type: ignore[return-value]
    text = _text(value)  # a list that was not 3 or 4 bytes matches nothing below
    if text is None:
        return None
    match = _HEX.match(text)
    if match:
        digits = match.group(1)
        if len(digits) in (3, 4):
            digits = "".join(c * 2 for c in digits)
        if len(digits) == 6:
            digits += "ff"
        return tuple(int(digits[i : i + 2], 16) for i in range(0, 8, 2))  # type: ignore[return-value]
    if re.fullmatch(r"[A-Za-z]+", text):
        try:
            return ImageColor.getrgb(text.lower()) + (255,)  # type: ignore[return-value]
        except ValueError:
            pass
    raise OptionError(
        field,
        f"{field} must be a hex colour (rgb, rgba, rrggbb or rrggbbaa, with or without '#') "
        f"or a CSS colour name such as 'white'; got {_echo(value)}.",
    )


def parse_bool(value: Any, *, field: str) -> bool:
    """true/false, 1/0, yes/no, on/off (any case) or a JSON boolean; blank is false."""
    if isinstance(value, bool):
        return value
    text = _text(value)
    if text is None:
        return False
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise OptionError(field, f"{field} must be true or false; got {_echo(value)}.")


def parse_crop_margin(
    value: Any, *, field: str = "crop_margin"
) -> tuple[Length, Length, Length, Length]:
    """``20``, ``20px``, ``10%``, or remove.bg's 1, 2 or 4 values (top, right, bottom, left).

    Percentages are of the subject's box (height for top/bottom, width for
    left/right); each side is capped at 50 % of the subject or 500 px when
    applied.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return NO_MARGIN
    tokens = _tokens(value)
    lengths = [_length(t) for t in tokens] if tokens else None
    if not lengths or len(lengths) not in (1, 2, 4) or any(x is None for x in lengths):
        raise OptionError(
            field,
            f"{field} must be 1, 2 or 4 non-negative lengths in px or % "
            f"(e.g. 20, 20px, 10%, '10px 20%'); got {_echo(value)}.",
        )
    if len(lengths) == 1:
        lengths = lengths * 4
    elif len(lengths) == 2:
        lengths = lengths * 2
    return tuple(lengths)  # type: ignore[return-value]


def parse_roi(value: Any, *, field: str = "roi") -> tuple[Length, Length, Length, Length] | None:
    """``x1 y1 x2 y2`` in px or % of the input; outside it nothing is foreground."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    tokens = _tokens(value)
    coords = [_length(t) for t in tokens] if tokens else None
    problem = None
    if not coords or len(coords) != 4 or any(c is None for c in coords):
        problem = "must be four coordinates"
    elif any(c.unit == "%" and c.value > 100 for c in coords):
        problem = "has a percentage over 100%"
    else:
        x1, y1, x2, y2 = coords
        for low, high in ((x1, x2), (y1, y2)):
            if low.unit == high.unit and low.value >= high.value:
                problem = "needs x1 < x2 and y1 < y2"
    if problem:
        raise OptionError(
            field,
            f"{field} {problem}: 'x1 y1 x2 y2' in px or % of the image "
            f"(e.g. '0% 0% 100% 100%' or '10px 20px 400px 300px'); got {_echo(value)}.",
        )
    return tuple(coords)  # type: ignore[return-value]


def _percent(token: Any) -> float | None:
    if isinstance(token, bool):
        return None
    if isinstance(token, int | float):
        return float(token) if math.isfinite(token) else None
    if isinstance(token, str):
        match = re.fullmatch(r"(\d+(?:\.\d+)?|\.\d+)\s*%?", token.strip())
        return float(match.group(1)) if match else None
    return None


def parse_scale(value: Any, *, field: str = "scale") -> float | None:
    """``original`` (None) or 10 %-100 %: the subject's size relative to the canvas."""
    text = _text(value)
    if text is None or text.lower() == "original":
        return None
    percent = _percent(value)
    low, high = SCALE_RANGE
    if percent is None or not low <= percent <= high:
        raise OptionError(
            field,
            f"{field} must be 'original' or a percentage from 10% to 100%; got {_echo(value)}.",
        )
    return percent


def parse_position(value: Any, *, field: str = "position") -> tuple[float, float] | str | None:
    """``original``, ``center`` or one or two percentages (horizontal, vertical).

    None (not sent) means remove.bg's default: ``original``, or ``center``
    when a scale is given.
    """
    if isinstance(value, list | tuple):
        tokens = list(value)
    else:
        text = _text(value)
        if text is None:
            return None
        if text.lower() == "original":
            return "original"
        if text.lower() in ("center", "centre"):
            return (50.0, 50.0)
        tokens = _tokens(value) or []
    percents = [_percent(t) for t in tokens]
    if len(percents) not in (1, 2) or any(p is None or not 0 <= p <= 100 for p in percents):
        raise OptionError(
            field,
            f"{field} must be 'original', 'center', or one or two percentages from 0% to 100% "
            f"(horizontal, vertical); got {_echo(value)}.",
        )
    return (percents[0], percents[-1])  # type: ignore[return-value]


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*(px)?\s*", value, re.IGNORECASE):
        return int(re.sub(r"\D", "", value))
    return None


def _bounded_int(value: Any, *, field: str, low: int, high: int, what: str) -> int:
    number = _whole_number(value)
    if number is None or not low <= number <= high:
        raise OptionError(
            field, f"{field} must be {what} from {low} to {high}; got {_echo(value)}."
        )
    return number


def parse_dimension(value: Any, *, field: str) -> int | None:
    """max_width / max_height: whole pixels, 1 to 65,500; blank is no limit."""
    if _text(value) is None:
        return None
    return _bounded_int(
        value, field=field, low=1, high=MAX_DIMENSION, what="a whole number of pixels"
    )


def parse_threshold(value: Any, *, field: str) -> int:
    """An alpha-matting threshold: 0 to 255 (rembg's meaning)."""
    return _bounded_int(value, field=field, low=0, high=255, what="a whole number")


def parse_erode_size(value: Any, *, field: str = "alpha_matting_erode_size") -> int:
    return _bounded_int(value, field=field, low=0, high=MAX_ERODE_SIZE, what="a whole number")


def parse_size(
    value: Any, *, field: str = "size", choices: Iterable[str] | None = None
) -> int | None:
    """A size name to the most pixels it allows (None: the input's own size).

    ``choices`` restricts the names a door offers (the seed API: full, preview).
    """
    allowed = [name.lower() for name in (choices if choices is not None else SIZES)]
    text = _text(value)
    if text is None:
        return None
    name = text.lower()
    if name not in allowed or name not in SIZES:
        shown = ", ".join("50MP" if n == "50mp" else n for n in allowed)
        raise OptionError(field, f"{field} must be one of {shown}; got {_echo(value)}.")
    return SIZES[name]


def _max_pixels(value: Any, *, field: str = "max_pixels") -> int | None:
    if value is None:
        return None
    return _bounded_int(value, field=field, low=1, high=10**10, what="a whole number of pixels")


# --- The options --------------------------------------------------------------


@dataclass(frozen=True)
class OutputOptions:
    """Everything a customer may ask of the result; the defaults give today's PNG."""

    format: str = "png"  # png, jpg, webp, zip ("auto": see resolve_auto_format)
    channels: str = "rgba"  # rgba, or alpha: the mask alone, 8-bit grayscale
    bg_color: tuple[int, int, int, int] | None = None
    crop: bool = False
    crop_margin: tuple[Length, Length, Length, Length] = NO_MARGIN
    roi: tuple[Length, Length, Length, Length] | None = None
    scale: float | None = None  # percent of the canvas; None: original
    position: tuple[float, float] | str | None = None  # (x %, y %), "original", None
    max_pixels: int | None = None
    max_width: int | None = None
    max_height: int | None = None
    alpha_matting: bool = False
    alpha_matting_foreground_threshold: int = 240
    alpha_matting_background_threshold: int = 10
    alpha_matting_erode_size: int = 10
    post_process_mask: bool = False

    def __post_init__(self):
        # Validate once, here, so a hand-built (or JSON-loaded) value that
        # slipped past a parser still fails as an OptionError.
        parse_format(self.format, allow_auto=True)
        parse_channels(self.channels)
        if self.bg_color is not None:
            parse_bg_color(self.bg_color)
        for name in ("crop", "alpha_matting", "post_process_mask"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(name, f"{name} must be true or false.")
        if len(self.crop_margin) != 4 or not all(isinstance(x, Length) for x in self.crop_margin):
            raise OptionError("crop_margin", "crop_margin must be four lengths.")
        if self.roi is not None:
            parse_roi(list(map(str, self.roi)))
        if self.scale is not None:
            parse_scale(self.scale)
        if self.position is not None:
            parse_position(self.position)
        _max_pixels(self.max_pixels)
        for name in ("max_width", "max_height"):
            parse_dimension(getattr(self, name), field=name)
        parse_threshold(
            self.alpha_matting_foreground_threshold, field="alpha_matting_foreground_threshold"
        )
        parse_threshold(
            self.alpha_matting_background_threshold, field="alpha_matting_background_threshold"
        )
        parse_erode_size(self.alpha_matting_erode_size)

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_OPTIONS

    @property
    def changes_geometry(self) -> bool:
        return self.crop or self.scale is not None or self.position not in (None, "original")

    def to_json(self, *, full: bool = False) -> dict:
        """The options as JSON values; only those that differ from the defaults unless ``full``."""
        result = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not full and value == f.default:
                continue
            result[f.name] = _json_value(f.name, value)
        return result

    @classmethod
    def from_json(cls, data: dict) -> OutputOptions:
        """The inverse of ``to_json`` (also takes the strings a form sends)."""
        if not isinstance(data, dict):
            raise OptionError("options", "options must be a JSON object.")
        values = {}
        for name, raw in data.items():
            parser = _FIELD_PARSERS.get(name)
            if parser is None:
                raise OptionError(name, f"{name} is not an output option.")
            values[name] = parser(raw)
        return cls(**values)


def _json_value(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if name == "bg_color":
        return "#" + "".join(f"{c:02x}" for c in value)
    if name in ("crop_margin", "roi"):
        return [str(x) for x in value]
    if name == "position":
        return list(value)
    raise TypeError(f"{name}: {value!r}")


_FIELD_PARSERS: dict[str, Callable[[Any], Any]] = {
    "format": lambda v: parse_format(v, allow_auto=True),
    "channels": parse_channels,
    "bg_color": parse_bg_color,
    "crop": lambda v: parse_bool(v, field="crop"),
    "crop_margin": parse_crop_margin,
    "roi": parse_roi,
    "scale": parse_scale,
    "position": parse_position,
    "max_pixels": _max_pixels,
    "max_width": lambda v: parse_dimension(v, field="max_width"),
    "max_height": lambda v: parse_dimension(v, field="max_height"),
    "alpha_matting": lambda v: parse_bool(v, field="alpha_matting"),
    "alpha_matting_foreground_threshold": lambda v: parse_threshold(
        v, field="alpha_matting_foreground_threshold"
    ),
    "alpha_matting_background_threshold": lambda v: parse_threshold(
        v, field="alpha_matting_background_threshold"
    ),
    "alpha_matting_erode_size": parse_erode_size,
    "post_process_mask": lambda v: parse_bool(v, field="post_process_mask"),
}

DEFAULT_OPTIONS = OutputOptions()


def resolve_auto_format(options: OutputOptions) -> OutputOptions:
    """remove.bg's ``format=auto``: JPG when an opaque ``bg_color`` leaves no
    transparency, else PNG (a mask alone is always PNG). Resolved before the
    job is stored, so the file name carries the real extension."""
    if options.format != "auto":
        return options
    opaque = options.bg_color is not None and options.bg_color[3] == 255
    fmt = "jpg" if opaque and options.channels == "rgba" else "png"
    return dataclasses.replace(options, format=fmt)


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
    on_step: StepCallback | None = None,
    check: Callable[[], None] | None = None,
) -> Finished:
    """The file the options ask for, from the decoded image and the model's mask.

    ``on_step(percent, message)`` is told when a stage starts (the worker
    shows it as progress); ``check()`` is called between the slow pieces and
    may raise to abandon the work (the job's deadline). ``img`` is not changed.
    """
    return finish_taking([img, mask], options, on_step=on_step, check=check, reuse_img=False)


def finish_taking(
    parts: list,
    options: OutputOptions = DEFAULT_OPTIONS,
    *,
    on_step: StepCallback | None = None,
    check: Callable[[], None] | None = None,
    reuse_img: bool = True,
) -> Finished:
    """``finish`` for ``parts == [img, mask]`` that it may consume: it empties
    the list once they are no longer needed, so a 12 MP job does not keep
    two more full-size copies alive while it encodes (and with ``reuse_img``
    puts the alpha into ``img`` itself)."""
    from removal import pipeline

    def stage(percent: int, message: str) -> None:
        if on_step is not None:
            on_step(percent, message)

    tick = check or (lambda: None)
    options = resolve_auto_format(options)
    img, mask = parts
    parts.clear()
    if mask.mode != "L":
        mask = mask.convert("L")
    if mask.size != img.size:
        raise ValueError(f"mask is {mask.size}, image is {img.size}")

    if options.is_default:
        # Today's path, step for step: the same bytes, no extra copies.
        stage(80, "Compositing cut-out...")
        pixels = pipeline.cutout_pixels(img, mask, reuse_img=reuse_img)
        box = _subject_box(mask if img.mode != "RGBA" else _alpha_image(pixels))
        del img, mask
        stage(90, "Encoding PNG...")
        data = pipeline.encode_png(pixels)
        height, width = pixels.shape[:2]
        return _finished(data, "png", width, height, _foreground(box))

    if options.roi is not None:
        mask = apply_roi(mask, options.roi)
    if options.post_process_mask:
        tick()
        mask = post_process_mask(mask)
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
    else:
        rgba = Image.fromarray(pipeline.cutout_pixels(img, mask, reuse_img=reuse_img), "RGBA")
    del img, mask

    box = _subject_box(_alpha_band(rgba))
    if options.crop and box is None:
        raise pipeline.NoSubjectFound("No subject was found to crop to.")
    if options.changes_geometry and box is not None:
        tick()
        rgba, box = arrange(rgba, box, options)

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
        box = _scale_box(box, out.size, target)
        out = out.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)

    tick()
    stage(90, f"Encoding {options.format.upper()}...")
    data = encode(out, options.format)
    return _finished(data, options.format, out.width, out.height, _foreground(box))


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


def _alpha_band(img: Image.Image) -> Image.Image:
    return img if img.mode == "L" else img.getchannel("A")


def _alpha_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(pixels[..., 3]), "L")


_BOX_LUT = [0] * FOREGROUND_MIN_ALPHA + [255] * (256 - FOREGROUND_MIN_ALPHA)


def _subject_box(alpha: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of alpha >= FOREGROUND_MIN_ALPHA; Pillow does it in C."""
    return alpha.point(_BOX_LUT).getbbox()


def subject_box(alpha: Image.Image) -> tuple[int, int, int, int] | None:
    """The box ``foreground`` and ``crop`` use: (left, top, right, bottom), or None."""
    return _subject_box(alpha if alpha.mode == "L" else alpha.getchannel("A"))


def _foreground(box) -> dict | None:
    if box is None:
        return None
    left, top, right, bottom = box
    return {"top": top, "left": left, "width": right - left, "height": bottom - top}


def _scale_box(box, size, target):
    """The box after resizing from ``size`` to ``target``, rounded outwards."""
    if box is None:
        return None
    rx, ry = target[0] / size[0], target[1] / size[1]
    left, top, right, bottom = box
    return (
        max(0, math.floor(left * rx)),
        max(0, math.floor(top * ry)),
        min(target[0], max(math.floor(left * rx) + 1, math.ceil(right * rx))),
        min(target[1], max(math.floor(top * ry) + 1, math.ceil(bottom * ry))),
    )


# --- The steps, each usable on its own ----------------------------------------


def apply_roi(mask: Image.Image, roi) -> Image.Image:
    """The mask with everything outside ``roi`` (x1 y1 x2 y2 in px or % of it) zeroed."""
    width, height = mask.size
    x1, y1, x2, y2 = roi
    left = min(width, max(0, round(x1.resolve(width))))
    top = min(height, max(0, round(y1.resolve(height))))
    right = min(width, max(left, round(x2.resolve(width))))
    bottom = min(height, max(top, round(y2.resolve(height))))
    out = Image.new("L", mask.size, 0)
    if right > left and bottom > top:
        box = (left, top, right, bottom)
        out.paste(mask.crop(box), box)
    return out


def post_process_mask(mask: Image.Image) -> Image.Image:
    """rembg's ``post_process``: an opening with a disk of radius 1, a Gaussian
    blur (sigma 2) and a threshold at 127, for a smooth binary edge.

    In float32 rather than rembg's float64 (twice as fast at 12 MP); at most a
    few pixels in a million land on the other side of 127.
    """
    from scipy import ndimage

    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)  # skimage's disk(1)
    opened = ndimage.grey_opening(np.asarray(mask), footprint=cross)
    blurred = ndimage.gaussian_filter(opened.astype(np.float32), sigma=2)
    return Image.fromarray(np.where(blurred < 127, 0, 255).astype(np.uint8), "L")


def _eroded(region: np.ndarray, size: int, border: int) -> np.ndarray:
    """scipy's binary_erosion with rembg's structure (size x size ones, or the
    default cross when 0), as a separable minimum filter: same result, ~6x faster."""
    from scipy import ndimage

    as_bytes = region.view(np.uint8)
    if size > 0:
        return ndimage.minimum_filter(as_bytes, size=size, mode="constant", cval=border).view(bool)
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    return ndimage.minimum_filter(as_bytes, footprint=cross, mode="constant", cval=border).view(
        bool
    )


def trimap(
    mask: Image.Image, *, foreground_threshold: int, background_threshold: int, erode_size: int
) -> np.ndarray:
    """rembg's trimap: 255 sure foreground, 0 sure background, 128 unknown."""
    m = np.asarray(mask)
    is_fg = _eroded(m > foreground_threshold, erode_size, 0)
    is_bg = _eroded(m < background_threshold, erode_size, 1)
    out = np.full(m.shape, 128, dtype=np.uint8)
    out[is_fg] = 255
    out[is_bg] = 0
    return out


def _tiles(region: np.ndarray, tile: int, margin: int):
    """(core, padded, core-within-padded) slices of the tiles that hold ``region`` pixels."""
    height, width = region.shape
    rows = np.add.reduceat(region.any(axis=1), np.arange(0, height, tile)) > 0
    for ty, row_has in enumerate(rows):
        if not row_has:
            continue
        y0, y1 = ty * tile, min(height, (ty + 1) * tile)
        cols = np.add.reduceat(region[y0:y1].any(axis=0), np.arange(0, width, tile)) > 0
        for tx, has in enumerate(cols):
            if not has:
                continue
            x0, x1 = tx * tile, min(width, (tx + 1) * tile)
            py0, py1 = max(0, y0 - margin), min(height, y1 + margin)
            px0, px1 = max(0, x0 - margin), min(width, x1 + margin)
            yield (
                (slice(y0, y1), slice(x0, x1)),
                (slice(py0, py1), slice(px0, px1)),
                (slice(y0 - py0, y1 - py0), slice(x0 - px0, x1 - px0)),
            )


def _preconditioner(matrix):
    """pymatting's incomplete Cholesky (rembg's choice), with room for 30x the
    matrix's entries rather than its default 250 million (4 GB reserved per
    call), and a small diagonal shift from the start: the unshifted first
    try often fails on these systems and prints a warning to stdout."""
    from pymatting.preconditioner.ichol import ichol

    return ichol(
        matrix,
        shifts=[1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0],
        max_nnz=max(1_000_000, 30 * matrix.nnz),
    )


class _OutOfTime(Exception):
    pass


def _solve_alpha(image: np.ndarray, tri: np.ndarray, check: Callable[[], None]):
    """pymatting's ``estimate_alpha_cf`` (closed-form matting, what rembg
    calls), its steps spelled out so that the conjugate-gradient loop can
    be stopped: after MATTING_SOLVE_SECONDS the current iterate is used (it
    only refines from there), and the job's deadline is checked each step.
    None when it cannot be solved (the caller keeps the mask)."""
    from pymatting.laplacian.cf_laplacian import cf_laplacian
    from pymatting.solver.cg import cg

    flat = tri.ravel()
    is_fg, is_bg = flat == 1.0, flat == 0.0
    is_known = is_fg | is_bg
    is_unknown = ~is_known
    if not is_fg.any() or not is_bg.any():
        return None  # with one side only the solution is a constant: worse than the mask
    laplacian = cf_laplacian(image, is_known=is_known.reshape(tri.shape))
    check()
    unknown_rows = laplacian[is_unknown, :]
    system = unknown_rows[:, is_unknown]
    rhs = -unknown_rows[:, is_known].dot(is_fg[is_known].astype(np.float64))
    try:
        preconditioner = _preconditioner(system)
    except ValueError:
        return None
    stop_at = time.monotonic() + MATTING_SOLVE_SECONDS
    latest: list[np.ndarray] = []

    def watch(_a, x, _b, _norm_b, _r, _norm_r):
        if not latest:
            latest.append(x)  # the solver updates this array in place
        check()
        if time.monotonic() > stop_at:
            raise _OutOfTime

    try:
        solution = cg(system, rhs, M=preconditioner, callback=watch)
    except (_OutOfTime, ValueError):
        if not latest:
            return None
        solution = latest[0]
    alpha = flat.astype(np.float64)
    alpha[is_unknown] = solution
    return np.clip(alpha, 0.0, 1.0).reshape(tri.shape)


def _foreground_tile(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    from pymatting.foreground.estimate_foreground_ml import estimate_foreground_ml

    return estimate_foreground_ml(image, alpha)


def _map_tiles(fn, jobs: list, check: Callable[[], None]) -> list:
    """Runs tiles on the cores this process may use (pymatting's kernels release the GIL)."""
    from removal import pipeline

    threads = min(pipeline.png_encode_threads(), max(1, len(jobs)))
    if threads == 1:
        results = []
        for args in jobs:
            check()
            results.append(fn(*args))
        return results
    with ThreadPoolExecutor(threads, thread_name_prefix="matting") as pool:
        futures = [pool.submit(fn, *args) for args in jobs]
        try:
            results = []
            for future in futures:
                check()
                results.append(future.result())
            return results
        finally:
            for future in futures:
                future.cancel()


def alpha_matting(
    img: Image.Image,
    mask: Image.Image,
    *,
    foreground_threshold: int = 240,
    background_threshold: int = 10,
    erode_size: int = 10,
    estimate_colours: bool = True,
    check: Callable[[], None] | None = None,
) -> tuple[Image.Image, Image.Image]:
    """rembg's alpha matting (pymatting's closed-form alpha, then its
    multilevel foreground colours), bounded in time. Returns (a copy of the
    image with the edge colours replaced, or ``img`` itself without
    ``estimate_colours``; the refined mask). An input alpha is kept.

    rembg solves on every pixel at full size: seconds at 1 MP, minutes and
    gigabytes at 12 MP. Here:
    1. the trimap is rembg's, at full size (sure pixels stay 0 or 255);
    2. the alpha is solved as rembg does on a copy of at most
       MATTING_MAX_PIXELS (the same computation for smaller images), for at
       most MATTING_SOLVE_SECONDS;
    3. it is upsampled (bilinear) into the full-size unknown band only;
    4. the foreground colours are estimated at full size, in tiles that touch
       the band only, and replace the colours in the band only.
    """
    tick = check or (lambda: None)
    width, height = img.size
    tri = trimap(
        mask,
        foreground_threshold=foreground_threshold,
        background_threshold=background_threshold,
        erode_size=erode_size,
    )
    unknown = tri == 128
    rgb = img.convert("RGB")  # a copy: its band colours are replaced below
    if not unknown.any():
        return _with_alpha_of(rgb, img), Image.fromarray(tri, "L")

    # 2. Solve on at most MATTING_MAX_PIXELS.
    factor = min(1.0, math.sqrt(MATTING_MAX_PIXELS / (width * height)))
    if factor < 1.0:
        work_size = (max(1, round(width * factor)), max(1, round(height * factor)))
        work_rgb = rgb.resize(work_size, Image.Resampling.BOX)
        # BOX keeps 0 and 255 only where every pixel it covers was sure.
        work_tri = np.asarray(Image.fromarray(tri, "L").resize(work_size, Image.Resampling.BOX))
    else:
        work_rgb, work_tri = rgb, tri
    tri_float = np.where(work_tri == 255, 1.0, np.where(work_tri == 0, 0.0, 0.5))
    tick()
    solved = _solve_alpha(np.asarray(work_rgb, dtype=np.float64) / 255.0, tri_float, tick)
    del tri_float, work_rgb
    if solved is None:
        # Nothing to solve against: the model's mask stays in the band.
        refined = np.where(unknown, np.asarray(mask), tri)
    else:
        # 3. Back to full size, in the unknown band only.
        work_alpha = Image.fromarray((solved * 255 + 0.5).astype(np.uint8), "L")
        if factor < 1.0:
            work_alpha = work_alpha.resize((width, height), Image.Resampling.BILINEAR)
        refined = np.where(unknown, np.asarray(work_alpha), tri)
    tick()

    if not estimate_colours:
        return img, Image.fromarray(refined, "L")

    # 4. Foreground colours where the alpha is fractional.
    colours = np.asarray(rgb).copy()
    band = unknown & (refined > 0)
    tiles = list(_tiles(band, FOREGROUND_TILE, FOREGROUND_TILE_MARGIN))
    estimated = _map_tiles(
        _foreground_tile,
        [
            (colours[padded].astype(np.float32) / 255.0, refined[padded].astype(np.float32) / 255.0)
            for _, padded, _ in tiles
        ],
        tick,
    )
    for (core, _, inner), foreground in zip(tiles, estimated, strict=True):
        core_band = band[core]
        fg = (np.clip(foreground[inner], 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        colours[core][core_band] = fg[core_band]
    return _with_alpha_of(Image.fromarray(colours, "RGB"), img), Image.fromarray(refined, "L")


def warm_up_matting() -> float:
    """Runs alpha matting once on a tiny image; returns the seconds it took.

    pymatting's kernels are numba functions compiled on first use and cached
    on disk (next to pymatting, or in NUMBA_CACHE_DIR). Without that cache
    the first matting job of a process spends ~100 s compiling on a 2-core
    machine, past REMOVAL_JOB_TIMEOUT; call this at install or worker start.
    """
    started = time.monotonic()
    img = Image.new("RGB", (64, 64), (200, 40, 40))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    alpha_matting(img, mask, erode_size=2)
    return time.monotonic() - started


def _with_alpha_of(rgb: Image.Image, original: Image.Image) -> Image.Image:
    if original.mode == "RGBA":
        rgb.putalpha(original.getchannel("A"))
    return rgb


def crop_box(box, margin) -> tuple[int, int, int, int]:
    """The subject's ``box`` grown by ``margin`` (top, right, bottom, left),
    each side capped at half the subject or 500 px. It may reach past the
    image: that part is transparent (or bg_color), as remove.bg pads it."""
    left, top, right, bottom = box
    sw, sh = right - left, bottom - top
    t, r, b, lft = margin

    def side(length: Length, whole: int) -> int:
        return round(min(length.resolve(whole), MAX_MARGIN_FRACTION * whole, MAX_MARGIN_PX))

    return (left - side(lft, sw), top - side(t, sh), right + side(r, sw), bottom + side(b, sh))


def arrange(rgba: Image.Image, box, options: OutputOptions):
    """crop (+ margin), scale and position, remove.bg's way: the canvas is the
    subject's box plus the margin when cropping, else the whole image; the
    subject is scaled to ``scale`` % of the canvas (fit, aspect kept) and
    placed at ``position`` (x %, y % of the free space; "center" = 50 % 50 %;
    "original": where it was). A scale without a position centres it.
    Returns the new image and the subject's box in it."""
    width, height = rgba.size
    canvas = (0, 0, width, height)
    if options.crop:
        canvas = crop_box(box, options.crop_margin)
    cx0, cy0, cx1, cy1 = canvas
    cw, ch = cx1 - cx0, cy1 - cy0
    position = options.position
    if position is None:
        position = (50.0, 50.0) if options.scale is not None else "original"
    left, top, right, bottom = box
    if options.scale is None and position == "original":
        return rgba.crop(canvas), (left - cx0, top - cy0, right - cx0, bottom - cy0)

    subject = rgba.crop(box)
    sw, sh = subject.size
    if options.scale is not None:
        factor = options.scale / 100.0 * min(cw / sw, ch / sh)
        size = (max(1, round(sw * factor)), max(1, round(sh * factor)))
        if size != subject.size:
            subject = subject.resize(size, Image.Resampling.LANCZOS)
    nw, nh = subject.size
    if position == "original":  # scaled about its own centre
        x = round((left + right) / 2 - cx0 - nw / 2)
        y = round((top + bottom) / 2 - cy0 - nh / 2)
    else:
        x = round((cw - nw) * position[0] / 100.0)
        y = round((ch - nh) * position[1] / 100.0)
    out = Image.new(rgba.mode, (cw, ch), 0)
    out.paste(subject, (x, y))
    new_box = _subject_box(_alpha_band(out))
    return out, new_box


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


def fit_size(size: tuple[int, int], options: OutputOptions) -> tuple[int, int]:
    """The largest size within max_pixels / max_width / max_height, aspect
    kept, never larger than ``size``."""
    width, height = size
    factor = 1.0
    if options.max_pixels is not None and width * height > options.max_pixels:
        factor = min(factor, math.sqrt(options.max_pixels / (width * height)))
    if options.max_width is not None:
        factor = min(factor, options.max_width / width)
    if options.max_height is not None:
        factor = min(factor, options.max_height / height)
    if factor >= 1.0:
        return size
    # The epsilon keeps 3464 x sqrt(250000 / 3464^2) at 500, not 499.99...
    target = (max(1, math.floor(width * factor + 1e-9)), max(1, math.floor(height * factor + 1e-9)))
    while options.max_pixels is not None and target[0] * target[1] > options.max_pixels:
        target = (max(1, target[0] - 1), max(1, target[1] - 1))  # float rounding
    return target


def encode(img: Image.Image, fmt: str) -> bytes:
    """PNG with our fast encoder, lossless WebP, JPEG q90, or remove.bg's zip."""
    from removal import pipeline

    if fmt == "png":
        return pipeline.encode_png(img)
    buffer = io.BytesIO()
    if fmt == "webp":
        if img.mode not in ("RGB", "RGBA"):
            img = img.convert("RGB")
        img.save(buffer, "WEBP", lossless=True, method=WEBP_METHOD, quality=WEBP_QUALITY)
    elif fmt == "jpg":
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        img.save(buffer, "JPEG", quality=JPEG_QUALITY)
    elif fmt == "zip":
        return encode_zip(img)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return buffer.getvalue()


def encode_zip(img: Image.Image) -> bytes:
    """remove.bg's zip: ``color.jpg`` (the colours, no alpha) and ``alpha.png``
    (the alpha, 8-bit grayscale), both at the output's size; together they
    are the PNG. Stored, not deflated: both are compressed already."""
    from removal import pipeline

    rgba = img if img.mode == "RGBA" else img.convert("RGBA")
    colour = io.BytesIO()
    rgba.convert("RGB").save(colour, "JPEG", quality=JPEG_QUALITY)
    alpha = pipeline.encode_png(np.asarray(rgba.getchannel("A")))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("color.jpg", colour.getvalue())
        archive.writestr("alpha.png", alpha)
    return buffer.getvalue()
