"""The credit ledger's writes.

Every movement of credits goes through ``_append``: it locks the account
row, checks the new balance, writes one ledger row and the cached balance
in the same transaction. Locking the row (``select_for_update``) is what
makes two concurrent submissions for the last 25 credits serialise: the
second one waits for the first to commit and then sees the lower balance.
"""

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.models import Account
from billing.models import LedgerEntry
from revid.errors import ApplicationError


class InsufficientCredits(ApplicationError):
    status_code = 402
    code = "insufficient_credits"


def _append(*, account: Account, kind: str, amount: int, note: str = "", job=None) -> LedgerEntry:
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        new_balance = locked.credit_balance + amount
        if new_balance < 0:
            raise InsufficientCredits(
                f"Insufficient credits: this request costs {-amount} credits and the "
                f"balance is {locked.credit_balance}."
            )
        entry = LedgerEntry.objects.create(
            account=locked,
            kind=kind,
            amount=amount,
            balance_after=new_balance,
            job=job,
            note=note[:500],
        )
        Account.objects.filter(pk=locked.pk).update(credit_balance=new_balance)
    account.credit_balance = new_balance
    return entry


def grant_credits(*, account: Account, amount: int, note: str = "") -> LedgerEntry:
    if amount <= 0:
        raise ApplicationError(
            "A grant must be a positive number of credits.", code="invalid_amount"
        )
    return _append(account=account, kind=LedgerEntry.Kind.GRANT, amount=amount, note=note)


def adjust_credits(*, account: Account, amount: int, note: str) -> LedgerEntry:
    """A signed correction by an admin; it may not take the balance below zero."""
    if amount == 0:
        raise ApplicationError("An adjustment must change the balance.", code="invalid_amount")
    if not note.strip():
        raise ApplicationError("An adjustment needs a reason.", code="reason_required")
    return _append(account=account, kind=LedgerEntry.Kind.ADJUST, amount=amount, note=note)


def charge_for_job(*, job) -> LedgerEntry:
    """Charges the job's account the price of one removal.

    Must run inside the transaction that creates the job, so a job never
    exists without its charge, nor a charge without its job.
    """
    price = settings.REMOVAL_PRICE_CREDITS
    return _append(
        account=job.account,
        kind=LedgerEntry.Kind.CHARGE,
        amount=-price,
        job=job,
        note=f"Background removal ({job.model_name})",
    )


def refund_for_job(*, job, reason: str = "") -> LedgerEntry | None:
    """Gives back what the job was charged, once. Returns None if already refunded.

    Idempotent twice over: we look for an existing refund, and the unique
    (job, kind) constraint stops a concurrent second refund at commit.
    """
    charge = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.CHARGE).first()
    if charge is None:
        return None
    if LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.REFUND).exists():
        return None
    try:
        with transaction.atomic():
            return _append(
                account=job.account,
                kind=LedgerEntry.Kind.REFUND,
                amount=-charge.amount,
                job=job,
                note=f"Refund: {reason}"[:500] if reason else "Refund for failed job",
            )
    except IntegrityError:
        return None
