"""Reading upload bodies: chunked bodies are read within the limit, or refused clearly."""

import io
import json

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from doors.uploads import ChunkedBodyMiddleware
from tests.images import solid_png

BOUNDARY = "xyzzy"


def multipart(data: bytes) -> bytes:
    return (
        (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def chunked_request(body: bytes, *, server_dechunked: bool):
    request = RequestFactory().generic(
        "POST",
        "/paid/image/remove/background",
        b"",
        CONTENT_TYPE=f"multipart/form-data; boundary={BOUNDARY}",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    request.META.pop("CONTENT_LENGTH", None)
    request.META["wsgi.input"] = io.BytesIO(body)
    if server_dechunked:
        request.META["wsgi.input_terminated"] = True
    return request


def seen_files(request) -> HttpResponse:
    names = {name: upload.read() for name, upload in request.FILES.items()}
    return HttpResponse(str(len(names["file"])))


def test_a_dechunked_body_is_read_and_parsed_with_its_real_length():
    image = solid_png()
    request = chunked_request(multipart(image), server_dechunked=True)
    response = ChunkedBodyMiddleware(seen_files)(request)
    assert response.status_code == 200
    assert response.content == str(len(image)).encode()


def test_a_chunked_body_over_the_limit_is_a_413_before_the_view(settings):
    settings.MAX_UPLOAD_BYTES = 100_000
    request = chunked_request(multipart(b"\0" * 300_000), server_dechunked=True)
    response = ChunkedBodyMiddleware(pytest.fail)(request)
    assert response.status_code == 413
    assert json.loads(response.content)["code"] == "file_too_large"


def test_a_server_that_cannot_dechunk_gets_a_clear_411():
    request = chunked_request(multipart(solid_png()), server_dechunked=False)
    response = ChunkedBodyMiddleware(pytest.fail)(request)
    assert response.status_code == 411
    body = json.loads(response.content)
    assert body["code"] == "length_required"
    assert "Content-Length" in body["error"]


def test_a_body_with_a_length_is_left_to_django():
    request = RequestFactory().post("/x", {"a": "b"})
    response = ChunkedBodyMiddleware(lambda r: HttpResponse(r.POST["a"]))(request)
    assert response.content == b"b"
