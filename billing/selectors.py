from django.db.models import Sum

from accounts.models import Account
from billing.models import LedgerEntry


def ledger_sum(*, account: Account) -> int:
    return LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"] or 0


def ledger_for_account(*, account: Account, limit: int = 50):
    return LedgerEntry.objects.filter(account=account).select_related("job")[:limit]
