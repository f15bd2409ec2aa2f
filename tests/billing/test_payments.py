"""Buying credit packs through Stripe Checkout, against a real
Stripe-compatible server (localstripe, tests/billing/stripe_server.py).

What localstripe lacks, and how it is covered here:
- Checkout Sessions: added by tests/billing/stripe_server.py on top of
  localstripe's own payment intents and charges; localstripe signs and
  delivers the resulting ``checkout.session.completed`` event.
- ``charge.refunded``: localstripe refunds the charge (a real refund on its
  real charge) but sends no event, so the test builds the event around the
  refunded charge it fetched and signs it with the stripe library's
  ``WebhookSignature.generate_signature_header``. The endpoint always
  verifies with ``stripe.Webhook.construct_event``.
"""

import json
import time

import pytest
import requests
import stripe
from django.contrib.auth import get_user_model
from django.test import Client

from billing.models import CreditPack, LedgerEntry, Purchase, RejectedPayment
from billing.selectors import ledger_sum
from billing.services import adjust_credits
from tests.billing.stripe_shapes import HANDLER_READS, event_errors, paid_session
from tests.conftest import STRIPE_TEST_SECRET_KEY, STRIPE_TEST_WEBHOOK_SECRET, wait_for

WEBHOOK = "/billing/stripe/webhook"
AUTH = {"Authorization": f"Bearer {STRIPE_TEST_SECRET_KEY}"}


@pytest.fixture
def pack(db):
    return CreditPack.objects.create(name="Starter", credits=500, price=900, currency="eur")


def open_checkout(client: Client, pack: CreditPack) -> str:
    """Buys the pack as the customer; returns the Checkout Session's id."""
    response = client.post(f"/billing/checkout/{pack.pk}/")
    assert response.status_code == 302, response.content
    return response["Location"].rsplit("/", 1)[-1]


def complete(stripe_server: str, session_id: str, *, paid: bool = True) -> dict:
    response = requests.post(
        f"{stripe_server}/_config/checkout/{session_id}/complete",
        data={"paid": "true" if paid else "false"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def stripe_event(stripe_server: str, event_type: str, object_id: str) -> dict:
    """The event the server recorded for ``object_id``, as Stripe sends it."""
    response = requests.get(
        f"{stripe_server}/v1/events", params={"type": event_type}, headers=AUTH, timeout=10
    )
    response.raise_for_status()
    events = [e for e in response.json()["data"] if e["data"]["object"]["id"] == object_id]
    assert len(events) == 1, events
    return events[0]


def deliver(
    client: Client, event: dict, *, secret: str = STRIPE_TEST_WEBHOOK_SECRET, shaped: bool = True
):
    # Whoever built it (localstripe, our test server, a test), it is shaped as
    # Stripe's; only the malformed-event tests send what Stripe never would.
    if shaped:
        errors = event_errors(event, reads=HANDLER_READS)
        assert errors == [], "\n".join(errors)
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    return client.post(
        WEBHOOK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


def envelope(event_id: str, event_type: str, obj: dict) -> dict:
    """An event as Stripe wraps an object in one (what a test sends that
    localstripe cannot: the fields of stripe.Event that Stripe always sends)."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def purchases(account) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.PURCHASE))


def stripe_client(stripe_server: str) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE_TEST_SECRET_KEY, base_addresses={"api": stripe_server})


@pytest.mark.e2e
def test_a_paid_checkout_grants_the_pack_once_through_the_signed_webhook(
    live_server, stripe_settings, pack, customer_client, account
):
    stripe_server = stripe_settings
    # localstripe signs its events with this secret and posts them here.
    register = requests.post(
        f"{stripe_server}/_config/webhooks/revid",
        json={
            "url": f"{live_server.url}{WEBHOOK}",
            "secret": STRIPE_TEST_WEBHOOK_SECRET,
            "events": ["checkout.session.completed"],
        },
        timeout=10,
    )
    register.raise_for_status()
    try:
        before = account.credit_balance
        session_id = open_checkout(customer_client, pack)
        session = stripe_client(stripe_server).v1.checkout.sessions.retrieve(session_id)
        assert session.client_reference_id == str(account.pk)
        assert session.metadata["account_id"] == str(account.pk)
        assert session.metadata["pack_id"] == str(pack.pk)
        assert session.amount_total == 900
        assert session.currency == "eur"
        assert session.customer_email == "alice@example.com"

        # The customer is back on the success page before Stripe's event
        # arrives (localstripe waits a second): the page grants nothing.
        page = customer_client.get(f"/billing/checkout/success/?session_id={session_id}")
        assert b"Payment received" in page.content
        assert purchases(account) == []

        complete(stripe_server, session_id)
        wait_for(lambda: purchases(account), timeout=30, message="no purchase was recorded")
    finally:
        # Nothing more goes to this live server from later tests.
        requests.post(
            f"{stripe_server}/_config/webhooks/revid",
            json={
                "url": f"{live_server.url}{WEBHOOK}",
                "secret": STRIPE_TEST_WEBHOOK_SECRET,
                "events": ["none"],
            },
            timeout=10,
        )

    account.refresh_from_db()
    assert account.credit_balance == before + 500
    assert ledger_sum(account=account) == account.credit_balance
    purchase = Purchase.objects.get(checkout_session_id=session_id)
    assert (purchase.credits, purchase.amount_paid, purchase.currency) == (500, 900, "eur")
    assert purchase.payment_intent_id.startswith("pi_")
    assert purchase.ledger_entry.external_id == session_id
    assert "9.00 EUR" in purchase.ledger_entry.note

    # The same event again (Stripe retries, or an attacker replays it).
    replay = deliver(
        customer_client, stripe_event(stripe_server, "checkout.session.completed", session_id)
    )
    assert replay.status_code == 200
    assert replay.json()["outcome"] == "already granted"
    account.refresh_from_db()
    assert account.credit_balance == before + 500
    assert len(purchases(account)) == 1

    history = customer_client.get("/pricing/")
    assert b"9.00 EUR" in history.content


def test_an_event_with_a_bad_signature_is_refused_and_grants_nothing(
    stripe_settings, pack, customer_client, account
):
    session_id = open_checkout(customer_client, pack)
    complete(stripe_settings, session_id)
    event = stripe_event(stripe_settings, "checkout.session.completed", session_id)

    forged = deliver(customer_client, event, secret="whsec_someone_else")
    assert forged.status_code == 400
    assert forged.json()["code"] == "invalid_signature"
    unsigned = customer_client.post(
        WEBHOOK, data=json.dumps(event), content_type="application/json"
    )
    assert unsigned.status_code == 400
    stale_header = stripe.WebhookSignature.generate_signature_header(
        json.dumps(event), STRIPE_TEST_WEBHOOK_SECRET, timestamp=int(time.time()) - 3600
    )
    stale = customer_client.post(
        WEBHOOK,
        data=json.dumps(event),
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=stale_header,
    )
    assert stale.status_code == 400
    assert purchases(account) == []
    assert not Purchase.objects.exists()


def test_an_unpaid_completed_session_grants_nothing(
    stripe_settings, pack, customer_client, account
):
    session_id = open_checkout(customer_client, pack)
    complete(stripe_settings, session_id, paid=False)
    event = stripe_event(stripe_settings, "checkout.session.completed", session_id)
    assert event["data"]["object"]["payment_status"] == "unpaid"

    response = deliver(customer_client, event)
    assert response.status_code == 200
    assert response.json()["outcome"] == "unpaid"
    assert purchases(account) == []
    account.refresh_from_db()
    assert account.credit_balance == 1000


def test_a_delayed_payment_is_granted_when_stripe_reports_it_paid(
    stripe_settings, pack, customer_client, account
):
    session_id = open_checkout(customer_client, pack)
    completed = stripe_event(
        stripe_settings,
        "checkout.session.completed",
        complete(stripe_settings, session_id, paid=False)["id"],
    )
    assert deliver(customer_client, completed).json()["outcome"] == "unpaid"
    # localstripe has no delayed payment methods: the later event, as Stripe sends it.
    paid_later = envelope(
        "evt_async_paid",
        "checkout.session.async_payment_succeeded",
        completed["data"]["object"] | {"payment_status": "paid"},
    )
    assert deliver(customer_client, paid_later).json()["outcome"] == "granted"
    assert deliver(customer_client, paid_later).json()["outcome"] == "already granted"
    account.refresh_from_db()
    assert account.credit_balance == 1500


def buy(stripe_server: str, client: Client, pack: CreditPack) -> Purchase:
    session_id = open_checkout(client, pack)
    complete(stripe_server, session_id)
    response = deliver(
        client, stripe_event(stripe_server, "checkout.session.completed", session_id)
    )
    assert response.json()["outcome"] == "granted"
    return Purchase.objects.get(checkout_session_id=session_id)


def refund(stripe_server: str, purchase: Purchase, amount: int | None = None) -> dict:
    """Refunds on the Stripe server; returns the charge.refunded event Stripe would send."""
    client = stripe_client(stripe_server)
    intent = client.v1.payment_intents.retrieve(purchase.payment_intent_id)
    charge_id = intent.latest_charge["id"]
    params = {"charge": charge_id} | ({"amount": amount} if amount else {})
    client.v1.refunds.create(params=params)
    charge = requests.get(f"{stripe_server}/v1/charges/{charge_id}", headers=AUTH, timeout=10)
    event_id = f"evt_refund_{charge_id}_{charge.json()['amount_refunded']}"
    return envelope(event_id, "charge.refunded", charge.json())


def test_a_refund_takes_the_credits_back_once(stripe_settings, pack, customer_client, account):
    purchase = buy(stripe_settings, customer_client, pack)
    account.refresh_from_db()
    assert account.credit_balance == 1500

    event = refund(stripe_settings, purchase)
    assert event["data"]["object"]["amount_refunded"] == 900
    response = deliver(customer_client, event)
    assert response.status_code == 200
    assert response.json()["outcome"] == "adjusted"
    assert deliver(customer_client, event).json()["outcome"] == "nothing to adjust"

    account.refresh_from_db()
    assert account.credit_balance == 1000
    assert ledger_sum(account=account) == 1000
    adjustment = LedgerEntry.objects.get(account=account, kind=LedgerEntry.Kind.ADJUST)
    assert adjustment.amount == -500
    assert "9.00 EUR" in adjustment.note
    purchase.refresh_from_db()
    assert (purchase.amount_refunded, purchase.credits_reclaimed) == (900, 500)
    assert not purchase.needs_review


def test_a_partial_refund_takes_back_its_share_and_a_second_one_the_rest(
    stripe_settings, pack, customer_client, account
):
    purchase = buy(stripe_settings, customer_client, pack)
    assert deliver(customer_client, refund(stripe_settings, purchase, 300)).status_code == 200
    account.refresh_from_db()
    assert account.credit_balance == 1500 - 166  # 500 credits * 300 / 900, rounded down
    assert deliver(customer_client, refund(stripe_settings, purchase, 600)).status_code == 200
    account.refresh_from_db()
    assert account.credit_balance == 1000
    assert ledger_sum(account=account) == 1000


def test_a_refund_of_spent_credits_empties_the_balance_and_flags_the_shortfall(
    stripe_settings, pack, customer_client, account
):
    purchase = buy(stripe_settings, customer_client, pack)
    adjust_credits(account=account, amount=-1300, note="spent on images")
    account.refresh_from_db()
    assert account.credit_balance == 200

    deliver(customer_client, refund(stripe_settings, purchase))

    account.refresh_from_db()
    assert account.credit_balance == 0
    assert ledger_sum(account=account) == 0
    adjustment = LedgerEntry.objects.filter(account=account, kind="adjust").first()
    assert adjustment.amount == -200
    assert "300 credits already spent" in adjustment.note
    purchase.refresh_from_db()
    assert purchase.credits_shortfall == 300
    assert purchase.needs_review


def test_the_admin_lists_purchases_and_flags_those_needing_review(
    stripe_settings, pack, customer_client, account
):
    purchase = buy(stripe_settings, customer_client, pack)
    adjust_credits(account=account, amount=-1500, note="spent")
    deliver(customer_client, refund(stripe_settings, purchase))
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin)

    page = client.get("/admin/billing/purchase/?needs_review=yes")
    assert page.status_code == 200
    assert b"9.00 EUR" in page.content
    assert client.get("/admin/billing/creditpack/").status_code == 200
    ledger = client.get("/admin/billing/ledgerentry/?kind=purchase")
    assert b"Bought Starter: paid 9.00 EUR" in ledger.content


def test_the_pricing_page_lists_active_packs_to_anyone(client, pack, settings):
    CreditPack.objects.create(name="Retired", credits=10, price=100, active=False)
    settings.STRIPE_SECRET_KEY = ""
    page = client.get("/pricing/")
    assert page.status_code == 200
    assert b"Starter" in page.content
    assert b"9.00 EUR" in page.content
    assert b"Retired" not in page.content
    assert b"ask the administrator" in page.content


def test_without_stripe_settings_nothing_can_be_bought(settings, pack, customer_client, account):
    settings.STRIPE_SECRET_KEY = "sk_test_only_half"
    settings.STRIPE_WEBHOOK_SECRET = ""
    page = customer_client.get("/pricing/")
    assert b"ask the administrator" in page.content
    assert b"Buy Starter" not in page.content
    assert customer_client.post(f"/billing/checkout/{pack.pk}/").status_code == 503
    assert customer_client.get(WEBHOOK).json()["code"] == "method_not_allowed"
    webhook = customer_client.post(WEBHOOK, data="{}", content_type="application/json")
    assert webhook.status_code == 404
    assert webhook.json()["code"] == "payments_disabled"


def test_the_dashboard_links_to_buying_credits(customer_client):
    page = customer_client.get("/dashboard/")
    assert b'href="/pricing/"' in page.content
    assert b"Buy credits" in page.content


# --- what an event may and may not decide ----------------------------------------


@pytest.fixture
def payments_on(settings):
    """Payments on; these events are built here and signed, no Stripe server needed."""
    settings.STRIPE_SECRET_KEY = STRIPE_TEST_SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_TEST_WEBHOOK_SECRET


def checkout_event(
    account, *, pack_id, amount: int, currency: str = "eur", session_id: str = "cs_test_1", **meta
) -> dict:
    """A paid ``checkout.session.completed`` as Stripe sends it, with our metadata."""
    metadata = {"account_id": str(account.pk), "pack_id": str(pack_id), **meta}
    session = paid_session() | {
        "id": session_id,
        "amount_total": amount,
        "currency": currency,
        "client_reference_id": str(account.pk),
        "payment_intent": f"pi_{session_id}",
        "metadata": metadata,
    }
    return envelope(f"evt_{session_id}", "checkout.session.completed", session)


def test_the_credits_come_from_the_pack_not_from_the_events_metadata(
    payments_on, client, pack, account
):
    event = checkout_event(account, pack_id=pack.pk, amount=900, credits="1000000")
    response = deliver(client, event)
    assert (response.status_code, response.json()["outcome"]) == (200, "granted")
    account.refresh_from_db()
    assert account.credit_balance == 1000 + 500 == ledger_sum(account=account)
    purchase = Purchase.objects.get()
    assert (purchase.credits, purchase.amount_paid, purchase.pack) == (500, 900, pack)


@pytest.mark.parametrize(
    ("amount", "currency", "reason"),
    [
        (1, "eur", "paid 0.01 EUR, the pack costs 9.00 EUR"),
        (899, "eur", "paid 8.99 EUR, the pack costs 9.00 EUR"),
        (900, "usd", "paid 9.00 USD, the pack costs 9.00 EUR"),
        (0, "eur", "paid 0.00 EUR, the pack costs 9.00 EUR"),
    ],
)
def test_a_payment_that_is_not_the_packs_price_grants_nothing_and_is_kept_for_the_admin(
    payments_on, client, admin_client, pack, account, amount, currency, reason
):
    event = checkout_event(
        account, pack_id=pack.pk, amount=amount, currency=currency, credits="1000000"
    )
    response = deliver(client, event)
    assert (response.status_code, response.json()["outcome"]) == (200, "price mismatch")
    assert deliver(client, event).json()["outcome"] == "already recorded"
    account.refresh_from_db()
    assert account.credit_balance == 1000 == ledger_sum(account=account)
    assert not Purchase.objects.exists()
    rejected = RejectedPayment.objects.get()
    assert (rejected.account, rejected.pack, rejected.checkout_session_id) == (
        account,
        pack,
        "cs_test_1",
    )
    assert (rejected.amount_paid, rejected.currency) == (amount, currency)
    assert rejected.reason == f"Amount or currency differs from the pack's price: {reason}."
    page = admin_client.get("/admin/billing/rejectedpayment/")
    assert page.status_code == 200
    assert b"cs_test_1" in page.content and reason.encode() in page.content
    assert (
        admin_client.get(f"/admin/billing/rejectedpayment/{rejected.pk}/change/").status_code == 200
    )
    assert admin_client.get("/admin/billing/rejectedpayment/add/").status_code == 403


def test_a_retired_pack_is_still_granted_at_its_price(payments_on, client, pack, account):
    pack.active = False
    pack.save()
    response = deliver(client, checkout_event(account, pack_id=pack.pk, amount=900))
    assert response.json()["outcome"] == "granted"
    account.refresh_from_db()
    assert account.credit_balance == 1500


def test_a_session_of_another_integration_is_ignored(payments_on, client, account):
    event = checkout_event(account, pack_id=1, amount=900)
    event["data"]["object"]["metadata"] = {"order": "42"}
    response = deliver(client, event)
    assert (response.status_code, response.json()["outcome"]) == (200, "not ours")
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.PURCHASE).exists()


def malformed_events(account, pack) -> dict[str, dict]:
    good = checkout_event(account, pack_id=pack.pk, amount=900)
    session = good["data"]["object"]
    return {
        "no data": {"id": "evt_1", "type": "checkout.session.completed"},
        "no object": {**good, "data": {}},
        "null object": {**good, "data": {"object": None}},
        "object not a dict": {**good, "data": {"object": ["cs_1"]}},
        "no session id": {
            **good,
            "data": {"object": {k: v for k, v in session.items() if k != "id"}},
        },
        "unknown pack": checkout_event(account, pack_id=pack.pk + 1000, amount=900),
        "pack not a number": checkout_event(account, pack_id="starter", amount=900),
        "no pack": {
            **good,
            "data": {"object": {**session, "metadata": {"account_id": str(account.pk)}}},
        },
        "unknown account": {
            **good,
            "data": {
                "object": {**session, "metadata": {"account_id": "999999", "pack_id": str(pack.pk)}}
            },
        },
        "amount not a number": {**good, "data": {"object": {**session, "amount_total": "900"}}},
        "credits <= 0": checkout_event(account, pack_id=pack.pk, amount=900, credits="-5"),
        "refund without charge id": {
            "id": "evt_r",
            "type": "charge.refunded",
            "data": {"object": {"payment_intent": "pi_1", "amount_refunded": 900}},
        },
    }


@pytest.mark.parametrize(
    "case",
    [
        "no data",
        "no object",
        "null object",
        "object not a dict",
        "no session id",
        "unknown pack",
        "pack not a number",
        "no pack",
        "unknown account",
        "amount not a number",
        "refund without charge id",
    ],
)
def test_a_malformed_event_is_a_400_not_a_503(payments_on, client, pack, account, case):
    response = deliver(client, malformed_events(account, pack)[case], shaped=False)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "malformed_event" and body["error"]
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.PURCHASE).exists()
    assert not RejectedPayment.objects.exists()


def test_metadata_credits_of_zero_or_less_change_nothing(payments_on, client, pack, account):
    response = deliver(client, malformed_events(account, pack)["credits <= 0"])
    assert (response.status_code, response.json()["outcome"]) == (200, "granted")
    account.refresh_from_db()
    assert account.credit_balance == 1500


class Reads(dict):
    """A JSON object that notes the dotted path of every key read from it."""

    def __init__(self, data: dict, seen: set[str], path: str = ""):
        super().__init__(data)
        self.seen, self.path = seen, path

    def _read(self, key, value):
        self.seen.add(f"{self.path}{key}")
        return Reads(value, self.seen, f"{self.path}{key}.") if isinstance(value, dict) else value

    def __getitem__(self, key):
        return self._read(key, super().__getitem__(key))

    def get(self, key, default=None):
        return self._read(key, super().get(key, default))


def test_the_handler_reads_only_what_stripe_shapes_checks_and_stripe_sends(
    stripe_settings, pack, customer_client, account
):
    """HANDLER_READS (what every delivered event is checked for) is what
    billing/payments.py really reads, on events shaped as Stripe's."""
    from billing import payments

    purchase = buy(stripe_settings, customer_client, pack)
    events = [
        stripe_event(stripe_settings, "checkout.session.completed", purchase.checkout_session_id),
        refund(stripe_settings, purchase),
    ]
    for event in events:
        seen: set[str] = set()
        payments.handle_event(event=Reads(event, seen))
        name = event["data"]["object"]["object"]
        read = {path.split(".")[2] for path in seen if path.startswith("data.object.")}
        assert read == set(HANDLER_READS[name]), (name, sorted(seen))
        assert event_errors(event, reads=HANDLER_READS) == []
