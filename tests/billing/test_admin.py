"""Billing in the admin: the ledger is read-only (no add, no change, no
delete); credits change only through the account page's grant/adjust form."""

from billing.admin import LEDGER_ROWS_SHOWN
from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from billing.services import grant_credits


def credits_url(account) -> str:
    return f"/admin/accounts/account/{account.pk}/credits/"


def test_it_lists_the_ledger_filtered_by_account(admin_client, account, other_account):
    grant_credits(account=account, amount=5, note="Acme bonus")
    response = admin_client.get(f"/admin/billing/ledgerentry/?account__id__exact={account.pk}")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Acme bonus" in html
    rows = html.split('id="result_list"')[1].split("</table>")[0]
    assert "acme" in rows
    assert "outsider" not in rows


def test_it_shows_an_entry_read_only(admin_client, account):
    entry = LedgerEntry.objects.get(account=account)
    response = admin_client.get(f"/admin/billing/ledgerentry/{entry.pk}/change/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Initial credits" in html
    assert 'name="_save"' not in html
    assert 'name="note"' not in html


def test_it_refuses_to_change_an_entry(admin_client, account):
    entry = LedgerEntry.objects.get(account=account)
    response = admin_client.post(
        f"/admin/billing/ledgerentry/{entry.pk}/change/", {"amount": "99999", "note": "hack"}
    )
    assert response.status_code == 403
    entry.refresh_from_db()
    assert (entry.amount, entry.note) == (1000, "Initial credits")


def test_it_refuses_to_add_or_delete_entries(admin_client, account):
    entry = LedgerEntry.objects.get(account=account)
    assert admin_client.get("/admin/billing/ledgerentry/add/").status_code == 403
    response = admin_client.post(f"/admin/billing/ledgerentry/{entry.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


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


def test_staff_without_permissions_cannot_grant_credits(client, account, django_user_model):
    staff = django_user_model.objects.create_user("clerk", password="pw-clerk-123", is_staff=True)
    client.force_login(staff)
    response = client.post(
        credits_url(account), {"operation": "grant", "amount": "10", "reason": "x"}
    )
    assert response.status_code == 403
    assert LedgerEntry.objects.count() == 1


def test_the_account_page_shows_the_latest_ledger_rows_and_links_to_all(admin_client, account):
    for number in range(LEDGER_ROWS_SHOWN + 2):
        grant_credits(account=account, amount=1, note=f"bonus #{number}")
    html = admin_client.get(f"/admin/accounts/account/{account.pk}/change/").content.decode()
    ledger = html.split('class="form-row field-ledger"')[1]
    assert ledger.count("<tr>") == LEDGER_ROWS_SHOWN + 1  # the header and the rows
    assert f"bonus #{LEDGER_ROWS_SHOWN + 1}" in ledger
    assert "bonus #0<" not in ledger
    assert "+1" in ledger
    assert f"All {LEDGER_ROWS_SHOWN + 3} ledger entries" in ledger
    assert f"/admin/billing/ledgerentry/?account__id__exact={account.pk}" in ledger


def test_the_credits_form_shows_the_current_balance(admin_client, account):
    html = admin_client.get(credits_url(account)).content.decode()
    assert '<strong id="current-balance">1000</strong>' in html
    assert 'id="credits-form"' in html


def test_the_ledger_escapes_what_an_admin_typed(admin_client, account):
    admin_client.post(
        credits_url(account), {"operation": "grant", "amount": "5", "reason": "<b>bold</b>"}
    )
    html = admin_client.get(f"/admin/accounts/account/{account.pk}/change/").content.decode()
    assert "&lt;b&gt;bold&lt;/b&gt; (by admin)" in html
    assert "<b>bold</b>" not in html
