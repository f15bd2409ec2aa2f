"""API keys at rest and revoked: no table holds a usable key, a revoked one opens nothing."""

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.services import revoke_api_key
from tests.removal.helpers import SUBMIT, accepted_task, assert_json_error

pytestmark = pytest.mark.weights


def every_stored_value() -> list[str]:
    """Every cell of every table, as text."""
    values = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for cell in row:
                    if isinstance(cell, bytes | memoryview):
                        cell = bytes(cell).decode("latin-1")
                    values.append(str(cell))
    return values


def test_no_table_holds_a_usable_api_key(api_client, account, api_key):
    # Use the key so every place that could record it has had the chance.
    accepted_task(api_client)
    api_client.get("/api/account")
    prefix, secret = api_key.split(".", 1)
    assert len(secret) >= 32

    stored = every_stored_value()
    assert stored, "the scan read nothing"
    assert not [v for v in stored if api_key in v]
    assert not [v for v in stored if secret in v]
    # The public prefix is stored (that is how a key is found); only that.
    assert any(prefix in v for v in stored)


def test_a_revoked_key_is_refused_everywhere(account, api_key):
    from accounts.models import ApiKey

    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    task_id = accepted_task(client)
    revoke_api_key(api_key=ApiKey.objects.get(account=account))

    assert_json_error(client.post(SUBMIT, {}, format="multipart"), 401, "invalid_api_key")
    assert_json_error(client.get("/api/account"), 401, "invalid_api_key")
    assert_json_error(client.get(f"/api/get/{task_id}"), 401, "invalid_api_key")
