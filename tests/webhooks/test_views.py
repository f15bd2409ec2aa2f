"""The dashboard's webhook section and the job page's deliveries."""

import pytest

from accounts.services import add_member
from webhooks import services
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def outsider_client(other_account, client):
    client.force_login(add_member(account=other_account, username="eve", password="pw-e-123").user)
    return client


def test_the_dashboard_shows_the_url_and_the_signing_secret(customer_client, account):
    html = customer_client.get("/dashboard/").content.decode()
    assert 'id="webhooks"' in html
    assert services.settings_for(account=account).secret in html
    assert "Rotate secret" in html


def test_it_saves_an_allowed_webhook_url(customer_client, account, allow_loopback):
    response = customer_client.post(
        "/dashboard/webhooks/", {"url": "http://127.0.0.1:9/hook"}, follow=True
    )
    assert "Webhooks will be sent to http://127.0.0.1:9/hook." in response.content.decode()
    assert services.webhook_url_for(account=account) == "http://127.0.0.1:9/hook"
    assert 'value="http://127.0.0.1:9/hook"' in response.content.decode()


def test_it_refuses_a_forbidden_webhook_url_with_a_sentence(customer_client, account):
    response = customer_client.post(
        "/dashboard/webhooks/", {"url": "http://169.254.169.254/latest/"}, follow=True
    )
    html = response.content.decode()
    assert "webhook_url is not allowed" in html
    assert services.webhook_url_for(account=account) == ""


def test_rotate_shows_a_new_secret_and_says_the_old_one_still_signs(customer_client, account):
    old = services.settings_for(account=account).secret
    html = customer_client.post("/dashboard/webhooks/rotate/", follow=True).content.decode()
    new = services.settings_for(account=account).secret
    assert new != old
    assert new in html
    assert "The previous secret also signs every call until" in html


@pytest.mark.weights
def test_the_job_page_lists_deliveries_with_a_resend_button(
    customer_client, receiver, ended_job, django_capture_on_commit_callbacks
):
    hook = receiver([500])
    job = ended_job(hook.url)
    event = services.announce_job_event(job=job)
    services.deliver(event_id=event.id)

    html = customer_client.get(f"/jobs/{job.id}/").content.decode()
    assert event.id in html
    assert "HTTP 500" in html
    assert "The receiver answered HTTP 500" in html
    resend_url = f"/jobs/{job.id}/webhooks/{event.id}/resend/"
    assert resend_url in html

    with django_capture_on_commit_callbacks(execute=True):
        response = customer_client.post(resend_url)
    assert response.status_code == 302
    event.refresh_from_db()
    assert event.next_attempt_at is not None
    assert services.deliver(event_id=event.id).succeeded
    html = customer_client.get(f"/jobs/{job.id}/").content.decode()
    assert "HTTP 200" in html


@pytest.mark.weights
def test_nobody_else_can_resend_an_accounts_event(outsider_client, ended_job, receiver):
    hook = receiver([500])
    event = services.announce_job_event(job=ended_job(hook.url))
    services.deliver(event_id=event.id)
    response = outsider_client.post(f"/jobs/{event.job_id}/webhooks/{event.id}/resend/")
    assert response.status_code == 302
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PENDING
    assert services.deliver(event_id=event.id) is None  # still waiting for its own retry
