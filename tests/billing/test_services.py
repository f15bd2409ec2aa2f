import pytest
from django.db import IntegrityError, transaction

from accounts.services import create_account
from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from billing.services import (
    InsufficientCredits,
    adjust_credits,
    charge_for_job,
    grant_credits,
    refund_for_job,
)
from removal.models import RemovalJob
from revid.errors import ApplicationError

pytestmark = pytest.mark.django_db


def make_job(account) -> RemovalJob:
    return RemovalJob.objects.create(account=account, model_name="u2net")


def test_a_grant_adds_credits_and_writes_one_row(account):
    entry = grant_credits(account=account, amount=50, note="promo")
    account.refresh_from_db()
    assert account.credit_balance == 1050
    assert (entry.kind, entry.amount, entry.balance_after, entry.note) == (
        "grant",
        50,
        1050,
        "promo",
    )


def test_it_refuses_a_grant_that_is_not_positive(account):
    with pytest.raises(ApplicationError):
        grant_credits(account=account, amount=0)
    with pytest.raises(ApplicationError):
        grant_credits(account=account, amount=-5)


def test_a_charge_takes_the_price_from_the_balance(account, settings):
    settings.REMOVAL_PRICE_CREDITS = 25
    job = make_job(account)
    entry = charge_for_job(job=job)
    account.refresh_from_db()
    assert (entry.kind, entry.amount, entry.job) == ("charge", -25, job)
    assert account.credit_balance == 975


def test_the_price_is_a_setting(account, settings):
    settings.REMOVAL_PRICE_CREDITS = 40
    charge_for_job(job=make_job(account))
    account.refresh_from_db()
    assert account.credit_balance == 960


def test_a_charge_never_takes_the_balance_below_zero(db):
    poor = create_account(name="poor", credits=24)
    with pytest.raises(InsufficientCredits) as excinfo:
        charge_for_job(job=make_job(poor))
    assert excinfo.value.status_code == 402
    poor.refresh_from_db()
    assert poor.credit_balance == 24
    assert not LedgerEntry.objects.filter(kind="charge").exists()


def test_a_job_is_charged_at_most_once(account):
    job = make_job(account)
    charge_for_job(job=job)
    with pytest.raises(IntegrityError), transaction.atomic():
        charge_for_job(job=job)
    account.refresh_from_db()
    assert account.credit_balance == 975


def test_a_refund_gives_back_the_charge_once(account):
    job = make_job(account)
    charge_for_job(job=job)
    first = refund_for_job(job=job, reason="model crashed")
    second = refund_for_job(job=job, reason="again")
    account.refresh_from_db()
    assert first is not None and first.amount == 25 and "model crashed" in first.note
    assert second is None
    assert account.credit_balance == 1000
    assert LedgerEntry.objects.filter(job=job, kind="refund").count() == 1


def test_nothing_is_refunded_for_a_job_that_was_never_charged(account):
    assert refund_for_job(job=make_job(account)) is None
    account.refresh_from_db()
    assert account.credit_balance == 1000


def test_an_adjustment_needs_a_reason_and_cannot_go_negative(account):
    with pytest.raises(ApplicationError):
        adjust_credits(account=account, amount=-10, note=" ")
    with pytest.raises(InsufficientCredits):
        adjust_credits(account=account, amount=-1001, note="too much")
    adjust_credits(account=account, amount=-1000, note="reset")
    account.refresh_from_db()
    assert account.credit_balance == 0


def test_the_balance_always_equals_the_sum_of_the_ledger(account):
    jobs = [make_job(account) for _ in range(5)]
    for job in jobs:
        charge_for_job(job=job)
    refund_for_job(job=jobs[0])
    refund_for_job(job=jobs[0])
    grant_credits(account=account, amount=7)
    adjust_credits(account=account, amount=-3, note="fix")
    account.refresh_from_db()
    assert account.credit_balance == 1000 - 5 * 25 + 25 + 7 - 3
    assert ledger_sum(account=account) == account.credit_balance
    last = LedgerEntry.objects.filter(account=account).order_by("-id").first()
    assert last.balance_after == account.credit_balance


def test_ledger_rows_cannot_be_changed_or_deleted(account):
    entry = LedgerEntry.objects.filter(account=account).first()
    entry.amount = 1_000_000
    with pytest.raises(RuntimeError):
        entry.save()
    with pytest.raises(RuntimeError):
        entry.delete()
    entry.refresh_from_db()
    assert entry.amount == 1000
