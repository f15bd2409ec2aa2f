"""The customer dashboard: the balance, the jobs and the API keys."""

import pytest

from accounts.models import ApiKey
from accounts.services import create_api_key
from tests.job_factory import completed_job, failed_job


@pytest.mark.weights
def test_the_dashboard_shows_the_balance_jobs_and_keys(customer_client, account):
    completed = completed_job(account)
    failed = failed_job(account)
    api_key, plaintext = create_api_key(account=account, name="production")
    html = customer_client.get("/dashboard/").content.decode()
    assert 'data-testid="dashboard-balance">975<' in html
    assert f"/output/{completed.id}_output.png" in html
    assert f"/jobs/{failed.id}/" in html
    assert "Refunded" in html
    assert "production" in html
    assert f"{api_key.prefix}…" in html
    assert plaintext not in html
    assert api_key.hashed_key not in html


def test_it_shows_a_new_key_once(customer_client, account):
    response = customer_client.post("/dashboard/keys/", {"name": "website"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    plaintext = response.context["new_key"]
    assert plaintext in response.content.decode()
    api_key = ApiKey.objects.get_from_key(plaintext)
    assert (api_key.account, api_key.name) == (account, "website")
    assert plaintext not in customer_client.get("/dashboard/").content.decode()


def test_a_new_key_works_against_the_api(customer_client, account):
    plaintext = customer_client.post("/dashboard/keys/", {"name": ""}).context["new_key"]
    response = customer_client.get("/api/get/not-a-task", HTTP_X_API_KEY=plaintext)
    assert response.json()["code"] == "task_not_found"
    assert ApiKey.objects.get_from_key(plaintext).name == "default"


def test_it_refuses_a_key_name_that_is_too_long(customer_client):
    response = customer_client.post("/dashboard/keys/", {"name": "x" * 51})
    assert response.status_code == 400
    assert "at most 50 characters" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_it_revokes_a_key_for_good(customer_client, account, anon_client):
    api_key, plaintext = create_api_key(account=account, name="old")
    response = customer_client.post(f"/dashboard/keys/{api_key.prefix}/revoke/", follow=True)
    assert "is revoked and stops working now" in response.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked
    api = anon_client.post("/paid/image/remove/background", HTTP_X_API_KEY=plaintext)
    assert api.status_code == 401


def test_it_cannot_revoke_another_accounts_key(customer_client, other_account):
    api_key, _ = create_api_key(account=other_account, name="theirs")
    response = customer_client.post(f"/dashboard/keys/{api_key.prefix}/revoke/", follow=True)
    assert "does not exist in your account" in response.content.decode()
    api_key.refresh_from_db()
    assert not api_key.revoked


def test_revoking_takes_a_post(customer_client, account):
    api_key, _ = create_api_key(account=account, name="old")
    assert customer_client.get(f"/dashboard/keys/{api_key.prefix}/revoke/").status_code == 405
    api_key.refresh_from_db()
    assert not api_key.revoked
