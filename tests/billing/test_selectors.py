"""The usage reads: periods, rows, per-day totals, and sums that add up."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from accounts.services import create_api_key
from billing.selectors import (
    CHART_DAYS,
    FIRST_DAY,
    LAST_DAY,
    MAX_PERIOD_DAYS,
    ledger_sum,
    usage_entries,
    usage_query,
    usage_summary,
)
from removal.selectors import daily_usage
from revid.errors import ApplicationError
from tests.ledger_history import backdate, run_job


def test_without_dates_a_query_covers_the_last_thirty_days(account):
    query = usage_query(account=account)
    assert query.end == timezone.localdate()
    assert len(query.days) == CHART_DAYS
    assert query.api_key is None


@pytest.mark.weights
def test_the_rows_of_every_period_add_up_to_the_balance(history):
    account = history.account
    rows = list(history.account.ledger_entries.order_by("id"))
    # Spread the history over three months: the grant 80 days ago, the
    # first job 45 days ago, the rest today.
    backdate(rows[:1], days=80)
    backdate(rows[1:2], days=45)
    start = timezone.localdate() - timedelta(days=100)
    everything = usage_query(account=account, start=str(start))
    assert sum(entry.amount for entry in usage_entries(query=everything)) == 850
    assert ledger_sum(account=account) == account.credit_balance == 850
    for days_back in (90, 60, 30, 1, 0):
        day = timezone.localdate() - timedelta(days=days_back)
        summary = usage_summary(query=usage_query(account=account, start=str(day)))
        assert summary["opening_balance"] + summary["net"] == summary["closing_balance"] == 850
        assert summary["total"] == summary["net"]


@pytest.mark.weights
def test_a_keys_rows_are_those_of_its_jobs(history):
    query = usage_query(account=history.account, api_key_prefix=history.key.prefix)
    entries = list(usage_entries(query=query))
    assert sorted(entry.kind for entry in entries) == ["charge", "charge", "refund"]
    assert {entry.job.api_key for entry in entries} == {history.key}
    summary = usage_summary(query=query)
    assert summary["by_kind"] == {
        "grant": 0,
        "charge": -50,
        "refund": 25,
        "adjust": 0,
        "purchase": 0,
    }
    assert summary["net"] == 850, "the account's movement, not the key's"


@pytest.mark.weights
def test_per_day_totals_count_images_by_outcome_and_net_credits(history):
    run_job(history.account, api_key=history.key)
    yesterday = list(history.account.ledger_entries.filter(kind="charge").order_by("-id")[:1])
    backdate(yesterday, days=1)
    days = daily_usage(query=usage_query(account=history.account))
    assert len(days) == CHART_DAYS
    assert days[-2]["images_completed"] == 1 and days[-2]["credits_spent"] == 25
    assert days[-1] == {
        "date": timezone.localdate(),
        "images_completed": 2,
        "images_failed": 1,
        "credits_spent": 50,
        "credits_added": 900,
    }
    assert sum(day["images_completed"] for day in days) == 3


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2025-02-30", None, "'from' must be a date as YYYY-MM-DD"),
        ("2025-01-01", "01/02/2025", "'to' must be a date as YYYY-MM-DD"),
        ("2025-03-01", "2025-02-01", "The period starts (2025-03-01) after it ends"),
        ("2024-01-01", "2025-01-01", f"at most {MAX_PERIOD_DAYS} days"),
    ],
)
def test_a_bad_period_is_refused(account, start, end, message):
    with pytest.raises(ApplicationError) as error:
        usage_query(account=account, start=start, end=end)
    assert error.value.code == "invalid_date"
    assert message in error.value.message


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "Etc/GMT+12"])
@pytest.mark.parametrize(
    ("start", "end"),
    [
        (None, "0001-01-01"),
        ("0001-01-01", "0001-01-01"),
        ("0001-01-01", "0001-12-31"),
        ("9999-12-31", "9999-12-31"),
        ("9999-12-31", None),
        ("1969-12-31", "1970-01-01"),
    ],
)
def test_a_date_at_the_ends_of_the_calendar_is_refused_not_an_overflow(
    account, settings, zone, start, end
):
    settings.TIME_ZONE = zone
    with pytest.raises(ApplicationError) as error:
        query = usage_query(account=account, start=start, end=end)
        # Had it been accepted, reading the period must not overflow either.
        usage_summary(query=query)
        list(usage_entries(query=query))
        daily_usage(query=query)
    assert error.value.code == "invalid_date"
    assert f"from {FIRST_DAY} to {LAST_DAY}" in error.value.message


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "Etc/GMT+12"])
def test_the_first_and_last_days_allowed_can_be_read(history, settings, zone):
    settings.TIME_ZONE = zone
    for start, end in [
        (FIRST_DAY, FIRST_DAY + timedelta(days=10)),
        (LAST_DAY - timedelta(days=10), LAST_DAY),
    ]:
        query = usage_query(account=history.account, start=str(start), end=str(end))
        assert usage_summary(query=query)["net"] == 0
        assert list(usage_entries(query=query)) == []
        assert len(daily_usage(query=query)) == 11
    # A last day early in the range: the default first day is the range's first.
    query = usage_query(account=history.account, end=str(FIRST_DAY + timedelta(days=3)))
    assert (query.start, len(query.days)) == (FIRST_DAY, 4)


def test_a_whole_leap_year_is_allowed(account):
    query = usage_query(account=account, start="2024-01-01", end="2024-12-31")
    assert (query.start, query.end, len(query.days)) == (date(2024, 1, 1), date(2024, 12, 31), 366)


def test_another_accounts_key_is_unknown(account, other_account):
    theirs, _ = create_api_key(account=other_account, name="theirs")
    with pytest.raises(ApplicationError) as error:
        usage_query(account=account, api_key_prefix=theirs.prefix)
    assert error.value.code == "unknown_api_key"
