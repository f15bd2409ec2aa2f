import pytest
from django.core import mail
from django.db import IntegrityError, transaction

from accounts.services import add_member
from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from billing.services import (
    InsufficientCredits,
    adjust_credits,
    charge_for_job,
    charge_for_jobs,
    grant_credits,
    open_account,
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
    poor = open_account(name="poor", credits=24)
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


# --- The low-balance email ---------------------------------------------------


@pytest.fixture
def watched(account, django_user_model):
    """``account`` (1000 credits, threshold 20 x 25 = 500) with two users
    who have an address and one who has none."""
    for username, email in [("alice", "alice@example.com"), ("bob", "bob@example.com")]:
        add_member(account=account, username=username)
        django_user_model.objects.filter(username=username).update(email=email)
    add_member(account=account, username="noemail")
    return account


def test_the_email_goes_to_the_accounts_users_when_a_debit_crosses_the_threshold(
    watched, other_account, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        adjust_credits(account=watched, amount=-500, note="down to the threshold")
    assert mail.outbox == [], "500 is not below 20 requests' worth"
    with django_capture_on_commit_callbacks(execute=True):
        charge_for_job(job=make_job(watched))
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert sorted(email.to) == ["alice@example.com", "bob@example.com"]
    assert email.subject == "Low balance: 475 credits left in acme"
    assert "enough for 19 more background removals at 25 credits each" in email.body
    watched.refresh_from_db()
    assert watched.low_balance_notified


def test_a_batchs_charges_are_the_rows_one_charge_at_a_time_would_write(account):
    jobs = [make_job(account) for _ in range(4)]

    entries = charge_for_jobs(account=account, jobs=jobs)

    rows = list(LedgerEntry.objects.filter(account=account, kind="charge").order_by("id"))
    assert [(row.job_id, row.amount, row.balance_after) for row in rows] == [
        (job.id, -25, 1000 - 25 * n) for n, job in enumerate(jobs, start=1)
    ]
    assert [row.note for row in rows] == ["Background removal (u2net)"] * 4
    assert [entry.balance_after for entry in entries] == [975, 950, 925, 900]
    account.refresh_from_db()
    assert account.credit_balance == 900 == ledger_sum(account=account)


def test_a_batch_the_balance_cannot_cover_writes_nothing(account):
    jobs = [make_job(account) for _ in range(41)]  # 1025 credits against 1000

    with pytest.raises(InsufficientCredits):
        charge_for_jobs(account=account, jobs=jobs)

    assert not LedgerEntry.objects.filter(account=account, kind="charge").exists()
    account.refresh_from_db()
    assert account.credit_balance == 1000


def test_a_batch_that_crosses_the_threshold_sends_one_email_with_what_it_leaves(
    watched, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        adjust_credits(account=watched, amount=-480, note="just above the threshold")
        charge_for_jobs(account=watched, jobs=[make_job(watched) for _ in range(3)])

    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "Low balance: 445 credits left in acme"
    watched.refresh_from_db()
    assert watched.low_balance_notified and watched.credit_balance == 445


def test_it_is_sent_once_per_crossing(watched, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        adjust_credits(account=watched, amount=-600, note="cross")
        for _ in range(3):
            charge_for_job(job=make_job(watched))
    assert len(mail.outbox) == 1
    with django_capture_on_commit_callbacks(execute=True):
        grant_credits(account=watched, amount=1000, note="top-up")
        adjust_credits(account=watched, amount=-1000, note="cross again")
    assert len(mail.outbox) == 2
    assert mail.outbox[1].subject == "Low balance: 325 credits left in acme"


def test_a_refund_back_over_the_threshold_does_not_send_it_again(
    watched, django_capture_on_commit_callbacks
):
    adjust_credits(account=watched, amount=-500, note="at the threshold")
    with django_capture_on_commit_callbacks(execute=True):
        failed = make_job(watched)
        charge_for_job(job=failed)
        refund_for_job(job=failed, reason="the worker failed")
        charge_for_job(job=make_job(watched))
    assert len(mail.outbox) == 1


def test_credits_added_while_still_low_send_nothing(django_capture_on_commit_callbacks, watched):
    adjust_credits(account=watched, amount=-900, note="low")
    with django_capture_on_commit_callbacks(execute=True):
        grant_credits(account=watched, amount=50, note="a little")
    assert mail.outbox == []


def test_a_rolled_back_charge_sends_nothing(watched, django_capture_on_commit_callbacks):
    adjust_credits(account=watched, amount=-500, note="at the threshold")
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        charge_for_job(job=make_job(watched))
        raise RuntimeError("the job's upload could not be stored")
    assert mail.outbox == []
    watched.refresh_from_db()
    assert not watched.low_balance_notified
    with django_capture_on_commit_callbacks(execute=True):
        charge_for_job(job=make_job(watched))
    assert len(mail.outbox) == 1


def test_the_threshold_follows_the_setting_and_zero_turns_it_off(
    watched, settings, django_capture_on_commit_callbacks
):
    settings.LOW_BALANCE_REQUESTS = 0
    with django_capture_on_commit_callbacks(execute=True):
        adjust_credits(account=watched, amount=-1000, note="empty")
    assert mail.outbox == []
    settings.LOW_BALANCE_REQUESTS = 50  # 1250 credits
    with django_capture_on_commit_callbacks(execute=True):
        grant_credits(account=watched, amount=1300, note="refill")
        adjust_credits(account=watched, amount=-100, note="under 1250")
    assert len(mail.outbox) == 1


def test_an_account_without_addresses_is_marked_told_and_nothing_fails(
    account, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        adjust_credits(account=account, amount=-600, note="cross")
    assert mail.outbox == []
    account.refresh_from_db()
    assert account.low_balance_notified
    assert account.credit_balance == 400


def test_a_failing_mail_server_does_not_fail_the_charge(
    watched, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    with django_capture_on_commit_callbacks(execute=True):
        adjust_credits(account=watched, amount=-600, note="cross")
    watched.refresh_from_db()
    assert watched.credit_balance == 400 == ledger_sum(account=watched)
