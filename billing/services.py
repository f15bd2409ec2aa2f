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
from django.urls import reverse

from accounts.models import Account
from accounts.services import create_account
from billing.models import CreditPack, LedgerEntry, Purchase, RejectedPayment, format_money
from revid.errors import ApplicationError

logger = logging.getLogger(__name__)


class InsufficientCredits(ApplicationError):
    status_code = 402
    code = "insufficient_credits"


def _append(
    *,
    account: Account,
    kind: str,
    amount: int,
    note: str = "",
    job=None,
    external_id: str | None = None,
) -> LedgerEntry:
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        new_balance = locked.credit_balance + amount
        if new_balance < 0:
            raise InsufficientCredits(
                f"Insufficient credits: this request costs {-amount} credits and the "
                f"balance is {locked.credit_balance}."
            )
        entry, notified, send_now = _movement(
            account=locked,
            kind=kind,
            amount=amount,
            balance_after=new_balance,
            notified=locked.low_balance_notified,
            job=job,
            note=note,
            external_id=external_id,
        )
        entry.save()
        Account.objects.filter(pk=locked.pk).update(
            credit_balance=new_balance, low_balance_notified=notified
        )
        if send_now:
            _email_low_balance_after_commit(account_id=locked.pk, balance=new_balance)
    account.credit_balance = new_balance
    account.low_balance_notified = notified
    return entry


def _movement(
    *,
    account: Account,
    kind: str,
    amount: int,
    balance_after: int,
    notified: bool,
    job=None,
    note: str = "",
    external_id: str | None = None,
) -> tuple[LedgerEntry, bool, bool]:
    """One ledger row, not yet written, and the account's low-balance flag
    after it with whether to email now (``_low_balance_flag``)."""
    entry = LedgerEntry(
        account=account,
        kind=kind,
        amount=amount,
        balance_after=balance_after,
        job=job,
        note=note[:500],
        external_id=external_id,
    )
    notified, send_now = _low_balance_flag(
        notified=notified, kind=kind, amount=amount, balance=balance_after
    )
    return entry, notified, send_now


def low_balance_threshold() -> int:
    """Credits under which an account is told its balance is low (0: never)."""
    return settings.LOW_BALANCE_REQUESTS * settings.REMOVAL_PRICE_CREDITS


def _email_low_balance_after_commit(*, account_id: int, balance: int) -> None:
    """After commit: a rolled-back charge must not email anyone. Robust: a mail
    server that is down must not fail the request that charged."""

    # A closure, not functools.partial: Django logs a robust callback's
    # failure by its __qualname__.
    def notify_low_balance() -> None:
        send_low_balance_email(account_id=account_id, balance=balance)

    transaction.on_commit(notify_low_balance, robust=True)


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
        # Sent after a charge's commit, with no request at hand.
        "usage_url": f"{settings.SITE_URL}{reverse('usage')}",
    }
    return send_mail(
        subject=f"Low balance: {balance} credits left in {account.name}",
        message=render_to_string("billing/low_balance_email.txt", context),
        from_email=None,
        recipient_list=recipients,
    )


@transaction.atomic
def open_account(*, name: str, credits: int = 0, note: str = "Initial credits") -> Account:
    """A new account and its first credits, through the ledger, in one transaction."""
    account = create_account(name=name)
    if credits:
        grant_credits(account=account, amount=credits, note=note)
        account.refresh_from_db()
    return account


def owe_signup_credits(sender, *, account: Account, **kwargs) -> None:
    """``accounts.signals.signed_up``'s receiver: the new account is owed
    SIGNUP_FREE_CREDITS, granted once its email address is verified
    (``grant_signup_credits``), so an unverified sign-up has none to spend
    and a made-up address earns nothing."""
    Account.objects.filter(pk=account.pk).update(signup_credits_due=settings.SIGNUP_FREE_CREDITS)
    account.signup_credits_due = settings.SIGNUP_FREE_CREDITS


def grant_signup_credits(sender, *, account: Account, **kwargs) -> LedgerEntry | None:
    """``accounts.signals.email_verified``'s receiver: grants the sign-up
    credits still owed to the account, once. None when nothing is owed
    (already granted, or an account an administrator made).

    Steps: lock the account row, read what is owed, clear it and grant it
    through the ledger in one transaction, so two verifications at once
    grant it once.
    """
    with transaction.atomic():
        due = Account.objects.select_for_update().get(pk=account.pk).signup_credits_due
        if due <= 0:
            return None
        Account.objects.filter(pk=account.pk).update(signup_credits_due=0)
        return grant_credits(account=account, amount=due, note="Sign-up credits")


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


def _charge_note(job) -> str:
    return f"Background removal ({job.model_name})"


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
        note=_charge_note(job),
    )


def charge_for_jobs(*, account: Account, jobs: list) -> list[LedgerEntry]:
    """Charges several jobs (a batch's items), all or none.

    Must run inside the transaction that creates them. The account is locked
    once and the balance checked for the whole before any row is written,
    so a batch the balance cannot cover is refused whole (402). The entries
    are the ones ``charge_for_job`` would write one by one (each with its
    balance after), written in one statement: a hundred items' charges
    took 125 ms one by one. A batch that takes the balance under the
    low-balance threshold sends one email, with the balance it leaves.
    """
    price = settings.REMOVAL_PRICE_CREDITS
    total = price * len(jobs)
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        if locked.credit_balance < total:
            raise InsufficientCredits(
                f"Insufficient credits: these {len(jobs)} images cost {total} credits and the "
                f"balance is {locked.credit_balance}."
            )
        balance, notified, email = locked.credit_balance, locked.low_balance_notified, False
        entries = []
        for job in jobs:
            balance -= price
            entry, notified, send_now = _movement(
                account=locked,
                kind=LedgerEntry.Kind.CHARGE,
                amount=-price,
                balance_after=balance,
                notified=notified,
                job=job,
                note=_charge_note(job),
            )
            email = email or send_now
            entries.append(entry)
        LedgerEntry.objects.bulk_create(entries)
        Account.objects.filter(pk=locked.pk).update(
            credit_balance=balance, low_balance_notified=notified
        )
        if email:
            _email_low_balance_after_commit(account_id=locked.pk, balance=balance)
    account.credit_balance = balance
    account.low_balance_notified = notified
    return entries


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


# --- Purchases and refunds (Stripe) -------------------------------------------
# Called by the signature-checked webhook only (billing.views), never by the
# browser's return from Checkout. Each is idempotent: Stripe retries and may
# deliver an event twice or concurrently.


def record_purchase(
    *,
    checkout_session_id: str,
    account: Account,
    pack: CreditPack,
    amount_paid: int,
    currency: str,
    payment_intent_id: str = "",
) -> Purchase | None:
    """Grants the pack's credits for a paid Checkout Session, once. None if
    already granted.

    The credits are the pack's, never a number from the event, and only
    when the session paid the pack's price in its currency; the caller
    checks that (``price_mismatch``) and records a payment that does not
    match with ``record_rejected_payment`` instead.
    The session id is the ledger row's unique external_id: a second delivery
    finds the purchase, and a concurrent one (which passed that check too)
    fails the unique constraint at insert and changes nothing.
    """
    if price_mismatch(pack=pack, amount_paid=amount_paid, currency=currency):
        raise ApplicationError(
            "A purchase must pay the pack's price in its currency.", code="price_mismatch"
        )
    if Purchase.objects.filter(checkout_session_id=checkout_session_id).exists():
        return None
    try:
        with transaction.atomic():
            entry = _append(
                account=account,
                kind=LedgerEntry.Kind.PURCHASE,
                amount=pack.credits,
                note=f"Bought {pack.name}: paid {format_money(amount_paid, currency)}",
                external_id=checkout_session_id,
            )
            return Purchase.objects.create(
                account=account,
                pack=pack,
                pack_name=pack.name,
                credits=pack.credits,
                amount_paid=amount_paid,
                currency=currency.lower(),
                checkout_session_id=checkout_session_id,
                payment_intent_id=payment_intent_id or "",
                ledger_entry=entry,
            )
    except IntegrityError:
        return None


def price_mismatch(*, pack: CreditPack, amount_paid: int, currency: str) -> str:
    """Why a payment is not the pack's price ("" when it is)."""
    if amount_paid == pack.price and currency.lower() == pack.currency:
        return ""
    return (
        f"paid {format_money(amount_paid, currency)}, the pack costs "
        f"{format_money(pack.price, pack.currency)}"
    )


def record_rejected_payment(
    *,
    checkout_session_id: str,
    account: Account,
    pack: CreditPack | None,
    amount_paid: int,
    currency: str,
    reason: str,
    payment_intent_id: str = "",
    event_id: str = "",
) -> RejectedPayment | None:
    """Keeps a paid session that granted nothing for the admin, once. None
    if it was already recorded (a replayed event)."""
    rejected, created = RejectedPayment.objects.get_or_create(
        checkout_session_id=checkout_session_id,
        defaults={
            "account": account,
            "pack": pack,
            "amount_paid": amount_paid,
            "currency": currency.lower(),
            "reason": reason[:500],
            "payment_intent_id": payment_intent_id or "",
            "event_id": event_id or "",
        },
    )
    if created:
        logger.warning(
            "Checkout Session %s of account %s granted nothing: %s",
            checkout_session_id,
            account.pk,
            reason,
        )
    return rejected if created else None


def record_refund(
    *, payment_intent_id: str, charge_id: str, amount_refunded: int
) -> LedgerEntry | None:
    """Takes back the credits of the refunded part of a purchase, once per refund state.

    ``amount_refunded`` is the charge's running total (Stripe's
    ``charge.amount_refunded``), so a replayed event asks for nothing new and
    a second partial refund asks only for the difference. Credits already
    spent cannot be taken back (the balance never goes below zero): what is
    missing is recorded on the purchase as ``credits_shortfall``, noted on
    the ledger row and shown to the admin as needing review.
    Returns the negative adjustment, or None when there was nothing to take.
    """
    purchase = Purchase.objects.filter(payment_intent_id=payment_intent_id).first()
    if purchase is None or not payment_intent_id:
        return None
    with transaction.atomic():
        # The purchase row lock serialises two deliveries of refund events.
        purchase = Purchase.objects.select_for_update().get(pk=purchase.pk)
        amount_refunded = min(amount_refunded, purchase.amount_paid)
        if amount_refunded <= purchase.amount_refunded:
            return None
        # Credits in proportion to the money returned; a full refund takes all.
        reclaim_total = purchase.credits * amount_refunded // purchase.amount_paid
        to_take = reclaim_total - purchase.credits_reclaimed
        balance = Account.objects.select_for_update().get(pk=purchase.account_id).credit_balance
        taken = min(to_take, balance)
        shortfall = to_take - taken
        refunded = format_money(amount_refunded - purchase.amount_refunded, purchase.currency)
        note = f"Stripe refund of {refunded} for {purchase.pack_name}"
        if shortfall:
            note += f"; {shortfall} credits already spent could not be taken back (review)"
        entry = None
        if taken > 0:
            entry = _append(
                account=purchase.account,
                kind=LedgerEntry.Kind.ADJUST,
                amount=-taken,
                note=note,
                external_id=f"refund:{charge_id}:{amount_refunded}",
            )
        Purchase.objects.filter(pk=purchase.pk).update(
            amount_refunded=amount_refunded,
            credits_reclaimed=reclaim_total,
            credits_shortfall=purchase.credits_shortfall + shortfall,
        )
    if shortfall:
        logger.warning(
            "Refund on %s: %d credits of account %s were already spent (purchase %s)",
            charge_id,
            shortfall,
            purchase.account_id,
            purchase.pk,
        )
    return entry
