"""The customer's billing pages: pricing, Stripe Checkout and Stripe's webhook.

Payments go through ``billing.payments``; the webhook is the only path by
which a payment becomes credits. (The usage page, which reports jobs as
well as the ledger, is a door above both: ``doors/usage.py``.)
"""

import logging

import stripe
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accounts.guards import account_required
from accounts.selectors import account_for_user
from billing import payments
from billing.models import CreditPack
from billing.selectors import (
    active_credit_packs,
    purchases_for_account,
)
from revid.errors import ApplicationError, error_response

logger = logging.getLogger(__name__)


def _render_pricing(request: HttpRequest, *, error: str = "", status: int = 200) -> HttpResponse:
    account = account_for_user(user=request.user) if request.user.is_authenticated else None
    context = {
        "packs": active_credit_packs(),
        "payments_enabled": payments.payments_enabled(),
        "account": account,
        "purchases": purchases_for_account(account=account) if account else [],
        "checkout_error": error,
    }
    return render(request, "billing/pricing.html", context, status=status)


@require_GET
def pricing(request: HttpRequest) -> HttpResponse:
    return _render_pricing(request)


@require_POST
@account_required(title="Pricing")
def checkout(request: HttpRequest, pack_id: int) -> HttpResponse:
    """Opens a Checkout Session for the pack and sends the browser to Stripe."""
    pack = get_object_or_404(CreditPack, pk=pack_id, active=True)
    account = request.account
    if not payments.payments_enabled():
        return _render_pricing(
            request, error="Payments are not set up here; ask the administrator.", status=503
        )
    try:
        url = payments.create_checkout_session(
            account=account,
            pack=pack,
            success_url=request.build_absolute_uri(reverse("billing-checkout-success"))
            + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=request.build_absolute_uri(reverse("billing-checkout-cancel")),
            email=request.user.email,
        )
    except stripe.StripeError:
        logger.exception("Could not create a Checkout Session for pack %s", pack.pk)
        return _render_pricing(
            request,
            error="The payment service did not answer; nothing was charged. Try again shortly.",
            status=502,
        )
    return redirect(url)


@login_required
@require_GET
def checkout_success(request: HttpRequest) -> HttpResponse:
    # Grants nothing: the signed webhook does, possibly a moment later.
    return render(
        request, "billing/pricing_success.html", {"account": account_for_user(user=request.user)}
    )


@login_required
@require_GET
def checkout_cancel(request: HttpRequest) -> HttpResponse:
    messages.info(request, "Payment cancelled; nothing was charged.")
    return redirect("pricing")


@csrf_exempt
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Stripe's events, signature-checked with STRIPE_WEBHOOK_SECRET.

    Register this URL in Stripe for checkout.session.completed,
    checkout.session.async_payment_succeeded and charge.refunded. A
    malformed event is a 400; a failure on our side a 503. Stripe retries
    any non-2xx answer later.
    """
    if request.method != "POST":
        return error_response("Stripe sends events with POST.", "method_not_allowed", 405)
    if not payments.payments_enabled():
        return error_response("Payments are not enabled.", "payments_disabled", 404)
    try:
        event = payments.verify_event(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except (ValueError, stripe.SignatureVerificationError):
        return error_response("Invalid Stripe signature or payload.", "invalid_signature", 400)
    try:
        outcome = payments.handle_event(event=event)
    except ApplicationError as exc:
        # Not shaped as Stripe's (no object, an unknown pack or account):
        # a retry would not change it. Logged, since Stripe signed it.
        logger.warning("Stripe event %s (%s) refused: %s", event.get("id"), event.get("type"), exc)
        return error_response(exc.message, exc.code, exc.status_code)
    except Exception:
        logger.exception("Stripe event %s (%s) failed", event.get("id"), event.get("type"))
        return error_response(
            "Could not process the event; Stripe will retry.", "processing_failed", 503
        )
    logger.info("Stripe event %s (%s): %s", event.get("id"), event.get("type"), outcome)
    return JsonResponse({"received": True, "outcome": outcome})
