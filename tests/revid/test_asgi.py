"""The ASGI application: request bodies bounded while they arrive, and the lifespan.

Called as the server calls it (scope, receive, send), without a server.
"""

import asyncio
import math

import pytest
from asgiref.sync import async_to_sync

from billing.models import LedgerEntry
from revid.asgi import application
from revid.parsers import multipart_body_limit
from tests.e2e.load_client import multipart
from tests.images import solid_png

URL = "/paid/image/remove/background"


class Exchange:
    """One request's messages: the body in ``chunks``; what came back in ``sent``."""

    def __init__(self, chunks: list[bytes], headers: list[tuple[bytes, bytes]]):
        self.chunks = list(chunks)
        self.headers = headers
        self.read = 0  # body messages the application took
        self.read_before_answer: int | None = None
        self.sent: list[dict] = []

    async def receive(self):
        if not self.chunks:
            # A client that sent its body waits for the answer, then goes.
            while not self.answered():
                await asyncio.sleep(0.01)
            return {"type": "http.disconnect"}
        self.read += 1
        body = self.chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(self.chunks)}

    def answered(self) -> bool:
        return any(m["type"] == "http.response.body" and not m.get("more_body") for m in self.sent)

    async def send(self, message):
        if self.read_before_answer is None:
            self.read_before_answer = self.read
        self.sent.append(message)

    def run(self, path: str = URL):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), *self.headers],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        async_to_sync(application)(scope, self.receive, self.send)
        start = self.sent[0]
        body = b"".join(m.get("body", b"") for m in self.sent[1:])
        return start["status"], dict(start["headers"]), body


def upload(api_key: str, data: bytes, *, declared: bool) -> tuple[list[bytes], list]:
    body, content_type = multipart({}, {"file": ("photo.png", data, "image/png")})
    chunks = [body[i : i + 1024 * 1024] for i in range(0, len(body), 1024 * 1024)]
    headers = [(b"content-type", content_type.encode()), (b"x-api-key", api_key.encode())]
    if declared:
        headers.append((b"content-length", str(len(body)).encode()))
    return chunks, headers


@pytest.mark.weights
def test_a_body_declared_over_the_limit_is_not_read_and_answered_413(
    transactional_db, account, api_key
):
    chunks, headers = upload(
        api_key, b"\x89PNG\r\n\x1a\n" + b"\0" * (30 * 1024 * 1024), declared=True
    )
    exchange = Exchange(chunks, headers)
    status, response_headers, body = exchange.run()
    assert status == 413
    assert b'"code":"file_too_large"' in body
    # Over the largest body any door reads (a multipart base64 field of 20 MB).
    assert b"30.0 MB; the limit is 20.0 MB" in body
    assert exchange.read_before_answer == 0  # not a byte of it
    assert response_headers[b"Connection"] == b"close"
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE).exists()


@pytest.mark.weights
def test_a_chunked_body_is_cut_as_soon_as_it_passes_the_limit(transactional_db, account, api_key):
    chunks, headers = upload(
        api_key, b"\x89PNG\r\n\x1a\n" + b"\0" * (40 * 1024 * 1024), declared=False
    )
    exchange = Exchange(chunks, headers)
    status, _, body = exchange.run()
    assert status == 413
    assert b"the limit is 20.0 MB" in body
    # Answered once the outer bound (a multipart base64 field of 20 MB) was
    # passed, not after the 40 MB.
    bound_mb = math.ceil(multipart_body_limit() / (1024 * 1024))
    assert bound_mb < 40
    assert exchange.read_before_answer <= bound_mb + 2


@pytest.mark.weights
def test_a_chunked_body_within_the_limit_gets_its_length_and_is_accepted(
    transactional_db, account, api_key
):
    chunks, headers = upload(api_key, solid_png(64, 48), declared=False)
    status, _, body = Exchange(chunks, headers).run()
    assert status == 202, body


def test_the_lifespan_starts_and_stops():
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message["type"])

    async_to_sync(application)({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
