"""Reading upload bodies within MAX_UPLOAD_BYTES: an oversized body is refused
with a 413 while it is read (or before), never stored whole; chunked bodies
are read within the limit, or refused clearly."""

import io
import json
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import MemoryFileUploadHandler, StopUpload
from django.http import HttpResponse
from django.test import RequestFactory

from doors.uploads import REFUSAL_ATTRIBUTE, ChunkedBodyMiddleware, MaxUploadSizeHandler
from tests.images import photo_bytes, solid_png
from tests.removal.helpers import assert_json_error, assert_nothing_charged, multipart_body

URL = "/paid/image/remove/background"

BOUNDARY = "xyzzy"


def multipart(data: bytes) -> bytes:
    """A body of one file part, a.png (tests/e2e/test_production_server.py sends it too)."""
    return multipart_body([("file", "a.png", data)], boundary=BOUNDARY)


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


# --- MaxUploadSizeHandler: the limit, while the body is read -----------------------------


def post(client, data: bytes):
    upload = SimpleUploadedFile("upload.png", data, content_type="application/octet-stream")
    return client.post(URL, {"file": upload, "model": "u2netp"}, format="multipart")


def test_it_refuses_a_body_whose_length_is_over_the_limit_before_reading_it(
    api_client, account, settings
):
    settings.MAX_UPLOAD_BYTES = 100_000
    with mock.patch.object(
        MaxUploadSizeHandler, "receive_data_chunk", side_effect=AssertionError("read the body")
    ):
        response = post(api_client, b"\x89PNG\r\n\x1a\n" + b"\0" * 1_000_000)
    body = assert_json_error(response, 413, "file_too_large")
    assert "the limit is 0.1 MB" in body["error"]
    assert_nothing_charged(account)


def test_it_stops_reading_a_file_part_once_it_passes_the_limit(api_client, account, settings):
    """Under the Content-Length slack but over the limit: cut off while streaming."""
    settings.MAX_UPLOAD_BYTES = 100_000
    seen_downstream = []
    original = MaxUploadSizeHandler.receive_data_chunk

    def counting(self, raw_data, start):
        passed = original(self, raw_data, start)
        seen_downstream.append(len(passed))
        return passed

    with mock.patch.object(MaxUploadSizeHandler, "receive_data_chunk", counting):
        response = post(api_client, b"\x89PNG\r\n\x1a\n" + b"\0" * 150_000)
    assert_json_error(response, 413, "file_too_large")
    # Django's other handlers (memory, temporary file) never got more than
    # the limit: the rest of the body was not stored anywhere.
    assert 0 < sum(seen_downstream) <= 100_000
    assert_nothing_charged(account)


def test_the_size_guard_stops_the_parse_on_the_first_chunk_past_the_limit(rf):
    request = rf.post("/")
    handler = MaxUploadSizeHandler(request, limit=10)
    handler.new_file("file", "a.png", "image/png", 100)
    assert handler.receive_data_chunk(b"12345", 0) == b"12345"
    assert handler.receive_data_chunk(b"12345", 5) == b"12345"
    with pytest.raises(StopUpload) as stop:
        handler.receive_data_chunk(b"1", 10)
    assert stop.value.connection_reset  # the rest of the body stays unread
    assert getattr(request, REFUSAL_ATTRIBUTE) == "File too large: the limit is 0.0 MB."


@pytest.mark.weights
def test_a_file_at_exactly_the_limit_is_accepted(api_client, account, settings):
    data = solid_png(20, 20)
    settings.MAX_UPLOAD_BYTES = len(data)
    with mock.patch("removal.services.enqueue_job"):
        response = post(api_client, data)
    assert response.status_code == 202, response.content


@pytest.mark.parametrize("size", [1_000_000, 150_000])
def test_the_web_page_refuses_an_oversized_upload_with_413_not_a_csrf_error(
    csrf_client, account, settings, size
):
    """The CSRF middleware parses the body before the view: the guard holds
    there too, and ``csrf_failure`` says what really happened."""
    settings.MAX_UPLOAD_BYTES = 100_000
    token = csrf_client.cookies["csrftoken"].value
    upload = SimpleUploadedFile("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * size)
    stored = []
    original = MemoryFileUploadHandler.receive_data_chunk

    def counting(self, raw_data, start):
        stored.append(len(raw_data))
        return original(self, raw_data, start)

    with mock.patch.object(MemoryFileUploadHandler, "receive_data_chunk", counting):
        response = csrf_client.post(
            "/jobs/",
            {"csrfmiddlewaretoken": token, "file": upload, "model": "u2netp"},
            HTTP_ACCEPT="application/json",
        )
    assert_json_error(response, 413, "file_too_large")
    assert sum(stored) <= 100_000  # never more than the limit was kept
    assert_nothing_charged(account)


@pytest.mark.weights
def test_the_web_pages_batch_body_has_the_batchs_limit_and_each_photo_its_own(
    customer_client, account, settings
):
    """Several photos at once add up past MAX_UPLOAD_BYTES (the batch's
    limit holds for the body), but each one is still held to it."""
    photo = photo_bytes("coffee")
    settings.MAX_UPLOAD_BYTES = len(photo) + 100
    settings.BATCH_MAX_BYTES = 10 * len(photo)

    def send(*photos: bytes):
        files = [SimpleUploadedFile(f"{n}.jpg", data) for n, data in enumerate(photos)]
        return customer_client.post(
            "/jobs/batch/", {"files": files, "model": "u2netp"}, HTTP_ACCEPT="application/json"
        )

    accepted = send(photo, photo, photo)
    assert accepted.status_code == 202, accepted.content
    assert accepted.json()["charged_credits"] == 75

    refused = send(photo, photo + b"\0" * 200)
    assert_json_error(refused, 413, "file_too_large")
    account.refresh_from_db()
    assert account.credit_balance == 925
