"""Bodies and headers no well-behaved client sends: a JSON 4xx, never a 500."""

from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from removal.models import RemovalJob
from revid.parsers import multipart_body_limit
from tests.images import solid_png
from tests.removal.helpers import assert_json_error, assert_nothing_charged

URL = "/paid/image/remove/background"


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZ123") -> bytes:
    """A hand-built multipart body: (field name, file name or None, content)."""
    out = b""
    for name, filename, content in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def raw_post(client, body: bytes, content_type: str, **extra):
    return client.generic("POST", URL, body, content_type=content_type, **extra)


@pytest.mark.weights
@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        # JSON carries image_url or image_file_b64; a "file" in it is no file part.
        (b'{"file": "aGVsbG8=", "model": "u2net"}', "application/json", 400),
        (b"just some text", "text/plain", 415),
        (solid_png(), "image/png", 415),
        (b"model=u2net", "application/x-www-form-urlencoded", 400),
        (b"", "multipart/form-data; boundary=XyZ123", 400),
    ],
)
def test_it_refuses_bodies_that_are_not_a_multipart_upload(
    api_client, account, body, content_type, status
):
    response = raw_post(api_client, body, content_type)
    assert_json_error(response, status)
    assert_nothing_charged(account, balance=1000)


@pytest.mark.weights
@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",  # no boundary at all
        "multipart/form-data; boundary=",  # empty boundary
        "multipart/form-data; boundary=NotTheOneInTheBody",
        "multipart/form-data; boundary=" + "x" * 300,  # longer than RFC 2046 allows
        "multipart/form-data; boundary=\x00bad",
    ],
)
def test_it_refuses_a_broken_multipart_boundary(api_client, account, content_type):
    body = multipart([("file", "a.png", solid_png()), ("model", None, b"u2netp")])
    response = raw_post(api_client, body, content_type)
    assert response.status_code in (400, 415), response.content
    assert_json_error(response, response.status_code)
    assert_nothing_charged(account, balance=1000)


@pytest.mark.weights
def test_it_refuses_a_body_cut_off_in_the_middle_of_a_part(api_client, account):
    body = multipart([("file", "a.png", solid_png())])
    response = raw_post(api_client, body[: len(body) // 2], "multipart/form-data; boundary=XyZ123")
    assert response.status_code in (400, 415), response.content
    assert_json_error(response, response.status_code)
    assert_nothing_charged(account, balance=1000)


@pytest.mark.weights
def test_it_ignores_extra_fields(api_client, account):
    body = multipart(
        [
            ("file", "a.png", solid_png()),
            ("model", None, b"u2netp"),
            ("colour", None, b"blue"),
            ("attachment", "notes.txt", b"not an image"),
        ]
    )
    response = raw_post(api_client, body, "multipart/form-data; boundary=XyZ123")
    assert response.status_code == 202, response.content
    job = RemovalJob.objects.get(account=account)
    assert job.model_name == "u2netp"


def test_it_refuses_a_10_kb_model_name_and_quotes_only_a_little_of_it(api_client, account):
    upload = SimpleUploadedFile("a.png", solid_png())
    response = api_client.post(URL, {"file": upload, "model": "m" * 10_000}, format="multipart")
    body = assert_json_error(response, 400, "unknown_model")
    assert len(body["error"]) < 300
    assert_nothing_charged(account, balance=1000)


def test_it_refuses_a_model_sent_as_a_file(api_client, account):
    body = multipart([("file", "a.png", solid_png()), ("model", "model.txt", b"u2netp")])
    response = raw_post(api_client, body, "multipart/form-data; boundary=XyZ123")
    assert_json_error(response, 400, "invalid_model_field")
    assert_nothing_charged(account, balance=1000)


@pytest.mark.weights
def test_it_refuses_repeated_file_fields(api_client, account):
    body = multipart([("file", "a.png", solid_png()), ("file", "b.png", solid_png(10, 10))])
    response = raw_post(api_client, body, "multipart/form-data; boundary=XyZ123")
    assert_json_error(response, 400, "multiple_files")
    assert_nothing_charged(account, balance=1000)


@pytest.mark.weights
def test_it_refuses_a_file_sent_as_a_plain_field(api_client, account):
    body = multipart([("file", None, solid_png())])
    response = raw_post(api_client, body, "multipart/form-data; boundary=XyZ123")
    assert_json_error(response, 400, "file_required")
    assert_nothing_charged(account, balance=1000)


def test_it_refuses_thousands_of_fields(api_client, account):
    body = multipart([("file", "a.png", solid_png())] + [("f", None, b"x")] * 1500)
    response = raw_post(api_client, body, "multipart/form-data; boundary=XyZ123")
    assert_json_error(response, 400, "malformed_request")
    assert_nothing_charged(account, balance=1000)


def test_it_refuses_hundreds_of_files(api_client, account):
    body = multipart([("file", f"{i}.png", b"x") for i in range(150)])
    response = raw_post(api_client, body, "multipart/form-data; boundary=XyZ123")
    assert_json_error(response, 400)
    assert_nothing_charged(account, balance=1000)


@pytest.mark.weights
def test_it_accepts_odd_spacing_in_headers(account, api_key, anon_client):
    body = multipart([("file", "a.png", solid_png()), ("model", None, b"  u2netp  ")])
    with mock.patch("removal.services.enqueue_job"):
        response = anon_client.generic(
            "POST",
            URL,
            body,
            content_type='multipart/form-data ;  boundary="XyZ123"  ',
            HTTP_X_API_KEY=f"   {api_key}\t ",
        )
    assert response.status_code == 202, response.content
    assert RemovalJob.objects.get(account=account).model_name == "u2netp"


@pytest.mark.parametrize("key", ["", "   ", "x" * 5000, "not-a-key", "\u00e9\u00e9.\u00e9\u00e9"])
def test_it_refuses_garbage_api_keys_with_401(anon_client, account, key):
    response = anon_client.post(URL, {}, format="multipart", HTTP_X_API_KEY=key)
    assert_json_error(response, 401, "invalid_api_key")


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_get_a_json_405(api_client, method):
    response = getattr(api_client, method)(URL)
    assert_json_error(response, 405, "method_not_allowed")


def test_it_refuses_a_huge_text_field(api_client, account):
    # Text fields may carry a base64 image, so 3 MB is read, and refused as a model name.
    body = multipart([("file", "a.png", solid_png()), ("model", None, b"m" * 3_000_000)])
    response = raw_post(api_client, body, "multipart/form-data; boundary=XyZ123")
    assert_json_error(response, 400, "unknown_model")
    # Past what a base64 image of MAX_UPLOAD_BYTES needs, the body is not read.
    body = multipart([("model", None, b"m" * multipart_body_limit())])
    response = raw_post(api_client, body, "multipart/form-data; boundary=XyZ123")
    assert_json_error(response, 413, "file_too_large")
    assert_nothing_charged(account, balance=1000)
