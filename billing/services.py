"""The credit ledger's writes.

Every movement of credits goes through ``_append``: it locks the account
row, checks the new balance, writes one ledger row and the cached balance
in the same transaction. Locking the row (``select_for_update``) is what
makes two concurrent submissions for the last 25 credits serialise: the
second one waits for the first to commit and then sees the lower balance.
The same lock makes the low-balance email go out once per crossing: the
flag that says "already told" is read and written under it.
"""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string

from accounts.models import Account
from billing.models import LedgerEntry
from revid.errors import ApplicationError

logger = logging.getLogger(__name__)


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
        notified, send_now = _low_balance_flag(
            notified=locked.low_balance_notified, kind=kind, amount=amount, balance=new_balance
        )
        Account.objects.filter(pk=locked.pk).update(
            credit_balance=new_balance, low_balance_notified=notified
        )
        if send_now:
            # After commit: a rolled-back charge must not email anyone. Robust:
            # a mail server that is down must not fail the request that charged.
            # (A closure, not functools.partial: Django logs a robust
            # callback's failure by its __qualname__.)
            account_id = locked.pk

            def notify_low_balance() -> None:
                send_low_balance_email(account_id=account_id, balance=new_balance)

            transaction.on_commit(notify_low_balance, robust=True)
    account.credit_balance = new_balance
    account.low_balance_notified = notified
    return entry


def low_balance_threshold() -> int:
    """Credits under which an account is told its balance is low (0: never)."""
    return settings.LOW_BALANCE_REQUESTS * settings.REMOVAL_PRICE_CREDITS


def _low_balance_flag(*, notified: bool, kind: str, amount: int, balance: int) -> tuple[bool, bool]:
    """The account's "told" flag after a movement, and whether to email now.

    The email goes out when a debit leaves the balance under the threshold
    and the account has not been told yet; credits that bring it back to
    the threshold or above re-arm it. A refund does not re-arm it: it only
    gives back a failed job's charge, and would otherwise send one more
    email for every failed job near the threshold.
    """
    threshold = low_balance_threshold()
    if balance < threshold:
        if amount < 0 and not notified:
            return True, True
        return notified, False
    if kind == LedgerEntry.Kind.REFUND:
        return notified, False
    return False, False


def send_low_balance_email(*, account_id: int, balance: int) -> int:
    """Emails the account's users (those with an address); returns how many."""
    account = Account.objects.get(pk=account_id)
    recipients = list(
        get_user_model()
        .objects.filter(membership__account=account, is_active=True)
        .exclude(email="")
        .order_by("pk")
        .values_list("email", flat=True)
    )
    if not recipients:
        logger.info("Low balance on account %s: no user has an email address", account_id)
        return 0
    price = settings.REMOVAL_PRICE_CREDITS
    context = {
        "account": account,
        "balance": balance,
        "price": price,
        "requests_left": balance // price if price else None,
        "threshold_requests": settings.LOW_BALANCE_REQUESTS,
    }
    return send_mail(
        subject=f"Low balance: {balance} credits left in {account.name}",
        message=render_to_string("billing/low_balance_email.txt", context),
        from_email=None,
        recipient_list=recipients,
    )


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
