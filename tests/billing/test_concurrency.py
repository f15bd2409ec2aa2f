"""Concurrent submissions never spend the same credits twice, nor send the
low-balance email twice.

Each thread is its own HTTP client with its own database connection, so
the only thing between them is the account row lock in billing._append.
This must hold on PostgreSQL (CI runs the suite there); on SQLite writers
serialise on the database lock and it holds too.
"""

import threading

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient

from accounts.services import add_member, create_api_key
from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from billing.services import adjust_credits, open_account
from removal.models import RemovalJob
from tests.images import solid_png

URL = "/paid/image/remove/background"
SUBMISSIONS = 50


@pytest.mark.weights
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_submissions_against_ten_requests_of_credit(settings):
    settings.REMOVAL_RATE_LIMIT = ""
    account = open_account(name="tight", credits=10 * settings.REMOVAL_PRICE_CREDITS)
    _, key = create_api_key(account=account, name="burst")
    data = solid_png(32, 32)
    barrier = threading.Barrier(SUBMISSIONS)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def submit(n: int) -> None:
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=key)
        try:
            barrier.wait(timeout=30)
            upload = SimpleUploadedFile(f"{n}.png", data)
            response = client.post(URL, {"file": upload, "model": "u2netp"}, format="multipart")
            statuses.append(response.status_code)
        except BaseException as exc:  # surfaced below, not swallowed
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(SUBMISSIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert sorted(statuses) == [202] * 10 + [402] * 40
    account.refresh_from_db()
    assert account.credit_balance == 0
    assert ledger_sum(account=account) == account.credit_balance
    assert LedgerEntry.objects.filter(account=account, kind="charge").count() == 10
    assert RemovalJob.objects.filter(account=account).count() == 10
    # A refused submission leaves no stored input behind either.
    assert all(
        job.input_file.storage.exists(job.input_file.name) for job in RemovalJob.objects.all()
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_debits_across_the_threshold_send_one_low_balance_email(
    settings, django_user_model
):
    price = settings.REMOVAL_PRICE_CREDITS
    threshold = settings.LOW_BALANCE_REQUESTS * price
    account = open_account(name="busy", credits=threshold + 5 * price)
    add_member(account=account, username="owner")
    django_user_model.objects.filter(username="owner").update(email="owner@example.com")
    debits = 20
    barrier = threading.Barrier(debits)
    errors: list[BaseException] = []

    def debit(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            adjust_credits(account=account, amount=-price, note=f"debit {n}")
        except BaseException as exc:  # surfaced below, not swallowed
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=debit, args=(n,)) for n in range(debits)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    account.refresh_from_db()
    assert account.credit_balance == threshold - 15 * price == ledger_sum(account=account)
    assert [email.to for email in mail.outbox] == [["owner@example.com"]]
