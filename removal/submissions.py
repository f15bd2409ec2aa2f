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

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from imaging import parsers
from imaging.options import (
    OPTIONS,
    OPTIONS_BY_NAME,
    SEED,
    WEB,
    OptionError,
    OutputOptions,
    background_conflict,
    options_class,
    options_for,
    resolve_auto_format,
)
from imaging.reading import ImageInfo
from outbound import fetcher
from removal import registry

# Re-exported: doors, batches and tests name the sources' rules through submissions.
from removal.image_sources import (  # noqa: F401
    BASE64_OVERHEAD_CHARACTERS,
    FileRequired,
    FileTooLarge,
    ImageDownloadFailed,
    ImageSource,
    ImageTooLarge,
    InvalidBase64,
    InvalidField,
    InvalidImage,
    InvalidImageUrl,
    MultipleSources,
    UnsupportedImageFormat,
    adownload_image,
    background_given,
    decode_base64_image,
    download_image,
    read_background,
    read_local_background,
    read_local_source,
    read_source,
    read_upload,
    too_large_message,
    validate_image,
)
from revid.errors import ApplicationError

IDEMPOTENCY_KEY_MAX_LENGTH = 255
WEBHOOK_URL_MAX_LENGTH = 2000


class UnknownModel(ApplicationError):
    code = "unknown_model"


class ModelUnavailable(ApplicationError):
    status_code = 503
    code = "model_unavailable"


class InvalidOption(ApplicationError):
    """A bad option value; the code names the field (``invalid_bg_color``), as remove.bg's do."""

    def __init__(self, message: str, *, field_name: str):
        super().__init__(message, code=f"invalid_{field_name}")
        self.field_name = field_name


class InvalidWebhookUrl(ApplicationError):
    code = "invalid_webhook_url"


class InvalidIdempotencyKey(ApplicationError):
    code = "invalid_idempotency_key"


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
    option table, read as ``door`` takes them), webhook URL, then the image
    source and the background image (a download for ``image_url`` and
    ``bg_image_url``), then the images themselves (format sniffed from the
    bytes, pixels from the header, a full decode). An async door runs the
    same steps in three parts: ``check_request``, ``adownload_images``,
    ``finish_request``.
    """
    checked = check_request(
        fields=fields,
        door=door,
        model_name=model_name,
        idempotency_key=idempotency_key,
        webhook_url=webhook_url,
        default_webhook_url=default_webhook_url,
        origin=origin,
        upload_field=upload_field,
    )
    return download_and_finish(checked)


def download_and_finish(checked: CheckedRequest) -> RemovalRequest:
    """``checked``'s URLs fetched on this thread, then ``finish_request``."""
    source, background = checked.source, checked.background
    if isinstance(source, str):
        source = download_image(source)
    if isinstance(background, str):
        background = download_image(background, **_background_url_field(checked))
    return finish_request(checked, source, background)


def _background_url_field(checked: CheckedRequest) -> dict:
    url_field = OPTIONS_BY_NAME["bg_image"].url_field
    return {"field": url_field, "shown": checked.names.get(url_field, "")}


@dataclass(frozen=True)
class CheckedRequest:
    """A submission that passed every check that needs no download or decode;
    ``source`` and ``background`` are images, or URLs still to fetch."""

    source: ImageSource | str
    background: ImageSource | str | None
    model_name: str
    options: OutputOptions
    idempotency_key: str
    webhook_url: str
    origin: str
    # What the door calls its fields in messages, when not their wire names
    # (field_names): a background URL's refusal names the web page's label.
    names: Mapping[str, str] = field(default_factory=dict)


def check_request(
    *,
    fields: Fields,
    door: str,
    model_name: str | None,
    idempotency_key: str | None,
    webhook_url: str | None,
    default_webhook_url: str = "",
    origin: str,
    upload_field: str = "file",
) -> CheckedRequest:
    """``build_request``'s steps up to the image sources, without downloading them."""
    key = validate_idempotency_key(idempotency_key)
    name = validate_model_name(model_name)
    options = parse_options(fields, door=door)
    background_option = OPTIONS_BY_NAME["bg_image"]
    wants_background = door in background_option.doors and background_given(
        fields, background_option
    )
    names = field_names(door)
    if wants_background and options.bg_color is not None:
        raise InvalidOption(background_conflict(names), field_name="bg_color")
    webhook = validate_webhook_url(url=webhook_url) if webhook_url else default_webhook_url
    source = read_local_source(
        uploads=fields.file_parts(upload_field),
        image_url=fields.text("image_url"),
        image_file_b64=fields.text("image_file_b64"),
        upload_field=upload_field,
    )
    background = (
        read_local_background(fields, background_option, names=names) if wants_background else None
    )
    return CheckedRequest(
        source=source,
        background=background,
        model_name=name,
        options=options,
        idempotency_key=key,
        webhook_url=webhook,
        origin=origin,
        names=names,
    )


async def adownload_images(checked: CheckedRequest) -> tuple[ImageSource, ImageSource | None]:
    """The image and the background of ``checked``, each URL fetched on the
    event loop (both at once): no thread waits for a slow remote."""

    async def image() -> ImageSource:
        source = checked.source
        return await adownload_image(source) if isinstance(source, str) else source

    async def background() -> ImageSource | None:
        source = checked.background
        if isinstance(source, str):
            return await adownload_image(source, **_background_url_field(checked))
        return source

    tasks = [asyncio.ensure_future(image()), asyncio.ensure_future(background())]
    try:
        # The first refusal is the answer (as the blocking path raises it).
        first, second = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return first, second


def finish_request(
    checked: CheckedRequest, source: ImageSource, background: ImageSource | None = None
) -> RemovalRequest:
    """The last step: the images themselves (format, pixels, a full decode)."""
    image = validate_image(source.data)
    options = checked.options
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
        model_name=checked.model_name,
        options=options,
        idempotency_key=checked.idempotency_key,
        webhook_url=checked.webhook_url,
        origin=checked.origin,
        background=background,
        background_image=background_image,
    )


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
    checked = check_seed_request(
        fields=fields,
        idempotency_key=idempotency_key,
        origin=origin,
        door=door,
        default_webhook_url=default_webhook_url,
    )
    return download_and_finish(checked)


def check_seed_request(
    *,
    fields: Fields,
    idempotency_key: str | None,
    origin: str,
    door: str = SEED,
    default_webhook_url: str = "",
) -> CheckedRequest:
    """``seed_request``'s checks up to the image sources (async doors fetch URLs themselves)."""
    return check_request(
        fields=fields,
        door=door,
        model_name=fields.text("model"),
        idempotency_key=idempotency_key,
        webhook_url=fields.text("webhook_url"),
        default_webhook_url=default_webhook_url,
        origin=origin,
    )
