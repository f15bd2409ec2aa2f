"""Stripe glue: Checkout Sessions out, verified webhook events in.

Only this module talks to Stripe. It turns a verified event into a call to
``billing.services`` (record_purchase, record_refund); the credits are the
ledger's business, and the browser's return from Checkout grants nothing.
"""

import logging
from typing import Any

import stripe
from django.conf import settings

from accounts.models import Account
from billing.models import CreditPack
from billing.services import record_purchase, record_refund

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

    The account, the pack and its credits ride along in the session's
    metadata, so the webhook grants what was sold even if the pack changes
    (or is retired) before the customer pays.
    """
    metadata = {
        "account_id": str(account.pk),
        "pack_id": str(pack.pk),
        "credits": str(pack.credits),
    }
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
    """Applies one verified event; returns what happened, for the log and the reply."""
    obj = event["data"]["object"]
    if event["type"] in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        return _handle_checkout_completed(obj)
    if event["type"] == "charge.refunded":
        return _handle_charge_refunded(obj)
    return "ignored"


def _handle_checkout_completed(session: Any) -> str:
    if session.get("payment_status") != "paid":
        # Delayed methods finish later; only a paid session grants credits.
        return "unpaid"
    metadata = session.get("metadata") or {}
    try:
        account_id = int(metadata["account_id"])
        credits = int(metadata["credits"])
        pack_id = int(metadata["pack_id"]) if metadata.get("pack_id") else None
    except (KeyError, TypeError, ValueError):
        logger.warning("Checkout Session %s has no usable metadata; ignored", session.get("id"))
        return "not ours"
    if not Account.objects.filter(pk=account_id).exists():
        logger.error("Checkout Session %s names missing account %s", session["id"], account_id)
        return "unknown account"
    purchase = record_purchase(
        checkout_session_id=session["id"],
        account_id=account_id,
        pack_id=pack_id,
        credits=credits,
        amount_paid=session.get("amount_total") or 0,
        currency=session.get("currency") or "",
        payment_intent_id=_id_of(session.get("payment_intent")),
    )
    return "granted" if purchase else "already granted"


def _handle_charge_refunded(charge: Any) -> str:
    entry = record_refund(
        payment_intent_id=_id_of(charge.get("payment_intent")),
        charge_id=charge["id"],
        amount_refunded=charge.get("amount_refunded") or 0,
    )
    return "adjusted" if entry else "nothing to adjust"


def _id_of(value: Any) -> str:
    """An id whether Stripe sent the object expanded or as its id."""
    if isinstance(value, dict):
        return value.get("id") or ""
    return value or ""
