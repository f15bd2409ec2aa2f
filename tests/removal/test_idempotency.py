"""Idempotency-Key: a retried POST returns the same task and is charged once."""

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient

from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from removal.models import RemovalJob
from tests.images import photo_bytes, solid_png
from tests.removal.helpers import assert_json_error

URL = "/paid/image/remove/background"


def post(client, data: bytes, key: str | None, model: str = "u2netp"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    upload = SimpleUploadedFile("photo.png", data)
    return client.post(URL, {"file": upload, "model": model}, format="multipart", **headers)


@pytest.mark.weights
def test_a_retry_with_the_same_key_returns_the_same_task_and_charges_once(api_client, account):
    data = solid_png()
    first = post(api_client, data, "order-42")
    second = post(api_client, data, "order-42")
    assert first.status_code == second.status_code == 202
    assert first.json()["task_id"] == second.json()["task_id"]
    assert RemovalJob.objects.filter(account=account).count() == 1
    assert LedgerEntry.objects.filter(account=account, kind="charge").count() == 1
    account.refresh_from_db()
    assert account.credit_balance == 975 == ledger_sum(account=account)


@pytest.mark.weights
def test_the_same_key_with_a_different_file_is_refused_with_409(api_client, account):
    post(api_client, solid_png(color=(1, 2, 3)), "order-42")
    response = post(api_client, solid_png(color=(3, 2, 1)), "order-42")
    body = assert_json_error(response, 409, "idempotency_conflict")
    assert "Idempotency-Key" in body["error"]
    assert LedgerEntry.objects.filter(account=account, kind="charge").count() == 1


@pytest.mark.weights
def test_the_same_key_with_a_different_model_is_refused_with_409(api_client, account):
    data = solid_png()
    post(api_client, data, "order-42", model="u2netp")
    assert_json_error(post(api_client, data, "order-42", model="u2net"), 409)


@pytest.mark.weights
def test_different_keys_make_different_tasks(api_client, account):
    data = solid_png()
    first = post(api_client, data, "a").json()["task_id"]
    second = post(api_client, data, "b").json()["task_id"]
    assert first != second
    assert LedgerEntry.objects.filter(account=account, kind="charge").count() == 2


@pytest.mark.weights
def test_without_a_key_every_post_is_a_new_task(api_client, account):
    data = solid_png()
    post(api_client, data, None)
    post(api_client, data, None)
    assert RemovalJob.objects.filter(account=account).count() == 2


@pytest.mark.weights
def test_keys_belong_to_one_account(api_client, account, other_account):
    from accounts.services import create_api_key

    _, other_key = create_api_key(account=other_account, name="other")
    other_client = APIClient()
    other_client.credentials(HTTP_X_API_KEY=other_key)
    data = solid_png()
    mine = post(api_client, data, "shared-key").json()["task_id"]
    theirs = post(other_client, data, "shared-key").json()["task_id"]
    assert mine != theirs


@pytest.mark.weights
def test_a_key_whose_first_request_was_refused_can_be_used_again(api_client, account):
    assert_json_error(post(api_client, b"not an image", "order-7"), 415)
    response = post(api_client, solid_png(), "order-7")
    assert response.status_code == 202


@pytest.mark.parametrize("key", ["x" * 256, "has space", "tab\there", "caf\u00e9"])
def test_it_refuses_malformed_idempotency_keys(api_client, account, key):
    response = post(api_client, solid_png(), key)
    assert_json_error(response, 400, "invalid_idempotency_key")
    assert not RemovalJob.objects.exists()


@pytest.mark.weights
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_make_one_task_and_one_charge(account, api_key):
    """Both retries pass the lookup; the unique constraint lets one insert in."""
    data = photo_bytes("astronaut", "PNG")
    results = []
    barrier = threading.Barrier(4)

    def submit():
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=api_key)
        try:
            barrier.wait()
            results.append(post(client, data, "race-1"))
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in results] == [202] * 4, [r.content for r in results]
    assert len({r.json()["task_id"] for r in results}) == 1
    assert LedgerEntry.objects.filter(account=account, kind="charge").count() == 1
    account.refresh_from_db()
    assert account.credit_balance == 975 == ledger_sum(account=account)
