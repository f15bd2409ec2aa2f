"""GET /api/account: the balance and the price, for the presenting key."""

from rest_framework.test import APIClient

from accounts.services import create_api_key, revoke_api_key
from billing.services import adjust_credits
from tests.removal.helpers import assert_json_error


def test_it_shows_the_balance_and_price_of_the_keys_account(api_client, account, other_account):
    response = api_client.get("/api/account")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["account"] == "acme"
    assert body["credit_balance"] == 1000
    assert body["price_per_request"] == 25
    assert body["requests_affordable"] == 40
    assert body["api_key"]["name"] == "test"
    assert body["api_key"]["prefix"]


def test_it_reads_the_balance_fresh(api_client, account):
    adjust_credits(account=account, amount=-990, note="test")
    body = api_client.get("/api/account").json()
    assert body["credit_balance"] == 10
    assert body["requests_affordable"] == 0


def test_it_follows_the_price_setting(api_client, account, settings):
    settings.REMOVAL_PRICE_CREDITS = 100
    body = api_client.get("/api/account").json()
    assert body["price_per_request"] == 100
    assert body["requests_affordable"] == 10


def test_it_shows_another_key_its_own_account(other_account, account):
    _, key = create_api_key(account=other_account, name="theirs")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    body = client.get("/api/account").json()
    assert body["account"] == "outsider"
    assert body["api_key"]["name"] == "theirs"


def test_it_needs_a_valid_key(anon_client, account):
    assert_json_error(anon_client.get("/api/account"), 401, "missing_api_key")
    anon_client.credentials(HTTP_X_API_KEY="nope.nope")
    assert_json_error(anon_client.get("/api/account"), 401, "invalid_api_key")


def test_a_revoked_key_is_refused(account):
    key_obj, key = create_api_key(account=account, name="old")
    revoke_api_key(api_key=key_obj)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    assert_json_error(client.get("/api/account"), 401, "invalid_api_key")
