"""The admin for accounts and API keys."""

import json

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiKey
from accounts.services import add_member, create_api_key, revoke_api_key
from billing.services import open_account


def credits_url(account) -> str:
    return f"/admin/accounts/account/{account.pk}/credits/"


def test_the_account_page_shows_balance_users_keys_and_ledger(admin_client, account):
    add_member(account=account, username="alice")
    api_key, plaintext = create_api_key(account=account, name="production")
    html = admin_client.get(f"/admin/accounts/account/{account.pk}/change/").content.decode()
    assert "1000" in html
    assert "alice" in html
    assert "production" in html and f"{api_key.prefix}…" in html
    assert api_key.hashed_key not in html and plaintext not in html
    assert "Initial credits" in html
    assert credits_url(account) in html


def test_an_admin_creates_a_key_and_sees_it_once(admin_client, account):
    response = admin_client.post(
        "/admin/accounts/apikey/add/", {"account": account.pk, "name": "ci"}, follow=True
    )
    html = response.content.decode()
    api_key = ApiKey.objects.get()
    start = html.index('<code class="new-api-key">') + len('<code class="new-api-key">')
    plaintext = html[start : html.index("</code>", start)]
    assert ApiKey.objects.get_from_key(plaintext) == api_key
    assert api_key.name == "ci"
    again = admin_client.get("/admin/accounts/apikey/").content.decode()
    assert plaintext not in again
    assert api_key.hashed_key not in again
    assert f"{api_key.prefix}…" in again


def test_an_admin_revokes_a_key_after_confirming(admin_client, account):
    api_key, _ = create_api_key(account=account, name="old")
    url = f"/admin/accounts/apikey/{api_key.prefix}/revoke/"
    confirm = admin_client.get(url)
    assert "cannot be undone" in confirm.content.decode()
    api_key.refresh_from_db()
    assert not api_key.revoked
    response = admin_client.post(url, follow=True)
    assert "will never work again" in response.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked
    assert "already revoked" in admin_client.get(url).content.decode()


def test_keys_cannot_be_edited_or_deleted(admin_client, account):
    api_key, _ = create_api_key(account=account, name="keep")
    response = admin_client.post(
        f"/admin/accounts/apikey/{api_key.pk}/change/", {"name": "renamed", "revoked": ""}
    )
    assert response.status_code == 403
    delete = admin_client.post(f"/admin/accounts/apikey/{api_key.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    assert ApiKey.objects.get().name == "keep"


def test_the_account_list_counts_users_and_active_keys(admin_client, account):
    add_member(account=account, username="alice")
    add_member(account=account, username="bob")
    create_api_key(account=account, name="one")
    revoked, _ = create_api_key(account=account, name="two")
    revoke_api_key(api_key=revoked)
    html = admin_client.get("/admin/accounts/account/").content.decode()
    row = html.split("acme</a>")[1].split("</tr>")[0]
    assert '<td class="field-member_count">2</td>' in row
    assert '<td class="field-key_count">1</td>' in row


def test_the_account_list_costs_the_same_queries_for_one_account_or_many(
    admin_client, account, django_assert_num_queries
):
    add_member(account=account, username="alice")
    create_api_key(account=account, name="one")
    with CaptureQueriesContext(connection) as one_account:
        assert admin_client.get("/admin/accounts/account/").status_code == 200
    for number in range(5):
        other = open_account(name=f"customer-{number}", credits=10)
        add_member(account=other, username=f"user-{number}")
        create_api_key(account=other, name="key")
    with django_assert_num_queries(len(one_account)):
        response = admin_client.get("/admin/accounts/account/")
    assert "customer-4" in response.content.decode()


def test_the_key_list_costs_the_same_queries_for_one_key_or_many(
    admin_client, account, other_account, django_assert_num_queries
):
    create_api_key(account=account, name="one")
    with CaptureQueriesContext(connection) as one_key:
        assert admin_client.get("/admin/accounts/apikey/").status_code == 200
    for number in range(5):
        create_api_key(account=other_account, name=f"key-{number}")
    with django_assert_num_queries(len(one_key)):
        assert admin_client.get("/admin/accounts/apikey/").status_code == 200


def test_creating_a_key_is_logged_by_prefix_without_the_hash(admin_client, admin_user, account):
    admin_client.post("/admin/accounts/apikey/add/", {"account": account.pk, "name": "ci"})
    api_key = ApiKey.objects.get()
    entry = LogEntry.objects.get()
    assert entry.action_flag == ADDITION
    assert entry.user == admin_user
    assert entry.object_id == api_key.prefix
    assert entry.object_repr == "ci"
    assert json.loads(entry.change_message) == [{"added": {}}]
    assert api_key.hashed_key not in f"{entry.object_id} {entry.object_repr} {entry.change_message}"


def test_revoking_a_key_is_logged_once(admin_client, admin_user, account):
    api_key, _ = create_api_key(account=account, name="old")
    url = f"/admin/accounts/apikey/{api_key.prefix}/revoke/"
    admin_client.get(url)
    assert not LogEntry.objects.exists(), "the confirmation page changes nothing"
    admin_client.post(url)
    admin_client.post(url)
    entry = LogEntry.objects.get()
    assert entry.action_flag == CHANGE
    assert entry.user == admin_user
    assert entry.object_id == api_key.prefix
    assert entry.get_change_message() == "Revoked the key."


def test_a_key_log_entry_links_to_its_history_without_the_hash(admin_client, account):
    admin_client.post("/admin/accounts/apikey/add/", {"account": account.pk, "name": "ci"})
    api_key = ApiKey.objects.get()
    admin_client.post(f"/admin/accounts/apikey/{api_key.prefix}/revoke/")
    url = LogEntry.objects.order_by("id").first().get_admin_url()
    assert url == f"/admin/accounts/apikey/{api_key.prefix}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert api_key.hashed_key not in page.content.decode()
    history = admin_client.get(f"/admin/accounts/apikey/{api_key.prefix}/history/")
    html = history.content.decode()
    assert "Added." in html and "Revoked the key." in html
    assert api_key.hashed_key not in html
