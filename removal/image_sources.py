"""Where a submission's images come from: an upload, base64, or a URL.

Each source is read once here whichever door it came through, with the
same limits and refusals: the image itself (``file`` / ``image_file``,
``image_file_b64``, ``image_url``) and the background image
(``bg_image_file``, ``bg_image_url``). A URL is fetched through the safe
fetcher, blocking (``download_image``) or on the event loop
(``adownload_image``: no thread waits for a slow remote); the
``read_local_*`` functions return what came with the request, or the URL
still to fetch, so an async door can fetch it itself.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from imaging import errors as image_errors
from imaging.options import Option
from imaging.reading import ImageInfo, inspect_image
from outbound import async_fetcher, fetcher
from revid.errors import ApplicationError

if TYPE_CHECKING:
    from removal.submissions import Fields

# Base64 carries 3 bytes in 4 characters; room for a data: URL prefix too.
BASE64_OVERHEAD_CHARACTERS = 256


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


class InvalidField(ApplicationError):
    code = "invalid_field"


def too_large_message(size: int, limit: int, *, at_least: bool = False) -> str:
    if at_least:
        return f"File too large: the limit is {limit / 1048576:.1f} MB."
    return f"File too large: {size / 1048576:.1f} MB; the limit is {limit / 1048576:.1f} MB."


@dataclass(frozen=True)
class ImageSource:
    data: bytes
    name: str  # the uploaded file's name, or the URL's last path segment


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
    _check_url_length(url, field, shown)
    try:
        fetched = fetcher.fetch(url, max_bytes=settings.MAX_UPLOAD_BYTES)
    except fetcher.OutboundRefused as exc:
        raise _download_refused(exc, field, shown) from None
    return _downloaded(fetched, field, shown)


async def adownload_image(url: str, *, field: str = "image_url", shown: str = "") -> ImageSource:
    """``download_image`` on the event loop (``outbound.async_fetcher``): the
    same checks and refusals, and no thread waits for a slow server."""
    _check_url_length(url, field, shown)
    try:
        fetched = await async_fetcher.fetch(url, max_bytes=settings.MAX_UPLOAD_BYTES)
    except fetcher.OutboundRefused as exc:
        raise _download_refused(exc, field, shown) from None
    return _downloaded(fetched, field, shown)


def _check_url_length(url: str, field: str, shown: str) -> None:
    if len(url) > 2048:
        raise InvalidImageUrl(
            f"{shown or field} is longer than 2048 characters.", code=_URL_CODES[field][0]
        )


def _download_refused(exc: fetcher.OutboundRefused, field: str, shown: str) -> ApplicationError:
    codes = _URL_CODES[field]
    about = f"{shown}: " if shown else ""
    if exc.code == "too_large":
        return FileTooLarge(
            f"The image at {shown or field} is too large: the limit is "
            f"{settings.MAX_UPLOAD_BYTES / 1048576:.1f} MB."
        )
    if exc.code in ("invalid_url", "forbidden_address", "unresolvable"):
        return InvalidImageUrl(about + exc.message, code=codes[0])
    return ImageDownloadFailed(about + exc.message, code=codes[1])


def _downloaded(fetched: fetcher.Fetched, field: str, shown: str) -> ImageSource:
    if not fetched.body:
        raise ImageDownloadFailed(
            f"The image at {shown or field} is empty.", code=_URL_CODES[field][1]
        )
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
    one_of: str | None = None,
) -> ImageSource:
    """Exactly one of an uploaded file, a base64 string or a URL, read with its limits.

    Every image source is read here: the single-image doors' and each batch
    item's (an upload, or a JSON item's URL or base64). ``one_of``, when
    given, is the one message for none or several sources (a JSON item).
    """
    source = read_local_source(
        uploads=uploads,
        image_url=image_url,
        image_file_b64=image_file_b64,
        upload_field=upload_field,
        one_of=one_of,
    )
    return source if isinstance(source, ImageSource) else download_image(source)


def read_local_source(
    *,
    uploads: list[UploadedFile],
    image_url: str | None,
    image_file_b64: str | None,
    upload_field: str = "file",
    one_of: str | None = None,
) -> ImageSource | str:
    """Exactly one source: the image when it came with the request, else the URL to fetch."""
    given = sum((bool(uploads), image_url is not None, image_file_b64 is not None))
    if one_of is not None and given != 1:
        raise FileRequired(one_of)
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
    return image_url


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
    what the door calls the fields (``submissions.field_names``)."""
    background = read_local_background(fields, option, names=names)
    if isinstance(background, str):
        shown = (names or {}).get(option.url_field, "")
        return download_image(background, field=option.url_field, shown=shown)
    return background


def read_local_background(
    fields: Fields, option: Option, *, names: Mapping[str, str] | None = None
) -> ImageSource | str:
    """The background image when it came with the request, else its URL to fetch."""
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
    return url
