"""What a customer asks for, parsed and validated once, whichever door it came through.

The seed API (``POST /paid/image/remove/background``), the web page and
the remove.bg dialect (``POST /v1.0/removebg``) each read their own wire
format into a ``Fields`` reader, then build one ``RemovalRequest`` here:
the image's bytes, the model, the output options, the idempotency key and
the webhook URL, every one of them checked before anything is charged.
``services.submit_job`` takes that value and nothing else.

Checks run cheapest first (key, model, options, webhook), so a request
with a bad option is refused before its image is downloaded or decoded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from imaging import errors as image_errors
from imaging import parsers
from imaging.options import (
    OPTIONS,
    OPTIONS_BY_NAME,
    SEED,
    WEB,
    Option,
    OptionError,
    OutputOptions,
    background_conflict,
    options_class,
    options_for,
    resolve_auto_format,
)
from imaging.reading import ImageInfo, inspect_image
from outbound import fetcher
from removal import registry
from revid.errors import ApplicationError

IDEMPOTENCY_KEY_MAX_LENGTH = 255
WEBHOOK_URL_MAX_LENGTH = 2000
# Base64 carries 3 bytes in 4 characters; room for a data: URL prefix too.
BASE64_OVERHEAD_CHARACTERS = 256


class UnknownModel(ApplicationError):
    code = "unknown_model"


class ModelUnavailable(ApplicationError):
    status_code = 503
    code = "model_unavailable"


class FileRequired(ApplicationError):
    code = "file_required"


class MultipleSources(ApplicationError):
    code = "multiple_sources"


class FileTooLarge(ApplicationError):
    status_code = 413
    code = "file_too_large"


class UnsupportedImageFormat(ApplicationError):
    status_code = 415
    code = "unsupported_format"


class InvalidImage(ApplicationError):
    code = "invalid_image"


class ImageTooLarge(ApplicationError):
    status_code = 413
    code = "image_too_large"


class InvalidImageUrl(ApplicationError):
    code = "invalid_image_url"


class ImageDownloadFailed(ApplicationError):
    code = "failed_image_download"


class InvalidBase64(ApplicationError):
    code = "invalid_image_file_b64"


class InvalidOption(ApplicationError):
    """A bad option value; the code names the field (``invalid_bg_color``), as remove.bg's do."""

    def __init__(self, message: str, *, field_name: str):
        super().__init__(message, code=f"invalid_{field_name}")
        self.field_name = field_name


class InvalidField(ApplicationError):
    code = "invalid_field"


class InvalidWebhookUrl(ApplicationError):
    code = "invalid_webhook_url"


class InvalidIdempotencyKey(ApplicationError):
    code = "invalid_idempotency_key"


def too_large_message(size: int, limit: int, *, at_least: bool = False) -> str:
    if at_least:
        return f"File too large: the limit is {limit / 1048576:.1f} MB."
    return f"File too large: {size / 1048576:.1f} MB; the limit is {limit / 1048576:.1f} MB."


# --- reading a door's fields --------------------------------------------------


class Fields:
    """A door's form fields and file parts, read the same way for every door.

    ``data`` maps names to text (a form) or JSON values (a JSON body);
    ``files`` holds the multipart file parts. A text option sent as a file
    part, or sent twice, is a client error rather than a silent pick.
    """

    def __init__(self, data: Mapping[str, Any], files: Mapping[str, Any] | None = None):
        self.data = data
        self.files = files or {}

    def _values(self, name: str) -> list[Any]:
        getlist = getattr(self.data, "getlist", None)
        if getlist is not None:
            return getlist(name)
        return [self.data[name]] if name in self.data else []

    def value(self, name: str) -> Any:
        """The field's one value (text, or a JSON scalar); None when absent or empty."""
        if name in self.files or any(isinstance(v, UploadedFile) for v in self._values(name)):
            raise InvalidField(
                f"The '{name}' field must be a text field, not a file.",
                code=f"invalid_{name}_field" if name == "model" else "invalid_field",
            )
        values = self._values(name)
        if len(values) > 1:
            raise InvalidField(f"Send the '{name}' field once, not {len(values)} times.")
        if not values or values[0] is None:
            return None
        value = values[0]
        if isinstance(value, (dict, list)):
            raise InvalidField(f"The '{name}' field must be a single value.")
        if isinstance(value, str) and not value.strip():
            return None
        return value

    def text(self, name: str) -> str | None:
        value = self.value(name)
        return None if value is None else str(value).strip()

    def file_parts(self, name: str) -> list[UploadedFile]:
        getlist = getattr(self.files, "getlist", None)
        if getlist is not None:
            return getlist(name)
        return [self.files[name]] if name in self.files else []

    def has(self, name: str) -> bool:
        return bool(self.file_parts(name)) or self.value(name) is not None


# --- the request ----------------------------------------------------------------


@dataclass(frozen=True)
class ImageSource:
    data: bytes
    name: str  # the uploaded file's name, or the URL's last path segment


@dataclass(frozen=True)
class RemovalRequest:
    source: ImageSource
    image: ImageInfo
    model_name: str
    options: OutputOptions = field(default_factory=OutputOptions)
    idempotency_key: str = ""
    webhook_url: str = ""
    origin: str = "api"
    # The background image (options.bg_image is its SHA-256), read and checked.
    background: ImageSource | None = None
    background_image: ImageInfo | None = None

    def fingerprint(self) -> str:
        """What makes two submissions "the same request" for an idempotency key."""
        return request_fingerprint(
            model_name=self.model_name, options=self.options, data=self.source.data
        )


def request_fingerprint(*, model_name: str, options: OutputOptions, data: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(model_name.encode())
    digest.update(b"\0")
    options_json = options.to_json()
    if options_json:
        # Default options hash as before, so keys stored before options existed still match.
        digest.update(json.dumps(options_json, sort_keys=True).encode())
        digest.update(b"\0")
    digest.update(data)
    return digest.hexdigest()


# --- each rule, once ------------------------------------------------------------


def validate_model_name(model_name: str | None) -> str:
    """Unknown names are a client error (400); known but missing weights, ours (503)."""
    name = (model_name or "").strip() or settings.REMOVAL_DEFAULT_MODEL
    if name not in registry.MODELS:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise UnknownModel(
            f"Unknown model {shown!r}. Supported models: {', '.join(registry.MODELS)}."
        )
    if not registry.is_available(name):
        raise ModelUnavailable(
            f"Model {name!r} is not available on this server (its weights are not "
            "installed). Try another model or contact the administrator."
        )
    return name


def validate_idempotency_key(value: str | None) -> str:
    """Empty means none; otherwise 1-255 visible ASCII characters."""
    key = (value or "").strip()
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH or not all(33 <= ord(c) <= 126 for c in key):
        raise InvalidIdempotencyKey(
            f"Idempotency-Key must be at most {IDEMPOTENCY_KEY_MAX_LENGTH} visible ASCII "
            "characters (a UUID is a good choice)."
        )
    return key


def validate_webhook_url(*, url: str) -> str:
    """The URL if a webhook may be sent to it, else a 400 that says why.

    Same rules as every outbound request (http/https, no loopback, private,
    link-local or metadata address unless OUTBOUND_ALLOWED_NETWORKS opens
    it); checked again at every delivery, since DNS can change.
    """
    url = (url or "").strip()
    if not url:
        raise InvalidWebhookUrl("webhook_url is empty: give an http or https URL.")
    if len(url) > WEBHOOK_URL_MAX_LENGTH:
        raise InvalidWebhookUrl(
            f"webhook_url is too long: at most {WEBHOOK_URL_MAX_LENGTH} characters."
        )
    try:
        return fetcher.check_url(url)
    except fetcher.OutboundRefused as exc:
        raise InvalidWebhookUrl(f"webhook_url is not allowed: {exc.message}") from None


def read_upload(upload: UploadedFile) -> bytes:
    limit = settings.MAX_UPLOAD_BYTES
    if upload.size is not None and upload.size > limit:
        raise FileTooLarge(too_large_message(upload.size, limit))
    upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(too_large_message(len(data), limit, at_least=True))
    if not data:
        raise InvalidImage("The uploaded file is empty.")
    return data


def decode_base64_image(text: str) -> bytes:
    """Standard or URL-safe base64, optionally as a ``data:image/...;base64,`` URL."""
    limit = settings.MAX_UPLOAD_BYTES
    if len(text) > (limit * 4) // 3 + BASE64_OVERHEAD_CHARACTERS:
        raise FileTooLarge(too_large_message(len(text) * 3 // 4, limit))
    payload = text.strip()
    if payload.startswith("data:"):
        header, comma, payload = payload.partition(",")
        if not comma or not header.endswith(";base64"):
            raise InvalidBase64("image_file_b64 is a data: URL without base64 content.")
    payload = "".join(payload.split())  # line breaks from encoders that wrap
    payload = payload.replace("-", "+").replace("_", "/")
    payload += "=" * (-len(payload) % 4)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64("image_file_b64 is not valid base64.") from None
    if not data:
        raise InvalidImage("image_file_b64 is empty.")
    if len(data) > limit:
        raise FileTooLarge(too_large_message(len(data), limit))
    return data


def download_image(url: str, *, field: str = "image_url", shown: str = "") -> ImageSource:
    """Fetches ``image_url`` (or ``bg_image_url``) through the safe fetcher (the only way out).

    ``shown``: what the door calls the field, when not its wire name (the
    web page's label); the fetcher's own sentences then say which field.
    """
    codes = _URL_CODES[field]
    name = shown or field
    about = f"{shown}: " if shown else ""
    if len(url) > 2048:
        raise InvalidImageUrl(f"{name} is longer than 2048 characters.", code=codes[0])
    try:
        fetched = fetcher.fetch(url, max_bytes=settings.MAX_UPLOAD_BYTES)
    except fetcher.OutboundRefused as exc:
        if exc.code == "too_large":
            raise FileTooLarge(
                f"The image at {name} is too large: the limit is "
                f"{settings.MAX_UPLOAD_BYTES / 1048576:.1f} MB."
            ) from None
        if exc.code in ("invalid_url", "forbidden_address", "unresolvable"):
            raise InvalidImageUrl(about + exc.message, code=codes[0]) from None
        raise ImageDownloadFailed(about + exc.message, code=codes[1]) from None
    if not fetched.body:
        raise ImageDownloadFailed(f"The image at {name} is empty.", code=codes[1])
    name = unquote(urlsplit(fetched.url).path.rsplit("/", 1)[-1])[:255]
    return ImageSource(data=fetched.body, name=name)


# (refused URL, failed download) codes of each URL field.
_URL_CODES = {
    "image_url": (InvalidImageUrl.code, ImageDownloadFailed.code),
    "bg_image_url": ("invalid_bg_image_url", "failed_bg_image_download"),
}


def read_source(
    *,
    uploads: list[UploadedFile],
    image_url: str | None,
    image_file_b64: str | None,
    upload_field: str = "file",
) -> ImageSource:
    """Exactly one of an uploaded file, a base64 string or a URL."""
    given = sum((bool(uploads), image_url is not None, image_file_b64 is not None))
    if given == 0:
        raise FileRequired(
            f"No image: send it in the multipart field '{upload_field}', or give "
            "image_url or image_file_b64."
        )
    if len(uploads) > 1:
        raise MultipleSources(
            f"Send exactly one image in the multipart field '{upload_field}'.",
            code="multiple_files",
        )
    if given > 1:
        raise MultipleSources(
            f"Send exactly one image source: '{upload_field}', image_url or image_file_b64."
        )
    if uploads:
        upload = uploads[0]
        return ImageSource(data=read_upload(upload), name=(upload.name or "")[:255])
    if image_file_b64 is not None:
        return ImageSource(data=decode_base64_image(image_file_b64), name="")
    return download_image(image_url)


def validate_image(data: bytes, *, background: bool = False) -> ImageInfo:
    """The image's format, upright size and a proof it decodes (the same
    limits for a background image, refused with codes of its own)."""
    prefix, suffix = ("Background image: ", "_bg_image") if background else ("", "")
    try:
        return inspect_image(
            data, max_pixels=settings.MAX_IMAGE_PIXELS, max_side=settings.MAX_IMAGE_SIDE
        )
    except image_errors.UnsupportedFormat as exc:
        code = "unsupported_bg_image_format" if background else None
        raise UnsupportedImageFormat(prefix + str(exc), code=code) from None
    except image_errors.TooManyPixels as exc:
        raise ImageTooLarge(
            prefix + str(exc), code="bg_image_too_large" if suffix else None
        ) from None
    except image_errors.PipelineError as exc:
        raise InvalidImage(prefix + str(exc), code=f"invalid{suffix}" if suffix else None) from None


def flag(fields: Fields, name: str) -> bool:
    """A true/false field (absent: false)."""
    value = fields.value(name)
    if value is None:
        return False
    try:
        return parsers.parse_bool(value, field=name)
    except OptionError as exc:
        raise InvalidOption(str(exc), field_name=name) from None


# --- the options, from the table ------------------------------------------------


def field_names(door: str, table=OPTIONS) -> dict[str, str]:
    """What ``door``'s messages call its option fields, when not their wire names.

    The web page names a field by the label its form shows (the option
    table's ``WebField``; a URL beside a file field is that label plus
    " URL", as the form's ``aria-label`` says); the API doors by the field
    names they read, so this is empty for them.
    """
    if door != WEB:
        return {}
    names = {}
    for option in options_for(door, table):
        if option.web is None:
            continue
        names[option.wire_name] = option.web.label
        if option.url_field:
            names[option.url_field] = f"{option.web.label} URL"
    return names


def parse_options(fields: Fields, *, door: str, table=OPTIONS) -> OutputOptions:
    """The output options ``door`` takes, read from its fields by the option table.

    A bad value is refused naming the field as the door does (on the web
    page by its label: ``field_names``) with the option's error code; an
    absent one takes the door's default.
    """
    values = {}
    names = field_names(door, table)
    for option in options_for(door, table):
        if option.kind == "image":
            continue  # an image, not a value: read_background
        try:
            values[option.name] = option.read_wire(
                fields.value(option.wire_name), door=door, field_label=names.get(option.wire_name)
            )
        except OptionError as exc:
            raise InvalidOption(str(exc), field_name=option.wire_name) from None
    cls = OutputOptions if table is OPTIONS else options_class(table)
    try:
        return cls(**values)
    except OptionError as exc:
        message = str(exc)
        if message == background_conflict():
            message = background_conflict(names)
        raise InvalidOption(message, field_name=exc.field) from None


def build_request(
    *,
    account,
    fields: Fields,
    door: str,
    model_name: str | None,
    idempotency_key: str | None,
    webhook_url: str | None,
    default_webhook_url: str = "",
    origin: str,
    upload_field: str = "file",
) -> RemovalRequest:
    """Every check a submission must pass before the charge, in one place.

    Steps, cheapest first: idempotency key, model, output options (the
    option table, read as ``door`` takes them), webhook URL, then the image source (a download for
    ``image_url``), then the image itself (format sniffed from the bytes,
    pixels from the header, a full decode).
    """
    key = validate_idempotency_key(idempotency_key)
    name = validate_model_name(model_name)
    options = parse_options(fields, door=door)
    background_option = OPTIONS_BY_NAME["bg_image"]
    wants_background = door in background_option.doors and background_given(
        fields, background_option
    )
    if wants_background and options.bg_color is not None:
        raise InvalidOption(background_conflict(field_names(door)), field_name="bg_color")
    webhook = validate_webhook_url(url=webhook_url) if webhook_url else default_webhook_url
    source = read_source(
        uploads=fields.file_parts(upload_field),
        image_url=fields.text("image_url"),
        image_file_b64=fields.text("image_file_b64"),
        upload_field=upload_field,
    )
    background = (
        read_background(fields, background_option, names=field_names(door))
        if wants_background
        else None
    )
    image = validate_image(source.data)
    background_image = None
    if background is not None:
        background_image = validate_image(background.data, background=True)
        options = options.replace(bg_image=hashlib.sha256(background.data).hexdigest())
    # "auto" becomes the real format now, so the stored file name carries it.
    options = resolve_auto_format(
        options, opaque_background=background_image is not None and not background_image.has_alpha
    )
    return RemovalRequest(
        source=source,
        image=image,
        model_name=name,
        options=options,
        idempotency_key=key,
        webhook_url=webhook,
        origin=origin,
        background=background,
        background_image=background_image,
    )


def background_given(fields: Fields, option: Option) -> bool:
    """Whether the request names a background image (a file part or a URL)."""
    if fields.file_parts(option.wire_name):
        return True
    if fields.value(option.wire_name) is not None:
        raise InvalidField(
            f"'{option.wire_name}' must be a file part of a multipart body; for a background "
            f"image by URL, use '{option.url_field}'.",
            code=f"invalid_{option.wire_name}",
        )
    return fields.text(option.url_field) is not None


def read_background(
    fields: Fields, option: Option, *, names: Mapping[str, str] | None = None
) -> ImageSource:
    """The background image: one file part (``bg_image_file``) or one URL
    (``bg_image_url``), with the same limits as the image itself. ``names``:
    what the door calls the fields (``field_names``)."""
    names = names or {}
    file_name = names.get(option.wire_name, option.wire_name)
    url_name = names.get(option.url_field, option.url_field)
    uploads = fields.file_parts(option.wire_name)
    url = fields.text(option.url_field)
    if len(uploads) + (url is not None) > 1:
        raise MultipleSources(
            f"Send one background image: a file in '{file_name}' or a URL in '{url_name}'.",
            code="multiple_backgrounds",
        )
    if uploads:
        upload = uploads[0]
        try:
            data = read_upload(upload)
        except InvalidImage:
            raise InvalidImage(
                f"The background image ({file_name}) is empty.", code="invalid_bg_image"
            ) from None
        return ImageSource(data=data, name=(upload.name or "")[:255])
    return download_image(url, field=option.url_field, shown=names.get(option.url_field, ""))


def seed_request(
    *,
    account,
    fields: Fields,
    idempotency_key: str | None,
    origin: str,
    door: str = SEED,
    default_webhook_url: str = "",
) -> RemovalRequest:
    """A submission to the seed API or the web page (same field names), validated."""
    return build_request(
        account=account,
        fields=fields,
        door=door,
        model_name=fields.text("model"),
        idempotency_key=idempotency_key,
        webhook_url=fields.text("webhook_url"),
        default_webhook_url=default_webhook_url,
        origin=origin,
    )
