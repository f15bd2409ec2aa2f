"""The output options: one row each, the only place an option is declared.

A row says everything the service knows about an option: its name, how a
value sent over the wire is parsed, its default, which doors take it (the
seed API, remove.bg's API, the web page, batches), its name and error code
on remove.bg's door, its help text, how the web page shows it and how the
job's summary names it. Everything else is derived from ``OPTIONS``:

- ``OutputOptions``, the value the worker finishes a job with (a frozen
  dataclass made from the rows);
- the job's stored JSON (``OutputOptions.to_json`` / ``from_json``);
- request parsing on every door and the OpenAPI schema
  (``removal.option_fields``);
- the web page's Options panel (``templates/removal/_option_field.html``);
- the README's options table (``manage.py options_table``, checked by a test).

Adding an option: a row here, the step in ``finishing`` that honours it,
and its tests (docs/architecture.md walks through one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from imaging import parsers
from imaging.errors import OptionError
from imaging.parsers import (
    CHANNELS,
    MAX_DIMENSION,
    MAX_ERODE_SIZE,
    MAX_MARGIN_FRACTION,
    MAX_MARGIN_PX,
    NO_MARGIN,
    SIZES,
    Length,
)
from imaging.subject import FOREGROUND_MIN_ALPHA

# The doors a request comes through.
SEED = "seed"  # POST /paid/image/remove/background
REMOVEBG = "removebg"  # POST /v1.0/removebg
WEB = "web"  # the upload page
BATCH = "batch"  # POST /paid/image/remove/background/batch
DOORS = (SEED, REMOVEBG, WEB, BATCH)
# The seed API's field names, shared by its web page and its batches.
OUR_DOORS = frozenset({SEED, WEB, BATCH})
ALL_DOORS = frozenset(DOORS)

# The sizes the seed API and the web page offer (remove.bg's door: all of SIZES).
SEED_SIZES = ("full", "preview")


@dataclass(frozen=True)
class WebField:
    """How the upload page shows an option (``_option_field.html`` renders it)."""

    widget: str  # "select", "checkbox", "colour", "number" or "text"
    label: str  # also names the field in the page's error messages
    id: str
    advanced: bool = False  # under "Advanced"
    choices: tuple[tuple[str, str], ...] = ()  # (value, label); the first is the default
    checked_value: str = "true"  # what a ticked checkbox sends
    placeholder: str = ""
    hint: str = ""
    hint_hidden: bool = False  # shown by the page's script when it applies
    enabled_by: str = ""  # the id of a checkbox that must be ticked to send it
    initial: str = ""
    pair: str = ""  # fields with the same pair name sit side by side


@dataclass(frozen=True)
class Option:
    """One output option. ``name`` is its attribute on ``OutputOptions`` and
    its key in the job's JSON; ``wire_name`` is the field a door reads."""

    name: str
    parse: Callable[..., Any]  # (stored or sent value, *, field) -> value; OptionError
    default: Any
    help: str
    kind: str  # the schema's type: "choice", "flag", "integer" or "text"
    field_name: str = ""  # the field a door reads, when not ``name`` (size -> max_pixels)
    read: Callable[..., Any] | None = None  # the wire parser, when not ``parse``
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    doors: frozenset[str] = OUR_DOORS
    # A door that offers fewer choices, or that has a default of its own
    # (remove.bg's size=preview and format=auto), as wire values.
    door_choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    door_defaults: Mapping[str, str] = field(default_factory=dict)
    removebg_name: str = ""  # remove.bg's field name, when the option is on its door
    to_json: Callable[[Any], Any] = lambda value: value
    summary: Callable[[Any, dict], str | None] | None = None  # words for the job's summary
    web: WebField | None = None

    @property
    def wire_name(self) -> str:
        return self.field_name or self.name

    @property
    def error_code(self) -> str:
        """The code of a refusal of this option's value, as remove.bg names them."""
        return f"invalid_{self.wire_name}"

    def read_wire(self, value: Any, *, door: str, field_label: str | None = None) -> Any:
        """The value a door sent (None: not sent) as the option's value."""
        shown = field_label or self.wire_name
        if value is None:
            value = self.door_defaults.get(door)
            if value is None:
                return self.default
        reader = self.read or self.parse
        choices = self.door_choices.get(door)
        if choices is not None:
            return reader(value, field=shown, choices=choices)
        return reader(value, field=shown)


# --- How values are stored and summarised --------------------------------------


def _colour_json(value):
    return None if value is None else "#" + "".join(f"{c:02x}" for c in value)


def _lengths_json(value):
    return None if value is None else [str(x) for x in value]


def _position_json(value):
    return list(value) if isinstance(value, tuple) else value


def _shown_colour(value: str) -> str:
    """#rrggbbaa as stored, shown as #rrggbb when opaque."""
    return value[:7] if len(value) == 9 and value.lower().endswith("ff") else value


def _shown_lengths(values: list[str]) -> str:
    return values[0] if len(set(values)) == 1 else " ".join(values)


def _crop_words(value, options: dict) -> str | None:
    if not value:
        return None
    margin = options.get("crop_margin")
    shown = _shown_lengths(margin) if margin else "0px"
    return "crop" if shown in ("0px", "0%") else f"crop, margin {shown}"


def _pixels_words(value, options: dict) -> str | None:
    if value is None:
        return None
    return "preview" if value == SIZES["preview"] else f"at most {value:,} pixels"


def _box_words(value, options: dict) -> str | None:
    width, height = options.get("max_width"), options.get("max_height")
    if not (width or height):
        return None
    return f"max {width or '–'} × {height or '–'} px"


_MATTING_DEFAULTS = (240, 10, 10)


def _matting_words(value, options: dict) -> str | None:
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


def _position_words(value, options: dict) -> str | None:
    if isinstance(value, list):
        return f"position {value[0]:g}% {value[1]:g}%"
    return None


def _words_if_set(template: str) -> Callable[[Any, dict], str | None]:
    return lambda value, options: template.format(value) if value else None


def _with_field(parser: Callable[..., Any], **fixed: Any) -> Callable[..., Any]:
    """A parser called as ``parse(value, field=...)``, with fixed arguments."""
    return lambda value, *, field, **more: parser(value, field=field, **fixed, **more)


def _optional_help(text: str) -> str:
    return text + " Optional; a bad value is a 400 naming the field, before any charge."


# --- The table -------------------------------------------------------------------

OPTIONS: tuple[Option, ...] = (
    Option(
        name="format",
        parse=_with_field(parsers.parse_format, allow_auto=True),
        default="png",
        kind="choice",
        choices=("png", "jpg", "webp", "zip", "auto"),
        doors=ALL_DOORS,
        door_defaults=MappingProxyType({REMOVEBG: "auto"}),
        removebg_name="format",
        help=_optional_help(
            "The output file: png (RGBA), webp (lossless, with alpha), jpg (no alpha: "
            "flattened on bg_color, white by default; jpeg is accepted too) or zip (color.jpg "
            "plus alpha.png); auto: jpg when an opaque bg_color leaves no transparency, else "
            "png (remove.bg's default). The file name and the download's Content-Type follow it."
        ),
        summary=lambda value, options: None,  # the summary always starts with the format
        web=WebField(
            widget="select",
            label="Format",
            id="opt-format",
            choices=(
                ("png", "PNG — transparent"),
                ("webp", "WEBP — transparent, smaller"),
                ("jpg", "JPG — no transparency"),
            ),
            hint="JPG has no transparency: the background is white unless you pick a colour.",
            hint_hidden=True,
        ),
    ),
    Option(
        name="channels",
        parse=parsers.parse_channels,
        default="rgba",
        kind="choice",
        choices=CHANNELS,
        doors=ALL_DOORS,
        removebg_name="channels",
        help=_optional_help("rgba: the cut-out; alpha: the mask alone, 8-bit grayscale."),
        summary=lambda value, options: "mask only" if value == "alpha" else None,
        web=WebField(
            widget="checkbox",
            label="Mask only (black and white)",
            id="opt-mask",
            checked_value="alpha",
        ),
    ),
    Option(
        name="bg_color",
        parse=parsers.parse_bg_color,
        default=None,
        kind="text",
        doors=ALL_DOORS,
        removebg_name="bg_color",
        to_json=_colour_json,
        help=_optional_help(
            "A background to composite the cut-out over: hex #RGB, #RGBA, #RRGGBB or "
            "#RRGGBBAA ('#' optional) or a CSS colour name (e.g. white). An alpha below 255 "
            "stays translucent in png and webp. Default: none (transparent)."
        ),
        summary=lambda value, options: f"background {_shown_colour(value)}" if value else None,
        web=WebField(
            widget="colour",
            label="Background colour",
            id="opt-bg-color",
            enabled_by="opt-bg",
            initial="#ffffff",
            hint="Unticked: transparent.",
        ),
    ),
    Option(
        name="crop",
        parse=parsers.parse_bool,
        default=False,
        kind="flag",
        doors=ALL_DOORS,
        removebg_name="crop",
        help=_optional_help(
            "true: cut the output to the subject's bounding box (alpha >= "
            f"{FOREGROUND_MIN_ALPHA}) plus crop_margin. No subject found: the job "
            "fails and is refunded."
        ),
        summary=_crop_words,
        web=WebField(widget="checkbox", label="Crop to the subject", id="opt-crop"),
    ),
    Option(
        name="crop_margin",
        parse=parsers.parse_crop_margin,
        default=NO_MARGIN,
        kind="text",
        doors=ALL_DOORS,
        removebg_name="crop_margin",
        to_json=_lengths_json,
        help=_optional_help(
            "With crop: the margin around the subject, in px or % of the subject (20, 20px, "
            "10%; or 2 or 4 values: top right bottom left), each side capped at "
            f"{MAX_MARGIN_FRACTION:.0%} of the subject or {MAX_MARGIN_PX} px."
        ),
        web=WebField(
            widget="text",
            label="Margin",
            id="opt-crop-margin",
            enabled_by="opt-crop",
            placeholder="e.g. 20px or 10%",
            hint="Pixels or % of the subject, at most half of it.",
        ),
    ),
    Option(
        name="max_pixels",
        field_name="size",
        parse=parsers.parse_max_pixels,
        read=parsers.parse_size,
        default=None,
        kind="choice",
        choices=tuple(SIZES),
        doors=ALL_DOORS,
        door_choices=MappingProxyType({SEED: SEED_SIZES, WEB: SEED_SIZES, BATCH: SEED_SIZES}),
        door_defaults=MappingProxyType({REMOVEBG: "preview"}),
        removebg_name="size",
        help=_optional_help(
            "full (default): the input's size (as displayed); preview: fit within "
            f"{SIZES['preview']:,} pixels, aspect kept. remove.bg's door also takes its other "
            "names (auto, small, regular, medium, hd, 4k, 50MP) and defaults to preview."
        ),
        summary=_pixels_words,
        web=WebField(
            widget="select",
            label="Size",
            id="opt-size",
            choices=(("full", "Full size"), ("preview", "Preview (up to 0.25 MP)")),
        ),
    ),
    Option(
        name="max_width",
        parse=_with_field(parsers.parse_dimension),
        default=None,
        kind="integer",
        minimum=1,
        maximum=MAX_DIMENSION,
        help=_optional_help(
            "Fit the output within this width in pixels, aspect kept; never upscales."
        ),
        summary=_box_words,
        web=WebField(
            widget="number",
            label="Max width (px)",
            id="opt-max-width",
            placeholder="any",
            pair="box",
            hint="Never larger than your photo; the aspect ratio is kept.",
        ),
    ),
    Option(
        name="max_height",
        parse=_with_field(parsers.parse_dimension),
        default=None,
        kind="integer",
        minimum=1,
        maximum=MAX_DIMENSION,
        help=_optional_help(
            "Fit the output within this height in pixels, aspect kept; never upscales."
        ),
        web=WebField(
            widget="number",
            label="Max height (px)",
            id="opt-max-height",
            placeholder="any",
            pair="box",
        ),
    ),
    Option(
        name="alpha_matting",
        parse=parsers.parse_bool,
        default=False,
        kind="flag",
        help=_optional_help(
            "true: refine the mask's edges with closed-form alpha matting (rembg's "
            "alpha_matting), bounded in time; slower."
        ),
        summary=_matting_words,
        web=WebField(
            widget="checkbox", label="Alpha matting (finer edges, slower)", id="opt-matting"
        ),
    ),
    Option(
        name="alpha_matting_foreground_threshold",
        parse=parsers.parse_threshold,
        default=240,
        kind="integer",
        minimum=0,
        maximum=255,
        help=_optional_help("With alpha_matting: mask values above this are surely foreground."),
        web=WebField(
            widget="number",
            label="Foreground threshold (0–255)",
            id="opt-fg-threshold",
            advanced=True,
            enabled_by="opt-matting",
            initial="240",
        ),
    ),
    Option(
        name="alpha_matting_background_threshold",
        parse=parsers.parse_threshold,
        default=10,
        kind="integer",
        minimum=0,
        maximum=255,
        help=_optional_help("With alpha_matting: mask values below this are surely background."),
        web=WebField(
            widget="number",
            label="Background threshold (0–255)",
            id="opt-bg-threshold",
            advanced=True,
            enabled_by="opt-matting",
            initial="10",
        ),
    ),
    Option(
        name="alpha_matting_erode_size",
        parse=parsers.parse_erode_size,
        default=10,
        kind="integer",
        minimum=0,
        maximum=MAX_ERODE_SIZE,
        help=_optional_help(
            "With alpha_matting: how far (px) the sure regions are eroded before solving."
        ),
        web=WebField(
            widget="number",
            label=f"Erode size (0–{MAX_ERODE_SIZE} px)",
            id="opt-erode",
            advanced=True,
            enabled_by="opt-matting",
            initial="10",
            hint="The thresholds apply with alpha matting.",
        ),
    ),
    Option(
        name="post_process_mask",
        parse=parsers.parse_bool,
        default=False,
        kind="flag",
        help=_optional_help(
            "true: smooth the mask (rembg's post_process_mask: opening, blur, threshold)."
        ),
        summary=_words_if_set("smoothed mask"),
        web=WebField(
            widget="checkbox", label="Smooth the mask", id="opt-post-process", advanced=True
        ),
    ),
    # --- Edges (imaging.edges) ---
    Option(
        name="decontaminate",
        parse=parsers.parse_bool_on,
        default=True,
        kind="flag",
        doors=ALL_DOORS,
        removebg_name="decontaminate",
        help=_optional_help(
            "true (default): clean the colours of the soft edge: where the mask is partly "
            "transparent, the subject's own colour is estimated so the old background does "
            "not show through (no halo in hair, no green fringe); the alpha stays the "
            "model's. false: the photo's colours as they are (rembg's default). Applies to "
            "the cut-out's colours (png, webp, zip, and jpg or bg_color flattened); alpha "
            "matting estimates colours itself."
        ),
        summary=lambda value, options: None if value else "edge colours as photographed",
        web=WebField(
            widget="select",
            label="Edge colours",
            id="opt-decontaminate",
            advanced=True,
            choices=(
                ("true", "Cleaned: no halo from the old background"),
                ("false", "As photographed"),
            ),
        ),
    ),
    Option(
        name="refine",
        parse=parsers.parse_refine,
        default="none",
        kind="choice",
        choices=parsers.REFINE,
        doors=ALL_DOORS,
        removebg_name="refine",
        help=_optional_help(
            "none (default): the model's mask, scaled up from 320x320; edges: its soft edge "
            "refined at full size with the photo as a guide (a guided filter), so it follows "
            "the photo's real edges; a little slower (about 0.1-0.3 s at 12 MP)."
        ),
        summary=lambda value, options: "edges refined" if value == "edges" else None,
        web=WebField(
            widget="select",
            label="Edges",
            id="opt-refine",
            advanced=True,
            choices=(
                ("none", "As the model draws them"),
                ("edges", "Refined to the photo's edges"),
            ),
        ),
    ),
    Option(
        name="roi",
        parse=parsers.parse_roi,
        default=None,
        kind="text",
        doors=frozenset({REMOVEBG}),
        removebg_name="roi",
        to_json=_lengths_json,
        help="Region of interest: 'x1 y1 x2 y2' in px or % of the input; outside it nothing "
        "is foreground.",
        summary=lambda value, options: f"region {' '.join(value)}" if value else None,
    ),
    Option(
        name="scale",
        parse=parsers.parse_scale,
        default=None,
        kind="text",
        doors=frozenset({REMOVEBG}),
        removebg_name="scale",
        help="'original' or 10%-100%: the subject's size relative to the canvas (centred "
        "unless position says otherwise).",
        summary=lambda value, options: f"scale {value:g}%" if value is not None else None,
    ),
    Option(
        name="position",
        parse=parsers.parse_position,
        default=None,
        kind="text",
        doors=frozenset({REMOVEBG}),
        removebg_name="position",
        to_json=_position_json,
        help="'original', 'center', or one or two percentages (horizontal, vertical) of the "
        "free space.",
        summary=_position_words,
    ),
)

OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def options_for(door: str, table: Iterable[Option] = OPTIONS) -> list[Option]:
    """The options ``door`` takes, in the table's order."""
    return [option for option in table if door in option.doors]


# --- The value -------------------------------------------------------------------


class _OptionsBehaviour:
    """What every ``OutputOptions`` can do, whatever the table holds."""

    _table: tuple[Option, ...] = ()

    def __post_init__(self) -> None:
        # Validate once, here, so a hand-built (or JSON-loaded) value that
        # slipped past a parser still fails as an OptionError: each value
        # must come back unchanged through its stored form and its parser.
        for option in self._table:
            value = getattr(self, option.name)
            if value == option.default:
                continue
            try:
                parsed = option.parse(option.to_json(value), field=option.name)
            except (TypeError, ValueError, AttributeError):
                parsed = _INVALID
            if parsed != value:
                raise OptionError(option.name, f"{option.name} has an invalid value: {value!r}.")

    @property
    def is_default(self) -> bool:
        return all(getattr(self, o.name) == o.default for o in self._table)

    @property
    def changes_geometry(self) -> bool:
        return self.crop or self.scale is not None or self.position not in (None, "original")

    def to_json(self, *, full: bool = False) -> dict:
        """The options as JSON values; only those that differ from the defaults unless ``full``."""
        result = {}
        for option in self._table:
            value = getattr(self, option.name)
            if full or value != option.default:
                result[option.name] = option.to_json(value)
        return result

    @classmethod
    def from_json(cls, data: dict):
        """The inverse of ``to_json`` (also takes the strings a form sends)."""
        if not isinstance(data, dict):
            raise OptionError("options", "options must be a JSON object.")
        by_name = {option.name: option for option in cls._table}
        values = {}
        for name, raw in data.items():
            option = by_name.get(name)
            if option is None:
                raise OptionError(name, f"{name} is not an output option.")
            values[name] = option.default if raw is None else option.parse(raw, field=name)
        return cls(**values)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


_INVALID = object()


def options_class(table: Iterable[Option] = OPTIONS, name: str = "OutputOptions") -> type:
    """A frozen dataclass with one field per option of ``table``."""
    table = tuple(table)
    cls = dataclasses.make_dataclass(
        name,
        [(o.name, Any, dataclasses.field(default=o.default)) for o in table],
        bases=(_OptionsBehaviour,),
        frozen=True,
        namespace={"_table": table, "__module__": __name__},
    )
    cls.__doc__ = "Everything a customer may ask of the result; the defaults give the plain PNG."
    return cls


OutputOptions = options_class()
DEFAULT_OPTIONS = OutputOptions()


def summarize(*, options: dict, output_format: str, table: Iterable[Option] = OPTIONS) -> str:
    """A job's options in a few words, e.g. "JPG · background #1e90ff · crop, margin 10%"."""
    options = options or {}
    parts = [(options.get("format") or output_format or "png").upper()]
    for option in table:
        if option.summary is None or option.name not in options:
            continue
        words = option.summary(options[option.name], options)
        if words:
            parts.append(words)
    if len(parts) == 1:
        parts.append("full size, transparent")
    return " · ".join(parts)


def resolve_auto_format(options):
    """remove.bg's ``format=auto``: JPG when an opaque ``bg_color`` leaves no
    transparency, else PNG (a mask alone is always PNG). Resolved before the
    job is stored, so the file name carries the real extension."""
    if options.format != "auto":
        return options
    opaque = options.bg_color is not None and options.bg_color[3] == 255
    fmt = "jpg" if opaque and options.channels == "rgba" else "png"
    return dataclasses.replace(options, format=fmt)


__all__ = [
    "ALL_DOORS",
    "BATCH",
    "DEFAULT_OPTIONS",
    "DOORS",
    "Length",
    "OPTIONS",
    "OPTIONS_BY_NAME",
    "Option",
    "OptionError",
    "OutputOptions",
    "REMOVEBG",
    "SEED",
    "SEED_SIZES",
    "WEB",
    "WebField",
    "options_class",
    "options_for",
    "resolve_auto_format",
    "summarize",
]
