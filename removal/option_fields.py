"""What the doors show of the option table: the OpenAPI request schema and
the web page's Options panel, both derived from ``imaging.options.OPTIONS``.

Parsing a request is ``submissions.parse_options``; this module only
describes the options, so nothing here can drift from what is parsed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rest_framework import serializers

from imaging.options import OPTIONS, WEB, Option, options_for


def schema_field(option: Option, door: str) -> serializers.Field:
    """The DRF field that documents ``option`` on ``door`` (schema only)."""
    common = {"required": False, "help_text": option.help}
    if option.kind == "image":
        return serializers.FileField(**common)
    if option.kind == "choice":
        choices = option.door_choices.get(door, option.choices)
        default = option.door_defaults.get(door)
        if default is None and isinstance(option.default, str):
            default = option.default
        if default is None and option.wire_name == "size":
            default = choices[0]
        if default is not None:
            common["default"] = default
        return serializers.ChoiceField(choices=list(choices), **common)
    if option.kind == "flag":
        return serializers.BooleanField(default=bool(option.default), **common)
    if option.kind == "integer":
        if option.default is not None:
            common["default"] = option.default
        return serializers.IntegerField(
            min_value=option.minimum, max_value=option.maximum, **common
        )
    return serializers.CharField(**common)


def input_serializer(
    door: str,
    *,
    name: str,
    fields: dict[str, serializers.Field],
    doc: str,
    table: Iterable[Option] = OPTIONS,
) -> type[serializers.Serializer]:
    """A serializer class for ``door``'s request schema: the door's own
    ``fields`` (its image sources, model, webhook) then every option it takes."""
    attrs: dict = dict(fields)
    for option in options_for(door, table):
        attrs[option.wire_name] = schema_field(option, door)
        if option.url_field:
            attrs[option.url_field] = serializers.URLField(
                required=False,
                help_text=f"Instead of {option.wire_name}: the image's URL. {option.help}",
            )
    attrs["__doc__"] = doc
    attrs["__module__"] = __name__
    return type(name, (serializers.Serializer,), attrs)


@dataclass(frozen=True)
class PanelField:
    """One control of the Options panel, as ``_option_field.html`` draws it."""

    option: Option
    name: str  # the form field's name (the seed API's)

    @property
    def web(self):
        return self.option.web

    @property
    def number_min(self):
        return self.option.minimum

    @property
    def number_max(self):
        return self.option.maximum

    @property
    def url_name(self) -> str:
        """An image option's URL field (``bg_image_url``), beside its file input."""
        return self.option.url_field


@dataclass(frozen=True)
class PanelRow:
    """One field, or several side by side (``WebField.pair``)."""

    fields: tuple[PanelField, ...]

    @property
    def hint(self) -> str:
        return " ".join(f.web.hint for f in self.fields if f.web.hint)


def web_panel(table: Iterable[Option] = OPTIONS) -> dict[str, list[PanelRow]]:
    """The web page's Options panel: its main rows and its "Advanced" rows."""
    panel: dict[str, list[PanelRow]] = {"main": [], "advanced": []}
    for option in options_for(WEB, table):
        if option.web is None:
            continue
        rows = panel["advanced" if option.web.advanced else "main"]
        field = PanelField(option=option, name=option.wire_name)
        last = rows[-1] if rows else None
        if option.web.pair and last is not None and last.fields[-1].web.pair == option.web.pair:
            rows[-1] = PanelRow(fields=last.fields + (field,))
        else:
            rows.append(PanelRow(fields=(field,)))
    return panel


def web_labels(table: Iterable[Option] = OPTIONS) -> dict[str, str]:
    """Form field name -> the label the page shows (for error messages)."""
    return {o.wire_name: o.web.label for o in options_for(WEB, table) if o.web is not None}
