"""HTTP responses for a job's stored files.

The API's download, the web page's "before" picture and the admin's
thumbnails all serve files through here, so the rules (which file is live,
what an expired one answers, what storage trouble answers) hold the same
whatever door asked. Refusals are ``ApplicationError``s; each door formats
them in its own dialect.
"""

from botocore.exceptions import BotoCoreError, ClientError
from django.http import FileResponse, HttpResponse, HttpResponseRedirect
from storages.utils import clean_name

from imaging.formats import CONTENT_TYPES, INPUT_CONTENT_TYPES
from removal import selectors
from removal.models import RemovalJob
from revid.errors import ApplicationError


def file_not_found() -> ApplicationError:
    return ApplicationError("File not found.", code="file_not_found", status_code=404)


class _FileResponse(FileResponse):
    # Django's 4 KiB reads would cost many small S3 reads per image.
    block_size = 64 * 1024


class _S3Stream:
    """An S3 object's body as a file FileResponse reads chunk by chunk.

    django-storages' own file downloads the whole object into memory on
    the first read; this reads it from the open HTTP response as the
    client takes it, so a download holds one chunk, whatever its size.
    """

    def __init__(self, body, length: int):
        self._body = body
        self.length = length

    def read(self, size: int = -1) -> bytes:
        return self._body.read(None if size is None or size < 0 else size)

    def close(self) -> None:
        self._body.close()


def _storage_unavailable() -> ApplicationError:
    return ApplicationError(
        "The file is stored but storage is not reachable; try again shortly.",
        code="storage_unavailable",
        status_code=503,
    )


def _open(field):
    """The stored file, streamed: a local file, or an S3 object's body."""
    from storages.backends.s3 import S3Storage

    storage = field.storage
    try:
        if isinstance(storage, S3Storage):
            obj = storage.bucket.Object(storage._normalize_name(clean_name(field.name))).get()
            return _S3Stream(obj["Body"], obj["ContentLength"])
        return field.open("rb")
    except OSError:
        raise file_not_found() from None
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise file_not_found() from None
        raise _storage_unavailable() from None
    except BotoCoreError:
        raise _storage_unavailable() from None


def _file_response(field, *, content_type: str, filename: str | None = None) -> HttpResponse:
    stream = _open(field)
    response = _FileResponse(stream, content_type=content_type, filename=filename)
    if isinstance(stream, _S3Stream):
        response["Content-Length"] = str(stream.length)
    return response


def output_response(job: RemovalJob | None) -> HttpResponse:
    """The result file: 200 (or a redirect to the bucket), 404, 410 or 503."""
    if job is None or not job.has_output:
        raise file_not_found()
    if job.is_expired:
        raise ApplicationError(
            "This result has expired and was deleted; submit the image again.",
            code="expired",
            status_code=410,
        )
    redirect_url = selectors.output_redirect_url(job=job)
    if redirect_url:
        # The bucket serves the bytes; the signed URL must not be cached
        # past its own short life.
        response = HttpResponseRedirect(redirect_url)
        response["Cache-Control"] = "no-store"
        return response
    response = _file_response(
        job.output_file,
        content_type=CONTENT_TYPES.get(job.output_format, "application/octet-stream"),
        filename=job.output_filename,
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response


def output_bytes(job: RemovalJob) -> bytes:
    """The result's bytes, for a door that answers with the image itself
    (remove.bg's synchronous answer): 404 or 503 as ``output_response``."""
    if not job.has_output:
        raise file_not_found()
    with _open(job.output_file) as handle:
        return handle.read()


def output_chunks(job: RemovalJob, *, chunk_size: int = 1024 * 1024):
    """The result's bytes in chunks, for a streamed archive (a batch's ZIP)."""
    handle = _open(job.output_file)
    try:
        while chunk := handle.read(chunk_size):
            yield chunk
    finally:
        handle.close()


def input_response(job: RemovalJob) -> HttpResponse:
    """The uploaded image, for its owner or an admin: 200, 404, 410 or 503."""
    if not job.has_live_input:
        raise ApplicationError(
            "This upload has expired and was deleted.", code="expired", status_code=410
        )
    response = _file_response(
        job.input_file,
        content_type=INPUT_CONTENT_TYPES.get(job.input_format, "application/octet-stream"),
        filename=job.input_file.name.rsplit("/", 1)[-1],
    )
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
