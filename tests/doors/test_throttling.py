"""The per-key submission limit: 429 with Retry-After, and nothing charged."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from accounts.services import create_api_key
from billing.models import LedgerEntry
from tests.images import solid_png
from tests.removal.helpers import assert_json_error

URL = "/paid/image/remove/background"


def post(client):
    upload = SimpleUploadedFile("a.png", solid_png())
    return client.post(URL, {"file": upload, "model": "u2netp"}, format="multipart")


@pytest.mark.weights
def test_it_answers_429_with_retry_after_past_the_limit_and_charges_nothing(
    api_client, account, settings
):
    settings.REMOVAL_RATE_LIMIT = "3/minute"
    assert [post(api_client).status_code for _ in range(3)] == [202, 202, 202]

    response = post(api_client)
    body = assert_json_error(response, 429, "rate_limited")
    retry_after = int(response["Retry-After"])
    assert 0 < retry_after <= 60
    assert f"retry in {retry_after} seconds" in body["error"]
    assert LedgerEntry.objects.filter(account=account, kind="charge").count() == 3
    account.refresh_from_db()
    assert account.credit_balance == 1000 - 3 * 25


@pytest.mark.weights
def test_the_limit_is_per_key(api_client, account, settings):
    settings.REMOVAL_RATE_LIMIT = "1/minute"
    assert post(api_client).status_code == 202
    assert post(api_client).status_code == 429
    _, second_key = create_api_key(account=account, name="second")
    other = APIClient()
    other.credentials(HTTP_X_API_KEY=second_key)
    assert post(other).status_code == 202


def test_a_throttled_request_is_refused_before_its_body_is_read(api_client, account, settings):
    settings.REMOVAL_RATE_LIMIT = "1/minute"
    post(api_client)
    response = api_client.generic(
        "POST", URL, b"garbage", content_type="multipart/form-data; boundary=nope"
    )
    assert_json_error(response, 429, "rate_limited")


@pytest.mark.weights
def test_an_empty_setting_turns_the_limit_off(api_client, account, settings):
    settings.REMOVAL_RATE_LIMIT = ""
    assert {post(api_client).status_code for _ in range(5)} == {202}


@pytest.mark.weights
def test_status_polling_is_not_limited(api_client, account, settings):
    settings.REMOVAL_RATE_LIMIT = "1/minute"
    task_id = post(api_client).json()["task_id"]
    assert {api_client.get(f"/api/get/{task_id}").status_code for _ in range(5)} == {200}
