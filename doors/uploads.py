"""Refusing an oversized upload while it is read, never after.

``MaxUploadSizeHandler`` is first in FILE_UPLOAD_HANDLERS, so it guards
every multipart body Django parses: the API, the web page (whose body the
CSRF middleware parses before the view runs) and the admin. A body whose
Content-Length alone is over the limit is not read at all; otherwise the
read stops as soon as a file part passes MAX_UPLOAD_BYTES, so an endless
body costs at most the limit on disk and one chunk in memory.

An API door reads a larger body (a base64 image in a text field): its
parser marks the request with the API's limit, which then raises the
Content-Length check's (revid/parsers.py).

The handler cannot answer the request itself (it may run inside a
middleware), so it marks the request and stops the parse;
``uploaded_image`` turns the mark into the 413 in the view.
"""

import tempfile

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, QueryDict
from django.utils.datastructures import MultiValueDict

from removal.submissions import FileTooLarge, too_large_message
from revid.parsers import BODY_LIMIT_ATTRIBUTE, text_body_limit

# Room for the multipart envelope (boundaries, part headers, the model
# field) on top of the file itself before the Content-Length check fires.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
REFUSAL_ATTRIBUTE = "upload_refused_message"
# The batch door's path: its body and its archive part have the batch's limit.
BATCH_PATH = "/paid/image/remove/background/batch"
# The upload page's several photos at once: the body has the batch's limit
# (each photo still MAX_UPLOAD_BYTES; no archive part).
WEB_BATCH_PATH = "/jobs/batch/"


class MaxUploadSizeHandler(FileUploadHandler):
    """Counts the bytes of each file part and stops the parse past the limit."""

    def __init__(self, request: HttpRequest | None = None, *, limit: int | None = None):
        super().__init__(request)
        self.limit = limit if limit is not None else settings.MAX_UPLOAD_BYTES
        self.received = 0

    def _refuse(self, message: str) -> None:
        if self.request is not None:
            setattr(self.request, REFUSAL_ATTRIBUTE, message)

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # A batch's body holds many images: it may reach BATCH_MAX_BYTES, each
        # file part still at most MAX_UPLOAD_BYTES (an archive, the batch's).
        limit = self.limit
        if self.request is not None and self.request.path in (BATCH_PATH, WEB_BATCH_PATH):
            limit = max(self.limit, settings.BATCH_MAX_BYTES)
        body_limit = limit + MULTIPART_OVERHEAD_BYTES
        # An API door's body may carry a base64 image in a text field: its
        # parser marks the request with its own limit (revid/parsers.py).
        body_limit = max(body_limit, getattr(self.request, BODY_LIMIT_ATTRIBUTE, 0))
        if content_length is not None and content_length > body_limit:
            self._refuse(too_large_message(content_length, limit))
            # Returning a result skips Django's parse: not a byte is read.
            return QueryDict(encoding=encoding), MultiValueDict()
        return None

    def new_file(self, field_name, *args, **kwargs):
        self.received = 0
        self.part_limit = self.limit
        if field_name == "archive" and self.request is not None and self.request.path == BATCH_PATH:
            self.part_limit = max(self.limit, settings.BATCH_MAX_BYTES)
        super().new_file(field_name, *args, **kwargs)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        limit = getattr(self, "part_limit", self.limit)
        if self.received > limit:
            self._refuse(too_large_message(self.received, limit, at_least=True))
            # connection_reset: leave the rest of the body unread.
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int):
        return None


class ChunkedBodyMiddleware:
    """Lets a body sent without Content-Length (``Transfer-Encoding: chunked``) in.

    Django reads a body by its Content-Length, so a chunked upload looks
    empty and would be refused as "no file". Where the server has already
    de-chunked the body (gunicorn says so with ``wsgi.input_terminated``),
    it is read here, at most the API's limit (MAX_UPLOAD_BYTES as base64,
    plus slack: 413 past that, the rest unread), and handed on with its real
    length, which each page's own limit then checks. A server
    that cannot give us the body (Django's development server) gets a 411
    that says to send a Content-Length. Must come before anything that
    reads the body (the CSRF middleware).
    """

    SPOOL_IN_MEMORY_BYTES = 2 * 1024 * 1024
    READ_SIZE = 64 * 1024

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        meta = request.META
        chunked = "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not meta.get("CONTENT_LENGTH"):
            refusal = self._read_whole_body(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)

    def _read_whole_body(self, request: HttpRequest):
        from revid.errors import error_response_for

        if not request.META.get("wsgi.input_terminated"):
            return error_response_for(
                request,
                "This server needs a Content-Length header on the request body (chunked "
                "transfer encoding is not supported here); send the file with its length.",
                "length_required",
                411,
            )
        limit = text_body_limit()
        # Not a context manager: the request reads it after this returns.
        body = tempfile.SpooledTemporaryFile(max_size=self.SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
        size = 0
        stream = request.META["wsgi.input"]
        while chunk := stream.read(self.READ_SIZE):
            size += len(chunk)
            if size > limit:
                body.close()
                return error_response_for(
                    request,
                    too_large_message(size, settings.MAX_UPLOAD_BYTES, at_least=True),
                    FileTooLarge.code,
                    FileTooLarge.status_code,
                )
            body.write(chunk)
        body.seek(0)
        request.META["CONTENT_LENGTH"] = str(size)
        request._stream = LimitedStream(body, size)
        return None


def raise_if_upload_refused(request) -> None:
    """The 413 for a body that ``MaxUploadSizeHandler`` cut off. Takes a Django or DRF request."""
    django_request = getattr(request, "_request", request)
    refused = getattr(django_request, REFUSAL_ATTRIBUTE, None)
    if refused:
        raise FileTooLarge(refused)


def csrf_failure(request: HttpRequest, reason: str = ""):
    """An oversized upload to the web page was never read, so its CSRF token
    was not either: say what really happened (413), not "CSRF failed"."""
    from django.views.csrf import csrf_failure as django_csrf_failure

    from revid.errors import error_response

    refused = getattr(request, REFUSAL_ATTRIBUTE, None)
    if refused:
        return error_response(refused, FileTooLarge.code, FileTooLarge.status_code)
    return django_csrf_failure(request, reason=reason)
