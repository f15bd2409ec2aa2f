"""``{{ job|options_summary }}``: the output options a job used, in a few words.

The job page, the dashboard and the upload page's script (through the
status JSON the page polls) all show the same sentence.
"""

from django import template

from removal.finishing import SIZES

register = template.Library()

_PREVIEW_PIXELS = SIZES["preview"]
_MATTING_DEFAULTS = (240, 10, 10)


def _colour(value: str) -> str:
    """#rrggbbaa as stored, shown as #rrggbb when opaque."""
    return value[:7] if len(value) == 9 and value.lower().endswith("ff") else value


def _lengths(values: list[str]) -> str:
    return values[0] if len(set(values)) == 1 else " ".join(values)


def summarize(*, options: dict, output_format: str) -> str:
    """E.g. "JPG · background #1e90ff · crop, margin 10% · preview"."""
    options = options or {}
    parts = [(options.get("format") or output_format or "png").upper()]
    if options.get("channels") == "alpha":
        parts.append("mask only")
    if options.get("bg_color"):
        parts.append(f"background {_colour(options['bg_color'])}")
    if options.get("crop"):
        margin = options.get("crop_margin")
        shown = _lengths(margin) if margin else "0px"
        parts.append("crop" if shown in ("0px", "0%") else f"crop, margin {shown}")
    if options.get("max_pixels") == _PREVIEW_PIXELS:
        parts.append("preview")
    elif options.get("max_pixels"):
        parts.append(f"at most {options['max_pixels']:,} pixels")
    width, height = options.get("max_width"), options.get("max_height")
    if width or height:
        parts.append(f"max {width or '–'} × {height or '–'} px")
    if options.get("alpha_matting"):
        thresholds = (
            options.get("alpha_matting_foreground_threshold", 240),
            options.get("alpha_matting_background_threshold", 10),
            options.get("alpha_matting_erode_size", 10),
        )
        if thresholds == _MATTING_DEFAULTS:
            parts.append("alpha matting")
        else:
            parts.append("alpha matting ({}/{}/erode {})".format(*thresholds))
    if options.get("post_process_mask"):
        parts.append("smoothed mask")
    if options.get("roi"):
        parts.append(f"region {' '.join(options['roi'])}")
    if options.get("scale") is not None:
        parts.append(f"scale {options['scale']:g}%")
    position = options.get("position")
    if isinstance(position, list):
        parts.append(f"position {position[0]:g}% {position[1]:g}%")
    if len(parts) == 1:
        parts.append("full size, transparent")
    return " · ".join(parts)


@register.filter
def options_summary(job) -> str:
    return summarize(options=job.options, output_format=job.output_format)
