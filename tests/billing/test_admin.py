"""The ledger in the admin is read-only: no add, no change, no delete."""

from billing.models import LedgerEntry
from billing.services import grant_credits


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
