"""The body parsers of the API doors (the seed API and remove.bg's).

Two jobs that DRF's own parsers do not do:

* A door reads its fields by name, so a JSON body must be an object. DRF's
  ``JSONParser`` returns any JSON value (``null``, ``3``, a list), which the
  door then fails on with a 500, and lets RecursionError through on a deeply
  nested body (``[`` * 100,000). Both are the client's fault: a ParseError
  here, which each door answers as a 400 in its own dialect
  (``revid.errors.api_exception_handler``).

* remove.bg's clients send photos as base64 (``image_file_b64``) in a form,
  JSON or multipart text field, up to MAX_UPLOAD_BYTES once decoded: 4/3 of
  that as text. Django holds text bodies and fields to
  DATA_UPLOAD_MAX_MEMORY_SIZE (2 MB), which stays the bound for every other
  page; these parsers allow ``text_body_limit()`` (JSON, form) and
  ``multipart_body_limit()`` instead, and only after the
  door has checked the API key (DRF parses on first access to
  ``request.data``). They read the raw stream rather than ``request.body``,
  which would keep another copy of the body for the whole request, and
  decode a form without Django's QueryDict, which takes 400 MB and seconds
  to unquote a 28 MB base64 value.
"""

import json
import types
from typing import Any
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest, QueryDict, multipartparser
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, DataAndFiles, MultiPartParser, get_encoding
from rest_framework.utils.json import strict_constant

from revid.errors import ApplicationError

BODY_OVERHEAD_BYTES = 64 * 1024
# A JSON or form body may be this much (1/8) longer than the base64 text:
# a form percent-escapes "+" and "/" (1 in 32 characters of base64 each,
# three bytes for one), PHP's JSON escapes "/" as "\/".
TEXT_BODY_SLACK_FRACTION = 8
# Set on a Django request whose body an API door parses: the most a
# multipart body may be (removal.uploads.MaxUploadSizeHandler reads it).
BODY_LIMIT_ATTRIBUTE = "api_body_limit"
_UNQUOTE_WINDOW = 64 * 1024


def base64_length(size: int) -> int:
    """Characters of base64 (padded, unwrapped) for ``size`` bytes."""
    return -(-size // 3) * 4


def text_body_limit() -> int:
    """The largest JSON or form body an API door reads: an image of
    MAX_UPLOAD_BYTES as base64, with room for escapes and other fields."""
    text = base64_length(settings.MAX_UPLOAD_BYTES)
    return text + text // TEXT_BODY_SLACK_FRACTION + BODY_OVERHEAD_BYTES


def multipart_body_limit() -> int:
    """The largest multipart body an API door reads (its text fields
    together, or its file part, plus the envelope): a multipart text field
    carries base64 unescaped."""
    return base64_length(settings.MAX_UPLOAD_BYTES) + BODY_OVERHEAD_BYTES


class BodyTooLarge(ApplicationError):
    status_code = 413
    code = "file_too_large"


def _megabytes(size: int) -> str:
    return f"{size / 1048576:.1f} MB"


def _refuse_size(size: int, *, at_least: bool = False) -> BodyTooLarge:
    return BodyTooLarge(
        f"Request body too large: {'over ' if at_least else ''}{_megabytes(size)}; the limit "
        f"is {_megabytes(text_body_limit())}, for an image of up to "
        f"{_megabytes(settings.MAX_UPLOAD_BYTES)} sent as base64."
    )


def _content_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def _read_body(stream, parser_context: dict) -> bytes:
    """The whole body, refused (413) past ``text_body_limit()``, unread when its length says so."""
    limit = text_body_limit()
    request = parser_context.get("request")
    length = _content_length(request._request) if request is not None else None
    if length is not None and length > limit:
        raise _refuse_size(length)
    body = stream.read(limit + 1)
    if len(body) > limit:
        raise _refuse_size(len(body), at_least=True)
    return body


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


class JSONObjectParser(BaseParser):
    """``application/json``, accepted only when the body is one JSON object.

    Not a subclass of DRF's JSONParser on purpose: DRF hands those
    ``request.body`` (Django's 2 MB check, and a copy of the body kept for
    the whole request) instead of the stream.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None) -> dict[str, Any]:
        parser_context = parser_context or {}
        encoding = get_encoding(parser_context)
        body = _read_body(stream, parser_context)
        try:
            text = body.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - the body is not {encoding}: {exc}") from None
        del body  # one copy of the text at a time, not two
        try:
            data = json.loads(text, parse_constant=strict_constant)
        except RecursionError:
            raise ParseError(
                "JSON parse error - the body is nested too deeply; send one JSON object "
                'of fields, such as {"image_url": "https://..."}.'
            ) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if not isinstance(data, dict):
            raise ParseError(
                "The JSON body must be an object of fields, such as "
                f'{{"image_url": "https://..."}}; got {_describe(data)}.'
            )
        return data


def _unquote_plus_large(raw: memoryview) -> bytearray:
    """``unquote_plus`` of a long form value, a window at a time.

    urllib's unquote splits the whole value at every "%" at once: millions
    of small objects for a base64 image. Windows end before a "%" that a
    window would cut in two.
    """
    out = bytearray()
    start, end = 0, len(raw)
    while start < end:
        stop = min(start + _UNQUOTE_WINDOW, end)
        window = bytes(raw[start:stop])
        if stop < end:
            cut = window.rfind(b"%", len(window) - 2)
            if cut > 0:
                window, stop = window[:cut], start + cut
        out += unquote_to_bytes(window.replace(b"+", b" "))
        start = stop
    return out


class ApiFormParser(BaseParser):
    """``application/x-www-form-urlencoded`` up to ``text_body_limit()``, as a QueryDict.

    What Django's QueryDict gives (blank values kept, repeated names
    listed, at most DATA_UPLOAD_MAX_NUMBER_FIELDS fields, undecodable bytes
    replaced) with one copy of a long value in memory. Not a subclass of
    DRF's FormParser, for the reason JSONObjectParser gives.
    """

    media_type = "application/x-www-form-urlencoded"

    def parse(self, stream, media_type=None, parser_context=None) -> QueryDict:
        parser_context = parser_context or {}
        encoding = get_encoding(parser_context)
        body = _read_body(stream, parser_context)
        view = memoryview(body)
        data = QueryDict(mutable=True, encoding=encoding)
        max_fields = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        fields, start = 0, 0
        while start < len(body):
            stop = body.find(b"&", start)
            if stop == -1:
                stop = len(body)
            if stop > start:
                fields += 1
                if max_fields is not None and fields > max_fields:
                    raise TooManyFieldsSent(
                        "The number of GET/POST parameters exceeded "
                        "settings.DATA_UPLOAD_MAX_NUMBER_FIELDS."
                    )
                equals = body.find(b"=", start, stop)
                name_end, value_start = (stop, stop) if equals == -1 else (equals, equals + 1)
                data.appendlist(
                    _unquote_plus_large(view[start:name_end]).decode(encoding, errors="replace"),
                    _unquote_plus_large(view[value_start:stop]).decode(encoding, errors="replace"),
                )
            start = stop + 1
        data._mutable = False
        return data


def _api_multipart_parse():
    """Django's multipart ``_parse``, reading DATA_UPLOAD_MAX_MEMORY_SIZE as
    ``multipart_body_limit()``.

    Django reads the setting from its module's global ``settings`` inside
    one long method, with no hook; this is that same code with its globals
    pointed at a view of the settings that differs in that one name. Only
    the API doors' parser uses it: every other page keeps Django's limit.
    """
    django_parse = multipartparser.MultiPartParser._parse
    if "settings" not in django_parse.__code__.co_names:
        # A Django that no longer reads the setting there: fail loudly
        # rather than let the 2 MB limit come back unseen.
        raise ImportError("django.http.multipartparser no longer reads `settings` in _parse")

    class ApiSettings:
        def __getattr__(self, name: str) -> Any:
            if name == "DATA_UPLOAD_MAX_MEMORY_SIZE":
                return multipart_body_limit()
            return getattr(settings, name)

    return types.FunctionType(
        django_parse.__code__,
        {**vars(multipartparser), "settings": ApiSettings()},
        django_parse.__name__,
        django_parse.__defaults__,
        django_parse.__closure__,
    )


class _DjangoApiMultiPartParser(multipartparser.MultiPartParser):
    _parse = _api_multipart_parse()


class ApiMultiPartParser(MultiPartParser):
    """``multipart/form-data`` whose text fields together may reach ``multipart_body_limit()``.

    File parts are still stopped at MAX_UPLOAD_BYTES while they are read
    (removal.uploads.MaxUploadSizeHandler), and a body whose Content-Length
    is over the limit is not read at all.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        request = parser_context["request"]
        setattr(request._request, BODY_LIMIT_ATTRIBUTE, multipart_body_limit())
        encoding = get_encoding(parser_context)
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        try:
            parser = _DjangoApiMultiPartParser(meta, stream, request.upload_handlers, encoding)
            data, files = parser.parse()
        except multipartparser.MultiPartParserError as exc:
            raise ParseError(f"Multipart form parse error - {exc}") from None
        return DataAndFiles(data, files)


# The API doors' parsers, in the order DRF tries them.
API_PARSERS = [ApiMultiPartParser, ApiFormParser, JSONObjectParser]
