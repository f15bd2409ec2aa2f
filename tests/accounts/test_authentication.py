import pytest
from django.db import connection

from accounts.models import ApiKey
from accounts.services import create_api_key, revoke_api_key
from tests.removal.helpers import assert_json_error

pytestmark = pytest.mark.django_db

PROBE = "/api/get/00000000-0000-4000-8000-000000000000"


def test_the_key_is_stored_as_prefix_and_hash_only(account):
    key_obj, key = create_api_key(account=account, name="ci")
    prefix, _, secret = key.partition(".")
    stored = ApiKey.objects.get(pk=key_obj.pk)
    assert stored.prefix == prefix
    assert key not in stored.hashed_key and secret not in stored.hashed_key
    assert stored.hashed_key.startswith("sha512$$")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        for row in cursor.fetchall():
            assert not any(secret in str(value) for value in row)


def test_a_valid_key_is_accepted_and_its_last_use_recorded(anon_client, account):
    key_obj, key = create_api_key(account=account)
    assert key_obj.last_used_at is None
    anon_client.credentials(HTTP_X_API_KEY=key)
    assert anon_client.get(PROBE).status_code == 404  # authenticated, task unknown
    key_obj.refresh_from_db()
    assert key_obj.last_used_at is not None


def test_a_wrong_key_with_a_valid_prefix_is_refused(anon_client, account):
    _, key = create_api_key(account=account)
    anon_client.credentials(HTTP_X_API_KEY=key.split(".")[0] + ".wrongsecret")
    response = anon_client.get(PROBE)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"


def test_a_revoked_key_is_refused(anon_client, account):
    key_obj, key = create_api_key(account=account)
    revoke_api_key(api_key=key_obj)
    anon_client.credentials(HTTP_X_API_KEY=key)
    assert anon_client.get(PROBE).status_code == 401


def test_an_absurdly_long_key_is_refused_without_a_lookup(anon_client, db):
    anon_client.credentials(HTTP_X_API_KEY="x" * 5000)
    assert anon_client.get(PROBE).status_code == 401


@pytest.mark.parametrize("key", ["", "   ", "x" * 5000, "not-a-key", "\u00e9\u00e9.\u00e9\u00e9"])
def test_garbage_keys_are_refused_with_a_json_401(anon_client, account, key):
    response = anon_client.post(
        "/paid/image/remove/background", {}, format="multipart", HTTP_X_API_KEY=key
    )
    assert_json_error(response, 401, "invalid_api_key")
