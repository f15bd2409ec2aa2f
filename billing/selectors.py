from django.db.models import Sum

from accounts.models import Account
from billing.models import CreditPack, LedgerEntry, Purchase


def ledger_sum(*, account: Account) -> int:
    return LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"] or 0


def ledger_for_account(*, account: Account, limit: int = 50):
    return LedgerEntry.objects.filter(account=account).select_related("job")[:limit]


def active_credit_packs():
    return CreditPack.objects.filter(active=True)


def purchases_for_account(*, account: Account, limit: int = 20):
    return Purchase.objects.filter(account=account)[:limit]
