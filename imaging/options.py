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
  (``doors.option_fields``);
- the web page's Options panel (``templates/removal/_option_field.html``);
- the README's options table (``manage.py options_table``, checked by a test).

Adding an option: a row here, the step in ``finishing`` that honours it,
and its tests (docs/architecture.md walks through one).
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

from imaging import parsers
from imaging.formats import FORMATS
from imaging.option_spec import (
    ALL_DOORS,
    BATCH,
    DOORS,
    REMOVEBG,
    SEED,
    WEB,
    Option,
    OptionError,
    WebField,
    options_class,
)
from imaging.option_values import (
    BACKGROUND_CONFLICT,
    SHADOW_OPACITY,
    OutputBehaviour,
    background_conflict,
    box_words,
    colour_json,
    crop_words,
    lengths_json,
    matting_words,
    pixels_words,
    position_json,
    position_words,
    resolve_auto_format,
    shadow_words,
    shown_colour,
    with_field,
    words_if_set,
)
from imaging.parsers import (
    CHANNELS,
    MAX_DIMENSION,
    MAX_ERODE_SIZE,
    MAX_MARGIN_FRACTION,
    MAX_MARGIN_PX,
    NO_MARGIN,
    SHADOW_TYPES,
    SIZES,
    Length,
)
from imaging.subject import FOREGROUND_MIN_ALPHA

# What ``format`` accepts: every output format, or remove.bg's "auto".
REQUESTED_FORMATS = (*FORMATS, "auto")
# The sizes the seed API and the web page offer (remove.bg's door: all of SIZES).
SEED_SIZES = ("full", "preview")


# --- The table -------------------------------------------------------------------

OPTIONS: tuple[Option, ...] = (
    Option(
        name="format",
        values="`png`, `webp`, `jpg` (or `jpeg`), `zip`, `auto`",
        shown_default="`png` (remove.bg: `auto`)",
        parse=with_field(parsers.parse_format, allow_auto=True),
        default="png",
        kind="choice",
        choices=REQUESTED_FORMATS,
        doors=ALL_DOORS,
        door_defaults=MappingProxyType({REMOVEBG: "auto"}),
        removebg_name="format",
        help=(
            "The output file: png (RGBA), webp (lossless, with alpha), jpg (no alpha: "
            "flattened on bg_color, white by default; jpeg is accepted too), avif (lossy, with "
            "alpha, the smallest) or zip (color.jpg plus alpha.png); auto: jpg when an opaque "
            "bg_color or a background image leaves no transparency, else png (remove.bg's "
            "default). The file name and the download's Content-Type follow it."
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
                ("avif", "AVIF — transparent, smallest"),
            ),
            hint="JPG has no transparency: the background is white unless you pick a colour.",
            hint_hidden=True,
        ),
    ),
    Option(
        name="channels",
        values="`rgba`, `alpha`",
        parse=parsers.parse_channels,
        default="rgba",
        kind="choice",
        choices=CHANNELS,
        doors=ALL_DOORS,
        removebg_name="channels",
        help="rgba: the cut-out; alpha: the mask alone, 8-bit grayscale.",
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
        values="hex `#RGB`, `#RGBA`, `#RRGGBB`, `#RRGGBBAA` (`#` optional) or a CSS colour "
        "name (`white`, `dodgerblue`)",
        shown_default="none (transparent)",
        parse=parsers.parse_bg_color,
        default=None,
        kind="text",
        doors=ALL_DOORS,
        removebg_name="bg_color",
        to_json=colour_json,
        help=(
            "A background to composite the cut-out over: hex #RGB, #RGBA, #RRGGBB or "
            "#RRGGBBAA ('#' optional) or a CSS colour name (e.g. white). An alpha below 255 "
            "stays translucent in png and webp. Default: none (transparent)."
        ),
        summary=lambda value, options: f"background {shown_colour(value)}" if value else None,
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
        values="`true`, `false`",
        parse=parsers.parse_bool,
        default=False,
        kind="flag",
        doors=ALL_DOORS,
        removebg_name="crop",
        help=(
            "true: cut the output to the subject's bounding box (alpha >= "
            f"{FOREGROUND_MIN_ALPHA}) plus crop_margin. No subject found: the job "
            "fails and is refunded."
        ),
        summary=crop_words,
        web=WebField(widget="checkbox", label="Crop to the subject", id="opt-crop"),
    ),
    Option(
        name="crop_margin",
        values="`20`, `20px`, `10%` (of the subject), or 2 or 4 values (top right bottom left)",
        shown_default="`0`",
        parse=parsers.parse_crop_margin,
        default=NO_MARGIN,
        kind="text",
        doors=ALL_DOORS,
        removebg_name="crop_margin",
        to_json=lengths_json,
        help=(
            "With crop: the margin around the subject, in px or % of the subject (20, 20px, "
            "10%; or 2 or 4 values: top right bottom left), each side capped at "
            f"{MAX_MARGIN_FRACTION:.0%} of the subject or {MAX_MARGIN_PX} px; past the photo's "
            "edge it is transparent (or bg_color)."
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
        values="`full`, `preview` (remove.bg also: `auto`, `small`, `regular`, `medium`, `hd`, "
        "`4k`, `50MP`)",
        shown_default="`full` (remove.bg: `preview`)",
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
        help=(
            "full (default): the input's size (as displayed); preview: fit within "
            f"{SIZES['preview']:,} pixels, aspect kept. remove.bg's door also takes its other "
            "names (auto, small, regular, medium, hd, 4k, 50MP) and defaults to preview."
        ),
        summary=pixels_words,
        web=WebField(
            widget="select",
            label="Size",
            id="opt-size",
            choices=(("full", "Full size"), ("preview", "Preview (up to 0.25 MP)")),
        ),
    ),
    Option(
        name="max_width",
        values="whole pixels, 1 to 65,500",
        shown_default="none",
        parse=with_field(parsers.parse_dimension),
        default=None,
        kind="integer",
        minimum=1,
        maximum=MAX_DIMENSION,
        help=("Fit the output within this width in pixels, aspect kept; never upscales."),
        summary=box_words,
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
        values="whole pixels, 1 to 65,500",
        shown_default="none",
        parse=with_field(parsers.parse_dimension),
        default=None,
        kind="integer",
        minimum=1,
        maximum=MAX_DIMENSION,
        help=("Fit the output within this height in pixels, aspect kept; never upscales."),
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
        values="`true`, `false`",
        parse=parsers.parse_bool,
        default=False,
        kind="flag",
        help=(
            "true: refine the mask's edges with closed-form alpha matting (rembg's "
            "alpha_matting), solved on at most 1 MP and on the edge band only, so a 12 MP "
            "photo stays within REMOVAL_JOB_TIMEOUT; slower."
        ),
        summary=matting_words,
        web=WebField(
            widget="checkbox", label="Alpha matting (finer edges, slower)", id="opt-matting"
        ),
    ),
    Option(
        name="alpha_matting_foreground_threshold",
        values="0 to 255",
        parse=parsers.parse_threshold,
        default=240,
        kind="integer",
        minimum=0,
        maximum=255,
        help="With alpha_matting: mask values above this are surely foreground.",
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
        values="0 to 255",
        parse=parsers.parse_threshold,
        default=10,
        kind="integer",
        minimum=0,
        maximum=255,
        help="With alpha_matting: mask values below this are surely background.",
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
        values="0 to 40",
        parse=parsers.parse_erode_size,
        default=10,
        kind="integer",
        minimum=0,
        maximum=MAX_ERODE_SIZE,
        help=("With alpha_matting: how far (px) the sure regions are eroded before solving."),
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
        values="`true`, `false`",
        parse=parsers.parse_bool,
        default=False,
        kind="flag",
        help=("true: smooth the mask (rembg's post_process_mask: opening, blur, threshold)."),
        summary=words_if_set("smoothed mask"),
        web=WebField(
            widget="checkbox", label="Smooth the mask", id="opt-post-process", advanced=True
        ),
    ),
    # --- Edges (imaging.edges) ---
    Option(
        name="decontaminate",
        values="`true`, `false`",
        parse=parsers.parse_bool_on,
        default=True,
        kind="flag",
        doors=ALL_DOORS,
        removebg_name="decontaminate",
        help=(
            "true (default): clean the soft edge's colours: where the mask is partly "
            "transparent the subject's own colour is estimated, so the old background does "
            "not show through (no halo in hair, no green fringe); the alpha stays the model's. "
            "false: the photo's colours (rembg's default). Alpha matting estimates colours "
            "itself; a mask alone has none."
        ),
        summary=lambda value, options: None if value else "edge colours as photographed",
        web=WebField(
            widget="checkbox",
            label="Keep edge colours as photographed (no cleaning)",
            id="opt-decontaminate",
            checked_value="false",
            advanced=True,
        ),
    ),
    Option(
        name="refine",
        values="`none`, `edges`",
        parse=parsers.parse_refine,
        default="none",
        kind="choice",
        choices=parsers.REFINE,
        doors=ALL_DOORS,
        removebg_name="refine",
        help=(
            "none (default): the model's mask, scaled up from 320x320; edges: its soft edge "
            "refined at full size with the photo as a guide (a guided filter), so it follows "
            "the photo's real edges; a little slower."
        ),
        summary=lambda value, options: "edges refined" if value == "edges" else None,
        web=WebField(
            widget="checkbox",
            label="Refine edges to follow the photo (full size)",
            id="opt-refine",
            checked_value="edges",
            advanced=True,
        ),
    ),
    Option(
        name="roi",
        values="`x1 y1 x2 y2` in px or % of the input",
        shown_default="the whole image",
        parse=parsers.parse_roi,
        default=None,
        kind="text",
        doors=frozenset({REMOVEBG}),
        removebg_name="roi",
        to_json=lengths_json,
        help="Region of interest: 'x1 y1 x2 y2' in px or % of the input; outside it nothing "
        "is foreground.",
        summary=lambda value, options: f"region {' '.join(value)}" if value else None,
    ),
    Option(
        name="scale",
        values="`original`, or 10 % to 100 %",
        shown_default="`original`",
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
        values="`original`, `center`, or one or two percentages",
        shown_default="`original` (`center` with a `scale`)",
        parse=parsers.parse_position,
        default=None,
        kind="text",
        doors=frozenset({REMOVEBG}),
        removebg_name="position",
        to_json=position_json,
        help="'original', 'center', or one or two percentages (horizontal, vertical) of the "
        "free space.",
        summary=position_words,
    ),
    # --- A background image, a shadow, hard edges ----------------------------
    Option(
        name="bg_image",
        field_name="bg_image_file",
        url_field="bg_image_url",
        parse=parsers.parse_image_digest,
        default=None,
        kind="image",
        doors=frozenset({SEED, REMOVEBG, WEB}),
        removebg_name="bg_image_file",
        help=(
            "A background image under the cut-out: a file part (bg_image_file) or a URL "
            "(bg_image_url, fetched like image_url), any input format. It is scaled to cover "
            "the output and centred (remove.bg's rule); not with bg_color. Checked (format, "
            "size, decode) before the charge, like the image itself."
        ),
        summary=words_if_set("background image"),
        web=WebField(
            widget="file",
            label="Background image",
            id="opt-bg-image",
            placeholder="or an image URL",
            hint="Covers the whole result, centred; not with a background colour.",
        ),
    ),
    Option(
        name="shadow_type",
        parse=parsers.parse_shadow_type,
        default="none",
        kind="choice",
        choices=SHADOW_TYPES,
        doors=ALL_DOORS,
        removebg_name="shadow_type",
        help=(
            "A shadow computed from the mask, under the subject, on the background "
            "(transparent, a colour or an image): drop (offset and blurred, from the subject's "
            "size), 3D (cast on the ground behind the subject, with a contact shadow), car (a "
            "contact shadow under the subject, for products and cars) or none. With crop, the "
            "output grows to keep the shadow whole."
        ),
        summary=shadow_words,
        web=WebField(
            widget="select",
            label="Shadow",
            id="opt-shadow",
            choices=(
                ("none", "None"),
                ("drop", "Drop shadow"),
                ("3D", "Cast on the ground (3D)"),
                ("car", "Contact shadow (products, cars)"),
            ),
            pair="shadow",
        ),
    ),
    Option(
        name="shadow_opacity",
        parse=parsers.parse_opacity,
        default=None,
        kind="integer",
        minimum=0,
        maximum=100,
        doors=ALL_DOORS,
        removebg_name="shadow_opacity",
        help=(
            "The shadow's opacity, 0-100 %; default: the shadow type's own "
            + ", ".join(f"{kind} {SHADOW_OPACITY[kind]}" for kind in SHADOW_TYPES[1:])
            + "."
        ),
        web=WebField(
            widget="number",
            label="Opacity (%)",
            id="opt-shadow-opacity",
            placeholder="auto",
            pair="shadow",
        ),
    ),
    Option(
        name="add_shadow",
        parse=parsers.parse_bool,
        default=False,
        kind="flag",
        doors=ALL_DOORS,
        removebg_name="add_shadow",
        help=(
            "remove.bg's older switch: true is shadow_type=car (a contact shadow) when "
            "shadow_type is not given."
        ),
    ),
    Option(
        name="semitransparency",
        parse=parsers.parse_bool,
        default=True,
        kind="flag",
        doors=ALL_DOORS,
        removebg_name="semitransparency",
        help=(
            "true (default): soft edges and see-through parts keep their partial alpha. "
            "false: a hard-edged, opaque subject (alpha 0 or 255), edge colours taken from "
            "inside the subject so no background halo shows."
        ),
        summary=lambda value, options: None if value else "hard edges",
        web=WebField(
            widget="checkbox",
            label="Hard edges (no semi-transparency)",
            id="opt-hard-edges",
            checked_value="false",
            advanced=True,
        ),
    ),
)

OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def options_for(door: str, table: Iterable[Option] = OPTIONS) -> list[Option]:
    """The options ``door`` takes, in the table's order."""
    return [option for option in table if door in option.doors]


OutputOptions = options_class(OPTIONS, module=__name__, base=OutputBehaviour)
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


__all__ = [
    "ALL_DOORS",
    "BACKGROUND_CONFLICT",
    "background_conflict",
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
