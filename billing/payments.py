"""Stripe glue: Checkout Sessions out, verified webhook events in.

Only this module talks to Stripe. It turns a verified event into a call to
``billing.services`` (record_purchase, record_refund); the credits are the
ledger's business, and the browser's return from Checkout grants nothing.

A signed event proves that Stripe sent it, not that we made the session:
another integration on the same Stripe account sends its sessions here
too. So an event only names the account and the pack (our metadata); the
credits are the pack's, granted when the session paid the pack's price in
its currency, and a session that did not is kept for the admin
(``RejectedPayment``) with nothing granted. An event that is not shaped as
Stripe's is a ``MalformedEvent`` (400), not a failure to retry.
"""

import logging
from typing import Any

import stripe
from django.conf import settings

from accounts.models import Account
from billing.models import CreditPack
from billing.services import (
    price_mismatch,
    record_purchase,
    record_refund,
    record_rejected_payment,
)
from revid.errors import ApplicationError

logger = logging.getLogger(__name__)

# async_payment_succeeded: a delayed method (e.g. SEPA debit) completes its
# session unpaid and is paid later; same session id, so still granted once.
HANDLED_EVENTS = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "charge.refunded",
)


class PaymentsDisabled(Exception):
    pass


class MalformedEvent(ApplicationError):
    code = "malformed_event"


def payments_enabled() -> bool:
    """Buying needs both keys: without the webhook secret nothing could be credited."""
    return bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_WEBHOOK_SECRET)


def _client() -> stripe.StripeClient:
    if not payments_enabled():
        raise PaymentsDisabled("Set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET.")
    base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses=base, max_network_retries=2
    )


def create_checkout_session(
    *, account: Account, pack: CreditPack, success_url: str, cancel_url: str, email: str = ""
) -> str:
    """Opens a Stripe Checkout Session for one pack and returns its URL.

    The account and the pack ride along in the session's metadata; the
    webhook grants the pack's credits if the session paid its price (a pack
    retired meanwhile is still honoured; a price changed meanwhile is left
    to the admin).
    """
    metadata = {"account_id": str(account.pk), "pack_id": str(pack.pk)}
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": pack.currency,
                    "unit_amount": pack.price,
                    "product_data": {"name": f"{pack.name}: {pack.credits} credits"},
                },
            }
        ],
        "client_reference_id": str(account.pk),
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if email:
        params["customer_email"] = email
    session = _client().v1.checkout.sessions.create(params=params)
    return session.url


def verify_event(*, payload: bytes, signature: str) -> dict[str, Any]:
    """The event as plain data, if Stripe signed it with our secret (else
    raises ValueError or stripe.SignatureVerificationError). Never skipped."""
    event = stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET)
    return event.to_dict()


def handle_event(*, event: dict[str, Any]) -> str:
    """Applies one verified event; returns what happened, for the log and the reply.

    Raises MalformedEvent for an event without an object, or whose object
    names no usable account, pack, amount or id.
    """
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise MalformedEvent("The event has no data.object.")
    if event.get("type") in (
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
    ):
        return _handle_checkout_completed(obj, event_id=str(event.get("id") or ""))
    if event.get("type") == "charge.refunded":
        return _handle_charge_refunded(obj)
    return "ignored"


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"The event's {obj.get('object') or 'object'} has no {name}.")
    return value


def _amount(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedEvent(f"The event's {name} is not an amount: {value!r:.40}.")
    return value


def _our_id(metadata: dict[str, Any], name: str) -> int:
    try:
        return int(metadata[name])
    except (KeyError, TypeError, ValueError):
        raise MalformedEvent(f"The session's metadata.{name} is missing or not a number.") from None


def _handle_checkout_completed(session: dict[str, Any], *, event_id: str) -> str:
    session_id = _text(session, "id")
    if session.get("payment_status") != "paid":
        # Delayed methods finish later; only a paid session grants credits.
        return "unpaid"
    metadata = session.get("metadata")
    if not isinstance(metadata, dict) or not ({"account_id", "pack_id"} & metadata.keys()):
        # Another integration's session on the same Stripe account.
        logger.info("Checkout Session %s is not one of ours; ignored", session_id)
        return "not ours"
    account = Account.objects.filter(pk=_our_id(metadata, "account_id")).first()
    if account is None:
        raise MalformedEvent(f"Checkout Session {session_id} names an unknown account.")
    pack = CreditPack.objects.filter(pk=_our_id(metadata, "pack_id")).first()
    if pack is None:
        raise MalformedEvent(f"Checkout Session {session_id} names an unknown credit pack.")
    amount_paid = _amount(session, "amount_total")
    currency = _text(session, "currency")
    payment_intent_id = _id_of(session.get("payment_intent"))
    mismatch = price_mismatch(pack=pack, amount_paid=amount_paid, currency=currency)
    if mismatch:
        rejected = record_rejected_payment(
            checkout_session_id=session_id,
            account=account,
            pack=pack,
            amount_paid=amount_paid,
            currency=currency,
            reason=f"Amount or currency differs from the pack's price: {mismatch}.",
            payment_intent_id=payment_intent_id,
            event_id=event_id,
        )
        return "price mismatch" if rejected else "already recorded"
    purchase = record_purchase(
        checkout_session_id=session_id,
        account=account,
        pack=pack,
        amount_paid=amount_paid,
        currency=currency,
        payment_intent_id=payment_intent_id,
    )
    return "granted" if purchase else "already granted"


def _handle_charge_refunded(charge: dict[str, Any]) -> str:
    entry = record_refund(
        payment_intent_id=_id_of(charge.get("payment_intent")),
        charge_id=_text(charge, "id"),
        amount_refunded=_amount(charge, "amount_refunded"),
    )
    return "adjusted" if entry else "nothing to adjust"


def _id_of(value: Any) -> str:
    """An id whether Stripe sent the object expanded or as its id."""
    if isinstance(value, dict):
        return value.get("id") or ""
    return value or ""
