"""Refusing an oversized upload while it is read, never after.

Django spools a large upload to a temporary file as it arrives; this
handler sits first in the chain and stops the read as soon as the file
part passes MAX_UPLOAD_BYTES, so an endless body costs at most the limit
in disk and one chunk in memory. A body whose Content-Length alone is
over the limit is refused before a byte of it is read.
"""

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest

from removal.services import FileTooLarge, too_large_message

# Room for the multipart envelope (boundaries, part headers, the model
# field) on top of the file itself before the Content-Length check fires.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class MaxUploadSizeHandler(FileUploadHandler):
    """Counts the bytes of each file part and aborts past the limit."""

    def __init__(self, request: HttpRequest | None = None, *, limit: int | None = None):
        super().__init__(request)
        self.limit = limit if limit is not None else settings.MAX_UPLOAD_BYTES
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length is not None and content_length > self.limit + MULTIPART_OVERHEAD_BYTES:
            raise FileTooLarge(too_large_message(content_length, self.limit))
        return None

    def new_file(self, *args, **kwargs):
        self.received = 0
        super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            raise FileTooLarge(too_large_message(self.received, self.limit, at_least=True))
        return raw_data

    def file_complete(self, file_size: int):
        return None


def limit_upload_size(request: HttpRequest) -> None:
    """Puts the size guard in front of Django's own handlers; call before parsing."""
    request.upload_handlers.insert(0, MaxUploadSizeHandler(request))
