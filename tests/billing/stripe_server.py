"""localstripe, plus the Checkout Sessions it lacks, as one test server.

localstripe (PyPI) is a stateful Stripe-compatible server: real payment
methods, payment intents, charges, refunds and events, and webhooks signed
with the secret registered at /_config/webhooks/<id>. Version 1.15 has no
Checkout Sessions and sends no ``charge.refunded`` event. This module adds
the first on top of localstripe's own objects, so the session's payment is a
real localstripe charge that a test can refund through the Stripe API:

- ``POST /v1/checkout/sessions``, ``GET /v1/checkout/sessions/<id>``;
- ``GET /_config/checkout/<id>``: the "hosted page" a customer is sent to;
- ``POST /_config/checkout/<id>/complete`` (``paid=true|false``): what
  Stripe does when the customer pays: a payment intent confirmed with a test
  card (when paid) and the ``checkout.session.completed`` event, which
  localstripe signs and delivers to the registered webhooks.

localstripe lets /_config/ through without an API key, as a browser needs.
Run: ``python -m tests.billing.stripe_server --port N``.
"""

import argparse
import logging

from aiohttp import web
from localstripe import resources, server
from localstripe.errors import UserError
from localstripe.resources import Event, PaymentIntent, PaymentMethod, StripeObject
from localstripe.webhooks import schedule_webhook

# Each test run starts empty; never share localstripe's /tmp pickle.
resources.Store.dump_to_disk = lambda self: None

_export_charge = resources.Charge._export


def _charge_as_stripe_sends_it(self, expand=None):
    """localstripe 1.15 writes a charge as Stripe's 2017 API did; Stripe's
    current one (stripe-python's Charge, tests/billing/stripe_shapes.py)
    has no ``invoice``, sends ``refunds`` only when expanded, and always
    sends ``amount_captured``, ``billing_details`` and ``disputed``."""
    charge = _export_charge(self, expand=expand)
    charge.pop("invoice", None)
    if "refunds" not in (expand or []):
        charge.pop("refunds", None)
    charge.setdefault("amount_captured", charge["amount"] if charge.get("captured") else 0)
    charge.setdefault(
        "billing_details",
        {"address": None, "email": None, "name": None, "phone": None, "tax_id": None},
    )
    charge.setdefault("disputed", False)
    return charge


resources.Charge._export = _charge_as_stripe_sends_it


class CheckoutSession(StripeObject):
    object = "checkout.session"
    _id_prefix = "cs_test_"

    def __init__(
        self,
        mode=None,
        line_items=None,
        success_url=None,
        cancel_url=None,
        client_reference_id=None,
        metadata=None,
        payment_intent_data=None,
        customer_email=None,
        **kwargs,
    ):
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        if mode != "payment" or not line_items or not success_url:
            raise UserError(400, "Bad request")
        total, currency = 0, None
        for item in line_items:
            price = item["price_data"]
            total += int(price["unit_amount"]) * int(item.get("quantity", 1))
            currency = price["currency"]
        super().__init__()
        self.mode = mode
        # Stripe sends line_items only when asked to expand them (a list
        # object then); the handler never does.
        self._line_items = line_items
        self.amount_total = total
        self.currency = currency
        self.success_url = success_url.replace("{CHECKOUT_SESSION_ID}", self.id)
        self.cancel_url = cancel_url
        self.client_reference_id = client_reference_id
        self.metadata = metadata or {}
        self.customer_email = customer_email
        self.status = "open"
        self.payment_status = "unpaid"
        self.payment_intent = None
        self._payment_intent_data = payment_intent_data or {}
        self.url = None  # set by the route, which knows the host
        # The rest of what Stripe always sends on a session
        # (tests/billing/stripe_shapes.py holds every event to it).
        self.expires_at = self.created + 24 * 3600
        self.payment_method_types = ["card"]
        self.automatic_tax = {"enabled": False, "liability": None, "provider": None, "status": None}
        self.custom_fields = []
        self.custom_text = {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        }
        self.shipping_options = []

    def _complete(self, *, paid: bool):
        if self.status != "open":
            raise UserError(400, "Session already completed")
        if paid:
            card = PaymentMethod(
                type="card",
                card={
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2040,
                    "cvc": "123",
                },
            )
            intent = PaymentIntent._api_create(
                confirm=True,
                amount=self.amount_total,
                currency=self.currency,
                payment_method=card.id,
                metadata=self._payment_intent_data.get("metadata") or {},
            )
            self.payment_intent = intent.id
            self.payment_status = "paid"
        self.status = "complete"
        event = Event("checkout.session.completed", self)
        # Fields of Stripe's event envelope that localstripe 1.15 leaves out.
        event.pending_webhooks = 1
        event.request = {"id": None, "idempotency_key": None}
        schedule_webhook(event)


async def create_session(request):
    data = await server.get_post_data(request) or {}
    session = CheckoutSession(**data)
    session.url = f"{request.scheme}://{request.host}/_config/checkout/{session.id}"
    return server.json_response(session._export())


def retrieve_session(request):
    return server.json_response(CheckoutSession._api_retrieve(request.match_info["id"])._export())


def hosted_page(request):
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    body = (
        "<!doctype html><title>Checkout</title><h1>Test checkout</h1>"
        f"<p id='amount'>{session.amount_total} {session.currency}</p>"
        f"<p id='session'>{session.id}</p>"
    )
    return web.Response(text=body, content_type="text/html")


async def complete_session(request):
    data = await server.get_post_data(request) or {}
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    session._complete(paid=str(data.get("paid", "true")).lower() == "true")
    return server.json_response(session._export())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = server.app
    app.router.add_post("/v1/checkout/sessions", create_session)
    app.router.add_get("/v1/checkout/sessions/{id}", retrieve_session)
    app.router.add_get("/_config/checkout/{id}", hosted_page)
    app.router.add_post("/_config/checkout/{id}/complete", complete_session)
    logging.basicConfig(level=logging.INFO)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
