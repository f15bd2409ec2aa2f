"""What an option row is: ``Option`` and ``WebField``, the doors, and the
value class made from a table of rows (``options_class``).

The rows themselves are the table in ``imaging.options``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imaging.errors import OptionError

# The doors a request comes through.
SEED = "seed"  # POST /paid/image/remove/background
REMOVEBG = "removebg"  # POST /v1.0/removebg
WEB = "web"  # the upload page
BATCH = "batch"  # POST /paid/image/remove/background/batch
DOORS = (SEED, REMOVEBG, WEB, BATCH)
# The seed API's field names, shared by its web page and its batches.
OUR_DOORS = frozenset({SEED, WEB, BATCH})
ALL_DOORS = OUR_DOORS | {REMOVEBG}


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
    values: str = ""  # the values it takes, in words (the README's table)
    shown_default: str = ""  # the default, in words, when its value says too little
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


# --- The value made from a table -------------------------------------------------


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


def options_class(
    table: Iterable[Option], name: str = "OutputOptions", module: str = __name__
) -> type:
    """A frozen dataclass with one field per option of ``table``."""
    table = tuple(table)
    cls = dataclasses.make_dataclass(
        name,
        [(o.name, Any, dataclasses.field(default=o.default)) for o in table],
        bases=(_OptionsBehaviour,),
        frozen=True,
        namespace={"_table": table, "__module__": module},
    )
    cls.__doc__ = "Everything a customer may ask of the result; the defaults give the plain PNG."
    return cls
