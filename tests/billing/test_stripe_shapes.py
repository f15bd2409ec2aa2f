"""The check that holds the billing tests' Stripe events to Stripe's own
definitions (tests/billing/stripe_shapes.py) finds what it is there to find."""

import copy

import pytest

from tests.billing.stripe_shapes import HANDLER_READS, event_errors
from tests.billing.stripe_shapes import paid_session as session


def event(obj: dict, event_type: str = "checkout.session.completed") -> dict:
    return {
        "id": "evt_test_a1",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": 1764700001,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def test_a_session_event_shaped_as_stripes_passes():
    assert event_errors(event(session()), reads=HANDLER_READS) == []


def test_an_expanded_payment_intent_is_one_of_stripes_shapes():
    expanded = session() | {"payment_intent": {"id": "pi_test_a1", "object": "payment_intent"}}
    errors = event_errors(event(expanded), reads=HANDLER_READS)
    # The expanded intent is checked as Stripe's PaymentIntent: here it lacks
    # the fields Stripe always sends, which is what the check reports.
    assert errors and all(
        e.startswith("data.object(checkout.session).payment_intent.") for e in errors
    )


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"payment_status": "complete"}, "payment_status: 'complete', Stripe sends one of"),
        ({"metadata": {"credits": 500}}, "metadata.credits: 500 is not a string"),
        ({"amount_total": "900"}, "amount_total: '900' is not an integer"),
        ({"payment_intent": 7}, "payment_intent: 7 is not"),
        ({"line_items": [{"price": "x"}]}, "line_items: Stripe sends a list object here"),
        ({"credits": "500"}, "credits: not a field Stripe defines on Session"),
        ({"livemode": "false"}, "livemode: 'false' is not a boolean"),
    ],
)
def test_a_field_of_the_wrong_type_or_name_is_reported(change, expected):
    errors = event_errors(event(session() | change), reads=HANDLER_READS)
    assert any(expected in error for error in errors), errors


@pytest.mark.parametrize("field", ["payment_status", "mode", "created"])
def test_a_field_stripe_always_sends_is_missed(field):
    obj = session()
    del obj[field]
    errors = event_errors(event(obj), reads=HANDLER_READS)
    assert (
        f"data.object(checkout.session).{field}: Stripe always sends it on Session, missing"
        in errors
    )


@pytest.mark.parametrize("field", ["pending_webhooks", "created", "livemode"])
def test_an_envelope_without_what_stripe_always_sends_is_reported(field):
    wrapped = event(session())
    del wrapped[field]
    assert f"event.{field}: Stripe always sends it on Event, missing" in event_errors(
        wrapped, reads=HANDLER_READS
    )


def test_a_field_the_handler_reads_that_the_event_lacks_is_reported():
    obj = session()
    del obj["metadata"]  # optional for Stripe, but the handler reads it
    errors = event_errors(event(obj), reads=HANDLER_READS)
    assert errors == ["data.object.metadata: the handler reads it, the event lacks it"]


def test_an_event_type_stripe_does_not_have_is_reported():
    wrapped = copy.deepcopy(event(session(), "checkout.session.paid"))
    errors = event_errors(wrapped, reads=HANDLER_READS)
    assert any(error.startswith("event.type: 'checkout.session.paid'") for error in errors), errors


def test_the_stripe_library_reads_the_object_as_the_class_it_names():
    charge_named_a_session = event(session() | {"object": "charge"}, "charge.refunded")
    errors = event_errors(charge_named_a_session, reads=HANDLER_READS)
    assert "data.object.amount_refunded: the handler reads it, the event lacks it" in errors
