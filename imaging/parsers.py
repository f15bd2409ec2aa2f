"""Parsers: what a form or a JSON body sends, turned into option values.

Each raises ``OptionError`` naming the field and what it accepts; the
option table (``imaging.options``) says which parser each option uses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from PIL import ImageColor

from imaging.errors import OptionError
from imaging.formats import FORMATS

# JPEG cannot be wider or taller than this; no output of ours can be either.
MAX_DIMENSION = 65_500
MAX_ERODE_SIZE = 40
# remove.bg caps every side of crop_margin at half the subject or 500 px.
MAX_MARGIN_FRACTION = 0.5
MAX_MARGIN_PX = 500
SCALE_RANGE = (10.0, 100.0)
CHANNELS = ("rgba", "alpha")
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
_ECHO_LIMIT = 40


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


def parse_max_pixels(value: Any, *, field: str = "max_pixels") -> int | None:
    if value is None:
        return None
    return _bounded_int(value, field=field, low=1, high=10**10, what="a whole number of pixels")


# --- Background image, shadow, hard edges --------------------------------------

SHADOW_TYPES = ("none", "drop", "3D", "car")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def parse_shadow_type(value: Any, *, field: str = "shadow_type") -> str:
    """remove.bg's names: none (default), drop, 3D (any case), car."""
    text = _text(value)
    if text is None:
        return "none"
    by_lower = {name.lower(): name for name in SHADOW_TYPES}
    name = by_lower.get(text.lower())
    if name is None:
        raise OptionError(
            field, f"{field} must be one of {', '.join(SHADOW_TYPES)}; got {_echo(value)}."
        )
    return name


def parse_opacity(value: Any, *, field: str = "shadow_opacity") -> int | None:
    """A percentage from 0 to 100 (``%`` optional); blank is the shadow type's own."""
    if _text(value) is None:
        return None
    number = _percent(value)
    if number is None or not number.is_integer() or not 0 <= number <= 100:
        raise OptionError(
            field, f"{field} must be a whole number from 0 to 100; got {_echo(value)}."
        )
    return int(number)


def parse_image_digest(value: Any, *, field: str) -> str | None:
    """A background image as stored: the SHA-256 of its bytes (they travel with the job)."""
    text = _text(value)
    if text is None:
        return None
    if not _DIGEST.match(text.lower()):
        raise OptionError(field, f"{field} must be an image, not {_echo(value)}.")
    return text.lower()


# --- Edges (imaging.edges) ------------------------------------------------------

REFINE = ("none", "edges")


def parse_bool_on(value: Any, *, field: str) -> bool:
    """``parse_bool`` for a flag that is on by default: blank leaves it on."""
    if not isinstance(value, bool) and _text(value) is None:
        return True
    return parse_bool(value, field=field)


def parse_refine(value: Any, *, field: str = "refine") -> str:
    text = _text(value)
    if text is None:
        return "none"
    if text.lower() not in REFINE:
        raise OptionError(
            field,
            f"{field} must be none (the model's mask) or edges (the mask's edge refined "
            f"to follow the photo's); got {_echo(value)}.",
        )
    return text.lower()
