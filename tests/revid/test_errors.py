"""One JSON error shape for every refusal, whatever raised it; never a 500 page.

The first part sends the seed API bodies and headers no well-behaved
client sends: Django's and DRF's own refusals (a parse error, a body too
large, too many fields, a wrong method) reach ``api_exception_handler``
and come back as the same JSON error as ours, charging nothing. The last
part is ``ApplicationErrorMiddleware``, which does the same for the plain
Django views of the web page.
"""

import json

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import RequestFactory

from revid.errors import ApplicationError, ApplicationErrorMiddleware
from revid.parsers import multipart_body_limit
from tests.images import solid_png
from tests.removal.helpers import assert_json_error, assert_nothing_charged, multipart_body

URL = "/paid/image/remove/background"


def raw_post(client, body: bytes, content_type: str, **extra):
    return client.generic("POST", URL, body, content_type=content_type, **extra)


# --- Malformed requests to an API door ---------------------------------------------


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
    assert_nothing_charged(account)


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
    body = multipart_body([("file", "a.png", solid_png()), ("model", None, b"u2netp")])
    response = raw_post(api_client, body, content_type)
    assert response.status_code in (400, 415), response.content
    assert_json_error(response, response.status_code)
    assert_nothing_charged(account)


@pytest.mark.weights
def test_it_refuses_a_body_cut_off_in_the_middle_of_a_part(api_client, account):
    body = multipart_body([("file", "a.png", solid_png())])
    response = raw_post(api_client, body[: len(body) // 2], "multipart/form-data; boundary=XyZ123")
    assert response.status_code in (400, 415), response.content
    assert_json_error(response, response.status_code)
    assert_nothing_charged(account)


def test_it_refuses_thousands_of_fields(api_client, account):
    body = multipart_body([("file", "a.png", solid_png())] + [("f", None, b"x")] * 1500)
    response = raw_post(api_client, body, "multipart/form-data; boundary=XyZ123")
    assert_json_error(response, 400, "malformed_request")
    assert_nothing_charged(account)


def test_it_refuses_hundreds_of_files(api_client, account):
    body = multipart_body([("file", f"{i}.png", b"x") for i in range(150)])
    response = raw_post(api_client, body, "multipart/form-data; boundary=XyZ123")
    assert_json_error(response, 400)
    assert_nothing_charged(account)


def test_it_refuses_a_huge_text_field(api_client, account):
    # Text fields may carry a base64 image, so 3 MB is read, and refused as a model name.
    body = multipart_body([("file", "a.png", solid_png()), ("model", None, b"m" * 3_000_000)])
    response = raw_post(api_client, body, "multipart/form-data; boundary=XyZ123")
    assert_json_error(response, 400, "unknown_model")
    # Past what a base64 image of MAX_UPLOAD_BYTES needs, the body is not read.
    body = multipart_body([("model", None, b"m" * multipart_body_limit())])
    response = raw_post(api_client, body, "multipart/form-data; boundary=XyZ123")
    assert_json_error(response, 413, "file_too_large")
    assert_nothing_charged(account)


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_get_a_json_405(api_client, method):
    response = getattr(api_client, method)(URL)
    assert_json_error(response, 405, "method_not_allowed")


# --- ApplicationErrorMiddleware: the plain views' errors -------------------------------


def answer(path: str, exception: Exception):
    """What the middleware makes of ``exception`` raised by a view at ``path``."""
    middleware = ApplicationErrorMiddleware(lambda request: HttpResponse("the view's answer"))
    return middleware.process_exception(RequestFactory().get(path), exception)


def test_the_middleware_is_last_so_it_sees_every_views_error():
    assert settings.MIDDLEWARE[-1] == "revid.errors.ApplicationErrorMiddleware"


def test_an_application_error_becomes_the_seed_dialects_json_error():
    error = ApplicationError("This job does not exist.", code="task_not_found", status_code=404)
    response = answer("/jobs/00000000-0000-4000-8000-000000000000/status", error)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {
        "success": False,
        "error": "This job does not exist.",
        "code": "task_not_found",
    }


def test_the_errors_headers_come_with_it():
    error = ApplicationError("Busy; try again.", code="service_busy", status_code=429)
    error.headers["Retry-After"] = "7"
    assert answer("/jobs/", error)["Retry-After"] == "7"


def test_under_remove_bgs_prefix_it_answers_in_remove_bgs_shape_and_status():
    response = answer("/v1.0/removebg", ApplicationError("No image.", code="file_required"))
    assert response.status_code == 400
    assert json.loads(response.content) == {
        "errors": [{"title": "No image given", "code": "missing_source", "detail": "No image."}]
    }
    unauthorised = ApplicationError("Log in.", code="login_required", status_code=401)
    assert answer("/v1.0/account", unauthorised).status_code == 403  # remove.bg's status


def test_it_leaves_any_other_exception_to_django():
    assert answer("/jobs/", ValueError("a bug")) is None


def test_a_view_that_raises_nothing_is_answered_by_the_view():
    middleware = ApplicationErrorMiddleware(lambda request: HttpResponse("the view's answer"))
    assert middleware(RequestFactory().get("/")).content == b"the view's answer"
