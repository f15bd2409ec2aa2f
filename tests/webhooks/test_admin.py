"""Webhook events and deliveries in the admin: read-only, with "resend"."""

import pytest

from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEvent

EVENTS = "/admin/webhooks/webhookevent/"
DELIVERIES = "/admin/webhooks/webhookdelivery/"

pytestmark = [pytest.mark.django_db, pytest.mark.weights]


@pytest.fixture
def failed_event(settings, receiver, ended_job):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    hook = receiver([500])
    event = services.announce_job_event(job=ended_job(hook.url))
    services.deliver(event_id=event.id)
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED
    return event


def test_events_and_deliveries_are_listed_and_shown(admin_client, failed_event):
    listing = admin_client.get(EVENTS).content.decode()
    assert failed_event.id in listing
    page = admin_client.get(f"{EVENTS}{failed_event.id}/change/").content.decode()
    assert "The receiver answered HTTP 500" in page
    assert str(failed_event.job_id) in page
    deliveries = admin_client.get(DELIVERIES).content.decode()
    assert "The receiver answered HTTP 500" in deliveries


def test_nothing_can_be_added_changed_or_deleted(admin_client, failed_event):
    assert admin_client.get(f"{EVENTS}add/").status_code == 403
    delivery = WebhookDelivery.objects.get()
    assert admin_client.get(f"{DELIVERIES}{delivery.pk}/delete/").status_code == 403
    admin_client.post(f"{EVENTS}{failed_event.id}/change/", {"status": "delivered"})
    failed_event.refresh_from_db()
    assert failed_event.status == WebhookEvent.Status.FAILED
    page = admin_client.get(f"{EVENTS}{failed_event.id}/change/").content.decode()
    assert 'name="_save"' not in page


def test_resend_from_the_event_list_makes_it_due_now(
    admin_client, failed_event, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            EVENTS, {"action": "resend", "_selected_action": [failed_event.id]}, follow=True
        )
    assert "Queued a new attempt for 1 event(s)." in response.content.decode()
    delivery = services.deliver(event_id=failed_event.id)
    assert delivery.attempt == 2 and delivery.succeeded


def test_resend_from_the_delivery_list_resends_their_event(admin_client, failed_event):
    delivery = WebhookDelivery.objects.get()
    admin_client.post(DELIVERIES, {"action": "resend", "_selected_action": [delivery.pk]})
    failed_event.refresh_from_db()
    assert failed_event.status == WebhookEvent.Status.PENDING
    assert services.deliver(event_id=failed_event.id).succeeded
