"""A batch request, checked item by item before anything is charged.

The batch door reads its items (repeated multipart ``files``, one ``archive``
ZIP, or a JSON body's ``items``) and this module checks each one exactly as
a single image is checked (``submissions``: upload size, base64, the safe
fetcher for URLs, the format sniffed from the bytes, the pixels from the
header, a full decode). An item that fails is listed with its reason and
costs nothing; the batch-wide fields (model, options, webhook, key) are
checked once, and so are the batch's own limits (items, bytes, pixels).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import posixpath
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from imaging.options import WEB, OutputOptions, options_for, resolve_auto_format
from imaging.reading import ImageInfo
from removal.submissions import (
    Fields,
    FileRequired,
    FileTooLarge,
    ImageSource,
    InvalidOption,
    adownload_image,
    background_given,
    field_names,
    read_source,
    validate_idempotency_key,
    validate_image,
    validate_model_name,
    validate_webhook_url,
)
from removal.submissions import parse_options as _parse_options
from revid.errors import ApplicationError


class TooManyItems(ApplicationError):
    status_code = 413
    code = "too_many_items"


class BatchTooLarge(ApplicationError):
    status_code = 413
    code = "batch_too_large"


class InvalidArchive(ApplicationError):
    code = "invalid_archive"


class NoAcceptableItem(ApplicationError):
    code = "no_acceptable_item"


# How many of a batch's image URLs are fetched at once (on the event loop).
URL_FETCHES_AT_ONCE = 8


@dataclass(frozen=True)
class BatchItem:
    """One item as the request gave it: a name and how to get its bytes.

    ``url``: the image URL still to fetch, for a door that fetches it on the
    event loop (``afetch_items``); ``read`` fetches it blocking otherwise.
    """

    filename: str
    read: Any  # () -> ImageSource; raises ApplicationError
    url: str | None = None


@dataclass(frozen=True)
class CheckedItem:
    index: int
    filename: str
    source: ImageSource | None = None
    image: ImageInfo | None = None
    error: str = ""
    code: str = ""

    @property
    def accepted(self) -> bool:
        return self.source is not None


@dataclass(frozen=True)
class BatchRequest:
    model_name: str
    options: OutputOptions
    items: list[CheckedItem]
    idempotency_key: str = ""
    webhook_url: str = ""
    fingerprint: str = ""

    @property
    def accepted(self) -> list[CheckedItem]:
        return [item for item in self.items if item.accepted]

    @property
    def refused(self) -> list[CheckedItem]:
        return [item for item in self.items if not item.accepted]


# --- the three ways of giving items --------------------------------------------------


def items_from_uploads(uploads: Iterable) -> list[BatchItem]:
    return [
        BatchItem(
            filename=(upload.name or "")[:255],
            read=lambda upload=upload: read_source(
                uploads=[upload], image_url=None, image_file_b64=None, upload_field="files"
            ),
        )
        for upload in uploads
    ]


def _skipped(name: str) -> bool:
    """Folders, and what archivers add beside the files (macOS's resource forks)."""
    base = posixpath.basename(name)
    return name.endswith("/") or name.startswith("__MACOSX/") or base.startswith("._")


def items_from_archive(upload) -> list[BatchItem]:
    """The files of a ZIP, names (with their folders) kept; a bomb costs nothing:
    sizes are read from the directory and each entry is read up to its limit."""
    try:
        archive = zipfile.ZipFile(upload)
        entries = [info for info in archive.infolist() if not _skipped(info.filename)]
    except (zipfile.BadZipFile, OSError, ValueError):
        raise InvalidArchive("archive is not a readable ZIP file.") from None
    if len(entries) > settings.BATCH_MAX_ITEMS:
        raise TooManyItems(_too_many(len(entries)))
    declared = sum(info.file_size for info in entries)
    if declared > settings.BATCH_MAX_BYTES:
        raise BatchTooLarge(_too_large(declared))

    def reader(info: zipfile.ZipInfo):
        def read() -> ImageSource:
            limit = settings.MAX_UPLOAD_BYTES
            if info.file_size > limit:
                raise FileTooLarge(f"{info.filename} is larger than {limit / 1048576:.1f} MB.")
            try:
                with archive.open(info) as handle:
                    data = handle.read(limit + 1)
            except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError):
                raise InvalidArchive(f"{info.filename} could not be read from the ZIP.") from None
            if len(data) > limit:
                raise FileTooLarge(f"{info.filename} is larger than {limit / 1048576:.1f} MB.")
            return ImageSource(data=data, name=info.filename[:255])

        return read

    return [BatchItem(filename=info.filename[:255], read=reader(info)) for info in entries]


ITEM_SOURCES = 'Each item must have exactly one of "image_url" and "image_file_b64".'


def items_from_json(items: Any) -> list[BatchItem]:
    """``[{"image_url": ...} | {"image_file_b64": ...}, ...]``, each read as a single
    image's source is; anything else is an item refused for its own reason,
    not the whole batch."""
    if not isinstance(items, list):
        raise FileRequired('items must be a JSON list of {"image_url"} or {"image_file_b64"}.')
    result = []
    for number, item in enumerate(items):
        fields = item if isinstance(item, dict) else {}
        url, b64 = fields.get("image_url"), fields.get("image_file_b64")
        name = str(fields.get("filename") or "")[:255]
        shown = name or (url[:255] if isinstance(url, str) and b64 is None else f"item-{number}")
        read = lambda url=url, b64=b64: _json_source(url, b64)  # noqa: E731
        fetch = url if isinstance(url, str) and b64 is None else None
        result.append(BatchItem(filename=shown, read=read, url=fetch))
    return result


async def afetch_items(items: list[BatchItem]) -> list[BatchItem]:
    """The items with each ``url`` fetched on the event loop, up to
    ``URL_FETCHES_AT_ONCE`` at a time, through the safe fetcher: no thread
    waits for a slow remote. A refusal stays with its item (it is refused
    for its own reason when the batch is checked), as the blocking path has it."""
    limit = asyncio.Semaphore(URL_FETCHES_AT_ONCE)

    async def fetched(item: BatchItem) -> BatchItem:
        if item.url is None:
            return item
        async with limit:
            try:
                source = await adownload_image(item.url)
            except ApplicationError as exc:
                return BatchItem(filename=item.filename, read=_raiser(exc))
        return BatchItem(filename=item.filename, read=lambda: source)

    return list(await asyncio.gather(*(fetched(item) for item in items)))


def _raiser(exc: ApplicationError):
    def read() -> ImageSource:
        raise exc

    return read


def _json_source(url: Any, b64: Any) -> ImageSource:
    if not all(value is None or isinstance(value, str) for value in (url, b64)):
        raise FileRequired(ITEM_SOURCES)
    return read_source(uploads=[], image_url=url, image_file_b64=b64, one_of=ITEM_SOURCES)


def _too_many(count: int) -> str:
    return f"A batch takes at most {settings.BATCH_MAX_ITEMS} images; this one has {count}."


def _too_large(size: int) -> str:
    return (
        f"The batch's images add up to {size / 1048576:.1f} MB; the limit is "
        f"{settings.BATCH_MAX_BYTES / 1048576:.1f} MB (BATCH_MAX_BYTES)."
    )


# --- the batch -----------------------------------------------------------------------


@dataclass(frozen=True)
class BatchFields:
    """The batch-wide fields, checked: what every item gets."""

    model_name: str
    options: OutputOptions
    idempotency_key: str
    webhook_url: str


def build_batch_request(
    *,
    fields: Fields,
    items: list[BatchItem],
    door: str,
    idempotency_key: str | None,
    default_webhook_url: str = "",
) -> BatchRequest:
    """Every check before the batch's charge: ``check_batch_fields``, then
    ``check_items`` (a door that fetches URLs on the event loop runs the two
    apart, with ``afetch_items`` between them)."""
    batch = check_batch_fields(
        fields=fields,
        items=items,
        door=door,
        idempotency_key=idempotency_key,
        default_webhook_url=default_webhook_url,
    )
    return check_items(batch, items)


def check_batch_fields(
    *,
    fields: Fields,
    items: list[BatchItem],
    door: str,
    idempotency_key: str | None,
    default_webhook_url: str = "",
) -> BatchFields:
    """The batch-wide fields (key, model, options, webhook) and the item count:
    what can be refused before any item is read or fetched."""
    key = validate_idempotency_key(idempotency_key)
    model = validate_model_name(fields.text("model"))
    options = resolve_auto_format(_parse_options(fields, door=door))
    webhook_url = fields.text("webhook_url")
    webhook = validate_webhook_url(url=webhook_url) if webhook_url else default_webhook_url
    if not items:
        raise FileRequired(
            "No images: send them as repeated multipart 'files' fields, one 'archive' ZIP, "
            'or a JSON body {"items": [...]}.'
        )
    if len(items) > settings.BATCH_MAX_ITEMS:
        raise TooManyItems(_too_many(len(items)))
    return BatchFields(model_name=model, options=options, idempotency_key=key, webhook_url=webhook)


def check_items(batch: BatchFields, items: list[BatchItem]) -> BatchRequest:
    """Each item as a single image (refusals kept per item), then the accepted
    items' total bytes and pixels."""
    checked = []
    total_bytes = total_pixels = 0
    for index, item in enumerate(items):
        try:
            source = item.read()
            image = validate_image(source.data)
        except ApplicationError as exc:
            checked.append(
                CheckedItem(index=index, filename=item.filename, error=exc.message, code=exc.code)
            )
            continue
        total_bytes += len(source.data)
        total_pixels += image.width * image.height
        checked.append(
            CheckedItem(
                index=index, filename=item.filename or source.name, source=source, image=image
            )
        )
    if total_bytes > settings.BATCH_MAX_BYTES:
        raise BatchTooLarge(_too_large(total_bytes))
    if total_pixels > settings.BATCH_MAX_PIXELS:
        raise BatchTooLarge(
            f"The batch's images add up to {total_pixels:,} pixels; the limit is "
            f"{settings.BATCH_MAX_PIXELS:,} (BATCH_MAX_PIXELS)."
        )
    if not any(item.accepted for item in checked):
        reasons = "; ".join(f"{item.filename or item.index}: {item.error}" for item in checked[:5])
        raise NoAcceptableItem(f"No image of the batch can be processed ({reasons}).")
    return BatchRequest(
        model_name=batch.model_name,
        options=batch.options,
        items=checked,
        idempotency_key=batch.idempotency_key,
        webhook_url=batch.webhook_url,
        fingerprint=(
            _fingerprint(batch.model_name, batch.options, checked) if batch.idempotency_key else ""
        ),
    )


def build_web_batch_request(
    *, fields: Fields, uploads: list, idempotency_key: str | None, default_webhook_url: str = ""
) -> BatchRequest:
    """The upload page's many photos at once: the batch door's checks, with
    the options read as the web door takes them (messages name the page's
    labels). An option the page offers that a batch cannot honour (a
    background image, which travels with a single job) is refused, not dropped.
    """
    names = field_names(WEB)
    for option in options_for(WEB):
        if option.kind == "image" and background_given(fields, option):
            label = names.get(option.wire_name, option.wire_name)
            raise InvalidOption(
                f"{label} works with one photo at a time: remove it, or upload the photos "
                "one by one.",
                field_name=option.wire_name,
            )
    return build_batch_request(
        fields=fields,
        items=items_from_uploads(uploads),
        door=WEB,
        idempotency_key=idempotency_key,
        default_webhook_url=default_webhook_url,
    )


def _fingerprint(model: str, options: OutputOptions, items: list[CheckedItem]) -> str:
    digest = hashlib.sha256()
    digest.update(model.encode() + b"\0")
    digest.update(json.dumps(options.to_json(), sort_keys=True).encode() + b"\0")
    for item in items:
        digest.update(item.filename.encode() + b"\0")
        digest.update(hashlib.sha256(item.source.data).digest() if item.source else b"-")
    return digest.hexdigest()


__all__ = [
    "BatchFields",
    "BatchRequest",
    "CheckedItem",
    "afetch_items",
    "build_batch_request",
    "build_web_batch_request",
    "check_batch_fields",
    "check_items",
]
