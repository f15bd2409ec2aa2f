"""The admin for accounts and API keys."""

from accounts.models import ApiKey
from accounts.services import add_member, create_api_key
from billing.models import LedgerEntry
from billing.selectors import ledger_sum


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


def test_an_admin_grants_credits_with_a_reason(admin_client, account):
    response = admin_client.post(
        credits_url(account), {"operation": "grant", "amount": "250", "reason": "Top-up"}
    )
    assert response.status_code == 302
    entry = LedgerEntry.objects.order_by("-id").first()
    assert (entry.kind, entry.amount, entry.note) == ("grant", 250, "Top-up (by admin)")
    account.refresh_from_db()
    assert account.credit_balance == 1250 == ledger_sum(account=account)


def test_an_admin_adjusts_credits_down(admin_client, account):
    admin_client.post(
        credits_url(account), {"operation": "adjust", "amount": "-100", "reason": "Duplicate"}
    )
    account.refresh_from_db()
    assert account.credit_balance == 900
    assert LedgerEntry.objects.filter(kind="adjust", amount=-100).exists()


def test_an_adjustment_cannot_take_the_balance_below_zero(admin_client, account):
    response = admin_client.post(
        credits_url(account), {"operation": "adjust", "amount": "-5000", "reason": "Oops"}
    )
    assert response.status_code == 200
    assert "Insufficient credits" in response.content.decode()
    account.refresh_from_db()
    assert account.credit_balance == 1000
    assert LedgerEntry.objects.count() == 1


def test_a_grant_must_be_positive_and_have_a_reason(admin_client, account):
    response = admin_client.post(credits_url(account), {"operation": "grant", "amount": "-5"})
    html = response.content.decode()
    assert "This field is required." in html
    response = admin_client.post(
        credits_url(account), {"operation": "grant", "amount": "-5", "reason": "x"}
    )
    assert "A grant must be a positive number of credits." in response.content.decode()
    assert LedgerEntry.objects.count() == 1


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


def test_staff_without_permissions_cannot_grant_credits(client, account, django_user_model):
    staff = django_user_model.objects.create_user("clerk", password="pw-clerk-123", is_staff=True)
    client.force_login(staff)
    response = client.post(
        credits_url(account), {"operation": "grant", "amount": "10", "reason": "x"}
    )
    assert response.status_code == 403
    assert LedgerEntry.objects.count() == 1
