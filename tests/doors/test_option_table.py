"""The option table is the one place an option is declared: everything a door
shows or parses of an option derives from its row."""

from pathlib import Path

import pytest
from django.conf import settings
from django.template.loader import render_to_string

from doors.option_fields import input_serializer, options_markdown, web_panel
from doors.removebg import RemoveBgInputSerializer
from doors.seed_api import RemoveBackgroundInputSerializer
from imaging import parsers
from imaging.options import (
    ALL_DOORS,
    OPTIONS,
    REMOVEBG,
    SEED,
    WEB,
    Option,
    WebField,
    options_class,
    options_for,
    summarize,
)
from removal.submissions import Fields, InvalidOption, parse_options

# An option that does not exist, declared the way every real one is.
SEPIA = Option(
    name="sepia",
    parse=parsers.parse_bool,
    default=False,
    kind="flag",
    doors=ALL_DOORS,
    removebg_name="sepia",
    values="`true`, `false`",
    help="true: tint the cut-out in sepia.",
    summary=lambda value, options: "sepia" if value else None,
    web=WebField(widget="checkbox", label="Sepia tint", id="opt-sepia"),
)
TABLE = (*OPTIONS, SEPIA)


def test_an_option_added_to_the_table_reaches_the_parser_of_every_door_it_names():
    for door in (SEED, WEB, REMOVEBG):
        options = parse_options(Fields({"sepia": "true"}), door=door, table=TABLE)
        assert options.sepia is True, door
        assert parse_options(Fields({}), door=door, table=TABLE).sepia is False, door


def test_an_option_added_to_the_table_is_refused_by_its_own_code_and_name():
    with pytest.raises(InvalidOption) as refused:
        parse_options(Fields({"sepia": "maybe"}), door=SEED, table=TABLE)
    assert refused.value.code == "invalid_sepia"
    assert "sepia must be true or false" in refused.value.message
    # The web page names the field by its label.
    with pytest.raises(InvalidOption) as on_the_page:
        parse_options(Fields({"sepia": "maybe"}), door=WEB, table=TABLE)
    assert "Sepia tint must be true or false" in on_the_page.value.message


def test_an_option_added_to_the_table_is_in_each_doors_schema():
    for door in (SEED, REMOVEBG):
        serializer = input_serializer(door, name="Probe", fields={}, doc="", table=TABLE)()
        field = serializer.fields["sepia"]
        assert type(field).__name__ == "BooleanField"
        assert "sepia" in field.help_text


def test_an_option_added_to_the_table_is_on_the_web_page_form():
    rows = [row for row in web_panel(TABLE)["main"] if row.fields[0].name == "sepia"]
    assert len(rows) == 1
    html = render_to_string("removal/_option_row.html", {"row": rows[0]})
    assert 'type="checkbox" id="opt-sepia" name="sepia" value="true"' in html
    assert "Sepia tint" in html


def test_an_option_added_to_the_table_is_stored_and_summarised():
    cls = options_class(TABLE)
    stored = cls(sepia=True).to_json()
    assert stored == {"sepia": True}
    assert cls.from_json(stored).sepia is True
    assert summarize(options=stored, output_format="png", table=TABLE) == "PNG · sepia"
    assert (
        "| `sepia` | `true`, `false` | `false` | API, web, batch, remove.bg |"
        in options_markdown(TABLE)
    )


def test_the_readme_options_table_is_the_generated_one():
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    assert options_markdown() in readme, (
        "README's options table is stale: run .venv/bin/python manage.py options_table --write"
    )


def test_the_real_schemas_document_exactly_the_options_of_their_door():
    for serializer, door in (
        (RemoveBackgroundInputSerializer, SEED),
        (RemoveBgInputSerializer, REMOVEBG),
    ):
        fields = serializer().fields
        for option in OPTIONS:
            assert (option.wire_name in fields) == (door in option.doors), (option.name, door)


def test_every_web_option_is_drawn_on_the_upload_page(customer_client):
    html = customer_client.get("/").content.decode()
    for option in options_for(WEB):
        assert f'name="{option.wire_name}"' in html, option.name
        assert option.web.label in html, option.name


def test_every_option_round_trips_through_its_stored_form():
    for option in OPTIONS:
        value = option.default
        assert option.parse(option.to_json(value), field=option.name) == value or (
            value is None and option.to_json(value) is None
        ), option.name
