"""How option values are stored and named: the JSON forms and the summary
words the rows of the option table (``imaging.options``) point to."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from imaging.errors import OptionError
from imaging.option_spec import OptionsBehaviour
from imaging.parsers import SIZES


def colour_json(value):
    return None if value is None else "#" + "".join(f"{c:02x}" for c in value)


def lengths_json(value):
    return None if value is None else [str(x) for x in value]


def position_json(value):
    return list(value) if isinstance(value, tuple) else value


def shown_colour(value: str) -> str:
    """#rrggbbaa as stored, shown as #rrggbb when opaque."""
    return value[:7] if len(value) == 9 and value.lower().endswith("ff") else value


def shown_lengths(values: list[str]) -> str:
    return values[0] if len(set(values)) == 1 else " ".join(values)


def crop_words(value, options: dict) -> str | None:
    if not value:
        return None
    margin = options.get("crop_margin")
    shown = shown_lengths(margin) if margin else "0px"
    return "crop" if shown in ("0px", "0%") else f"crop, margin {shown}"


def pixels_words(value, options: dict) -> str | None:
    if value is None:
        return None
    return "preview" if value == SIZES["preview"] else f"at most {value:,} pixels"


def box_words(value, options: dict) -> str | None:
    width, height = options.get("max_width"), options.get("max_height")
    if not (width or height):
        return None
    return f"max {width or '–'} × {height or '–'} px"


_MATTING_DEFAULTS = (240, 10, 10)


def matting_words(value, options: dict) -> str | None:
    if not value:
        return None
    thresholds = (
        options.get("alpha_matting_foreground_threshold", 240),
        options.get("alpha_matting_background_threshold", 10),
        options.get("alpha_matting_erode_size", 10),
    )
    if thresholds == _MATTING_DEFAULTS:
        return "alpha matting"
    return "alpha matting ({}/{}/erode {})".format(*thresholds)


def position_words(value, options: dict) -> str | None:
    if isinstance(value, list):
        return f"position {value[0]:g}% {value[1]:g}%"
    return None


# A shadow's opacity when shadow_opacity is not given, per shadow type (%).
SHADOW_OPACITY = {"drop": 50, "3D": 60, "car": 75}


def shadow_words(value, options: dict) -> str | None:
    kind = value if value != "none" else ("car" if options.get("add_shadow") else None)
    if kind is None:
        return None
    opacity = options.get("shadow_opacity")
    opacity = SHADOW_OPACITY[kind] if opacity is None else opacity
    return f"{kind} shadow {opacity}%"


def words_if_set(template: str) -> Callable[[Any, dict], str | None]:
    return lambda value, options: template.format(value) if value else None


def with_field(parser: Callable[..., Any], **fixed: Any) -> Callable[..., Any]:
    """A parser called as ``parse(value, field=...)``, with fixed arguments."""
    return lambda value, *, field, **more: parser(value, field=field, **fixed, **more)


# --- What OutputOptions adds to the table's values ---------------------------------

BACKGROUND_CONFLICT = (
    "{bg_color} and a background image ({bg_image_url} or {bg_image_file}) cannot both be "
    "given: send one background."
)


def background_conflict(names: Mapping[str, str] | None = None) -> str:
    """BACKGROUND_CONFLICT naming the fields as a door does (``names``: wire name ->
    what the door calls it; the wire names themselves by default)."""
    fields = ("bg_color", "bg_image_url", "bg_image_file")
    return BACKGROUND_CONFLICT.format(**{name: (names or {}).get(name, name) for name in fields})


class OutputBehaviour(OptionsBehaviour):
    """What the service's own table adds: one background, and the shadow to draw."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if getattr(self, "bg_color", None) is not None and getattr(self, "bg_image", None):
            raise OptionError("bg_color", background_conflict())

    @property
    def shadow(self) -> str:
        """The shadow to draw: shadow_type, or remove.bg's add_shadow=true as "car"."""
        kind = getattr(self, "shadow_type", "none")
        if kind == "none" and getattr(self, "add_shadow", False):
            return "car"
        return kind

    @property
    def shadow_strength(self) -> float:
        """The shadow's opacity, 0-1 (shadow_opacity, else the type's own)."""
        opacity = getattr(self, "shadow_opacity", None)
        return (SHADOW_OPACITY.get(self.shadow, 0) if opacity is None else opacity) / 100.0


def resolve_auto_format(options, *, opaque_background: bool = False):
    """remove.bg's ``format=auto``: JPG when an opaque ``bg_color`` or an
    opaque background image (``opaque_background``) leaves no transparency,
    else PNG (a mask alone is always PNG). Resolved before the job is
    stored, so the file name carries the real extension."""
    if options.format != "auto":
        return options
    opaque = (options.bg_color is not None and options.bg_color[3] == 255) or (
        options.bg_image is not None and opaque_background
    )
    fmt = "jpg" if opaque and options.channels == "rgba" else "png"
    return options.replace(format=fmt)
