"""The ledger's reads: balances, and usage as the customer sees it.

The usage page, its CSV export and ``GET /api/usage`` all read through
``usage_query`` (which validates what the customer asked for) and the
functions below, so the three always show the same rows and numbers. Every
number comes from ledger rows: the balance before a period plus the rows in
it is the balance after it, and all rows add up to the account's balance.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import Account, ApiKey
from billing.models import CreditPack, LedgerEntry, Purchase
from revid.errors import ApplicationError

# The chart's window, and the longest period one request may ask for (its
# per-day totals list every day).
CHART_DAYS = 30
MAX_PERIOD_DAYS = 366
# The days a period may cover. Python's dates end at 0001-01-01 and
# 9999-12-31, and a period is read as [first day's midnight, the day after
# the last's) in the site's time zone: a day at either end would overflow
# (a 500, or a CSV cut mid-stream). No ledger row predates 1970.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9999, 12, 30)


def ledger_sum(*, account: Account) -> int:
    return LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"] or 0


def ledger_for_account(*, account: Account, limit: int = 50):
    return LedgerEntry.objects.filter(account=account).select_related("job")[:limit]


@dataclass(frozen=True)
class UsageQuery:
    """What a customer asked to see: days ``start``..``end`` (both included,
    in the site's time zone) of one account, optionally one API key's rows."""

    account: Account
    start: date
    end: date
    api_key: ApiKey | None = None

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]


def _parse_date(value: str, name: str) -> date:
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise ApplicationError(
            f"'{name}' must be a date as YYYY-MM-DD, got {value[:40]!r}.", code="invalid_date"
        ) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ApplicationError(
            f"'{name}' must be a day from {FIRST_DAY} to {LAST_DAY}, got {day}.",
            code="invalid_date",
        )
    return day


def usage_query(
    *,
    account: Account,
    start: str | None = None,
    end: str | None = None,
    api_key_prefix: str | None = None,
) -> UsageQuery:
    """Validates a usage request. Without dates: the last CHART_DAYS days.

    Raises ApplicationError (400) for a malformed date, a day outside
    FIRST_DAY..LAST_DAY, a period that ends before it starts or is longer
    than MAX_PERIOD_DAYS, and a key prefix that is not one of the account's
    keys.
    """
    today = timezone.localdate()
    end_day = _parse_date(end, "to") if end else today
    if start:
        start_day = _parse_date(start, "from")
    else:
        start_day = max(end_day - timedelta(days=CHART_DAYS - 1), FIRST_DAY)
    if start_day > end_day:
        raise ApplicationError(
            f"The period starts ({start_day}) after it ends ({end_day}).", code="invalid_date"
        )
    if (end_day - start_day).days + 1 > MAX_PERIOD_DAYS:
        raise ApplicationError(
            f"A period can be at most {MAX_PERIOD_DAYS} days long.", code="invalid_date"
        )
    key = None
    if api_key_prefix:
        key = ApiKey.objects.filter(account=account, prefix=api_key_prefix.strip()).first()
        if key is None:
            raise ApplicationError(
                "That API key does not exist in this account.", code="unknown_api_key"
            )
    return UsageQuery(account=account, start=start_day, end=end_day, api_key=key)


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _in_period(query: UsageQuery) -> Q:
    return Q(created_at__gte=_day_start(query.start)) & Q(
        created_at__lt=_day_start(query.end + timedelta(days=1))
    )


def usage_entries(*, query: UsageQuery) -> QuerySet[LedgerEntry]:
    """The period's ledger rows, newest first (a key's: the rows of its jobs)."""
    entries = LedgerEntry.objects.filter(_in_period(query), account=query.account)
    if query.api_key is not None:
        entries = entries.filter(job__api_key=query.api_key)
    return entries.select_related("job", "job__api_key").order_by("-created_at", "-id")


def usage_summary(*, query: UsageQuery) -> dict:
    """The period's totals.

    ``opening_balance + net == closing_balance`` for the whole account;
    ``by_kind`` and ``total`` are those of the rows shown (one key's, when
    the query names one). ``balance`` is the account's balance now.
    """
    account_rows = LedgerEntry.objects.filter(account=query.account)
    opening = (
        account_rows.filter(created_at__lt=_day_start(query.start)).aggregate(s=Sum("amount"))["s"]
        or 0
    )
    net = account_rows.filter(_in_period(query)).aggregate(s=Sum("amount"))["s"] or 0
    totals = {
        row["kind"]: row["total"]
        for row in usage_entries(query=query)
        .order_by()
        .values("kind")
        .annotate(total=Sum("amount"))
    }
    by_kind = {kind: totals.get(kind, 0) for kind in LedgerEntry.Kind.values}
    balance = Account.objects.values_list("credit_balance", flat=True).get(pk=query.account.pk)
    return {
        "opening_balance": opening,
        "net": net,
        "closing_balance": opening + net,
        "balance": balance,
        "total": sum(by_kind.values()),
        "by_kind": by_kind,
    }


def usage_row(*, entry: LedgerEntry) -> dict:
    """One ledger row as the CSV export and the API show it (the page shows
    the same fields). ``entry`` comes from ``usage_entries``."""
    job = entry.job
    return {
        "id": entry.pk,
        "created_at": entry.created_at.isoformat(),
        "kind": entry.kind,
        "amount": entry.amount,
        "balance_after": entry.balance_after,
        "job_id": str(job.pk) if job else None,
        "job_status": job.status if job else None,
        "api_key": job.api_key.prefix if job and job.api_key else None,
        "note": entry.note,
    }


def active_credit_packs():
    return CreditPack.objects.filter(active=True)


def purchases_for_account(*, account: Account, limit: int = 20):
    return Purchase.objects.filter(account=account)[:limit]
