"""The JSON body parser of the API doors.

A door reads its fields by name from the body, so a JSON body must be an
object. DRF's ``JSONParser`` returns any JSON value (``null``, ``3``, a
list), which the door then fails on with a 500, and lets Python's
RecursionError through on a deeply nested body (``[`` * 100,000). Both are
the client's fault: a ParseError here, which each door answers as a 400 in
its own dialect (``revid.errors.api_exception_handler``).
"""

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


class JSONObjectParser(JSONParser):
    """``application/json``, accepted only when the body is one JSON object."""

    def parse(self, stream, media_type=None, parser_context=None) -> dict[str, Any]:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                "JSON parse error: the body is nested too deeply; send one JSON object "
                'of fields, such as {"image_url": "https://..."}.'
            ) from None
        if not isinstance(data, dict):
            raise ParseError(
                "The JSON body must be an object of fields, such as "
                f'{{"image_url": "https://..."}}; got {_describe(data)}.'
            )
        return data
