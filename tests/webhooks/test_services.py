"""Creating, signing, delivering and retrying webhook events, against real
HTTP receivers on loopback (allowed through OUTBOUND_ALLOWED_NETWORKS)."""

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from standardwebhooks import Webhook, WebhookVerificationError

from removal.models import RemovalJob
from revid.errors import ApplicationError
from tests.job_factory import completed_job, submitted_job
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEvent

pytestmark = pytest.mark.django_db


def announce(job) -> WebhookEvent:
    event = services.announce_job_event(job=job)
    assert event is not None
    return event


def deliver_when_due(event: WebhookEvent) -> WebhookDelivery:
    """Waits for the event's next attempt to fall due, then makes it."""
    event.refresh_from_db()
    wait = (event.next_attempt_at - timezone.now()).total_seconds()
    if wait > 0:
        time.sleep(wait + 0.01)
    delivery = services.deliver(event_id=event.pk)
    assert delivery is not None
    return delivery


def verify(secret: str, received) -> dict:
    return Webhook(secret).verify(received.body, received.headers)


@pytest.mark.weights
def test_a_completed_jobs_event_verifies_and_holds_the_status_json(
    account, api_client, settings, receiver, ended_job
):
    settings.SITE_URL = "http://testserver"
    hook = receiver()
    job = ended_job(hook.url)
    event = announce(job)
    assert event.id.startswith("msg_")

    delivery = services.deliver(event_id=event.id)

    assert delivery.succeeded and delivery.attempt == 1 and delivery.error == ""
    assert delivery.duration_seconds >= 0
    [received] = hook.received
    secret = services.settings_for(account=account).secret
    payload = verify(secret, received)
    assert received.headers["webhook-id"] == event.id
    assert received.headers["content-type"] == "application/json"
    assert payload["type"] == "removal.completed"
    assert payload["task_id"] == str(job.id)
    # Exactly what the status endpoint answers.
    assert payload["data"] == api_client.get(f"/api/get/{job.id}").json()
    assert payload["data"]["result"]["image_url"] == f"http://testserver/output/{job.id}_output.png"
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.DELIVERED
    assert event.next_attempt_at is None


@pytest.mark.weights
def test_a_tampered_body_or_another_secret_does_not_verify(account, receiver, ended_job):
    hook = receiver()
    services.deliver(event_id=announce(ended_job(hook.url)).id)
    [received] = hook.received
    secret = services.settings_for(account=account).secret
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(received.body.replace(b"completed", b"failed"), received.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(services.rotate_secret(account=account).secret).verify(
            received.body, {**received.headers, "webhook-signature": "v1,bm9wZQ=="}
        )


@pytest.mark.weights
def test_a_failed_job_sends_removal_failed_with_its_error(account, receiver, ended_job):
    hook = receiver()
    job = ended_job(hook.url, failed=True)
    services.deliver(event_id=announce(job).id)
    payload = verify(services.settings_for(account=account).secret, hook.received[0])
    assert payload["type"] == "removal.failed"
    assert payload["data"]["status"] == "failed"
    assert payload["data"]["result"] == {"error": job.error}


@pytest.mark.weights
def test_500_twice_then_200_makes_three_attempts_with_one_id_and_growing_delays(
    account, receiver, ended_job, fast_retries
):
    hook = receiver([500, 500, 200])
    event = announce(ended_job(hook.url))

    first = deliver_when_due(event)
    second = deliver_when_due(event)
    third = deliver_when_due(event)

    assert [d.attempt for d in (first, second, third)] == [1, 2, 3]
    assert [d.status_code for d in (first, second, third)] == [500, 500, 200]
    assert first.error == "The receiver answered HTTP 500"
    assert third.succeeded and third.next_retry_at is None
    first_delay = (first.next_retry_at - first.finished_at).total_seconds()
    second_delay = (second.next_retry_at - second.finished_at).total_seconds()
    assert 0.3 <= first_delay <= 0.36
    assert 0.6 <= second_delay <= 0.72
    # The receiver saw the waits (at least the delays) and one id throughout.
    ids = {received.headers["webhook-id"] for received in hook.received}
    assert ids == {event.id}
    gaps = [b.at - a.at for a, b in zip(hook.received, hook.received[1:], strict=False)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6
    secret = services.settings_for(account=account).secret
    assert all(verify(secret, received) for received in hook.received)
    event.refresh_from_db()
    assert (event.status, event.attempts) == (WebhookEvent.Status.DELIVERED, 3)


@pytest.mark.weights
def test_each_retry_is_kept_in_a_database_schedule_for_the_webhook_cluster(
    receiver, ended_job, fast_retries
):
    hook = receiver([503])
    event = announce(ended_job(hook.url))
    delivery = services.deliver(event_id=event.id)
    schedule = Schedule.objects.get(name=f"webhook {event.id} attempt 2")
    assert schedule.func == "webhooks.tasks.deliver_event"
    assert schedule.cluster == "webhooks"
    assert schedule.schedule_type == Schedule.ONCE
    assert schedule.next_run == delivery.next_retry_at


@pytest.mark.weights
def test_an_attempt_that_is_not_due_or_already_taken_does_nothing(receiver, ended_job):
    hook = receiver([500])
    event = announce(ended_job(hook.url))
    assert services.deliver(event_id=event.id) is not None
    # The retry is scheduled for later: a duplicate task now sends nothing.
    assert services.deliver(event_id=event.id) is None
    assert len(hook.received) == 1


@pytest.mark.weights
def test_a_hanging_receiver_is_timed_out_and_retried(account, settings, receiver, ended_job):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    settings.WEBHOOK_RETRY_DELAYS = [0.2]
    hook = receiver([("hang", 30), 200])
    event = announce(ended_job(hook.url))

    first = deliver_when_due(event)
    assert first.status_code is None
    assert "within 1 second" in first.error
    assert 1 <= first.duration_seconds < 10
    assert first.next_retry_at is not None

    second = deliver_when_due(event)
    assert second.succeeded
    assert {r.headers["webhook-id"] for r in hook.received} == {event.id}


@pytest.mark.weights
def test_a_redirect_to_a_forbidden_address_is_not_followed(receiver, ended_job, fast_retries):
    # 127.0.0.2 is outside the allowed 127.0.0.1/32.
    target = receiver(host="127.0.0.2")
    hook = receiver([("redirect", target.url), ("redirect", target.url), 200])
    event = announce(ended_job(hook.url))

    first = deliver_when_due(event)
    second = deliver_when_due(event)
    third = deliver_when_due(event)

    assert [first.status_code, second.status_code, third.status_code] == [302, 302, 200]
    assert "redirect" in first.error
    assert first.next_retry_at is not None
    assert target.received == []


@pytest.mark.weights
def test_a_forbidden_webhook_url_is_also_refused_at_each_attempt(settings, receiver, ended_job):
    hook = receiver()
    event = announce(ended_job(hook.url))
    settings.OUTBOUND_ALLOWED_NETWORKS = []  # e.g. the name now resolves to loopback
    delivery = services.deliver(event_id=event.id)
    assert delivery.status_code is None
    assert delivery.error
    assert hook.received == []


@pytest.mark.weights
def test_it_gives_up_after_the_last_attempt(settings, receiver, ended_job):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    settings.WEBHOOK_RETRY_DELAYS = [0.2]
    hook = receiver([500, 500, 500])
    event = announce(ended_job(hook.url))
    deliver_when_due(event)
    last = deliver_when_due(event)
    assert last.next_retry_at is None
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED
    assert services.deliver(event_id=event.id) is None
    assert len(hook.received) == 2


@pytest.mark.weights
def test_resend_makes_a_new_attempt_now_even_after_giving_up(settings, receiver, ended_job):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    hook = receiver([500])
    event = announce(ended_job(hook.url))
    services.deliver(event_id=event.id)
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED

    services.resend(event=event)
    again = services.deliver(event_id=event.id)

    assert again.attempt == 2 and again.succeeded
    assert [r.headers["webhook-id"] for r in hook.received] == [event.id, event.id]


@pytest.mark.weights
def test_a_rotated_secret_still_verifies_retries_of_an_event_made_before(
    account, settings, receiver, ended_job, fast_retries
):
    old_secret = services.settings_for(account=account).secret
    hook = receiver([500, 200])
    event = announce(ended_job(hook.url))
    deliver_when_due(event)  # signed with the old secret only

    new_secret = services.rotate_secret(account=account).secret
    deliver_when_due(event)  # the retry, after the rotation

    assert new_secret != old_secret and new_secret.startswith("whsec_")
    before, after = hook.received
    assert verify(old_secret, before)
    # Both secrets sign the retry: a receiver holding either verifies it.
    assert len(after.headers["webhook-signature"].split(" ")) == 2
    assert verify(old_secret, after) == verify(new_secret, after)


def test_the_previous_secret_stops_signing_24_hours_after_rotation(account):
    old = services.settings_for(account=account).secret
    rotated = services.rotate_secret(account=account)
    assert rotated.signing_secrets() == [rotated.secret, old]
    later = timezone.now() + timedelta(hours=24, seconds=1)
    assert rotated.signing_secrets(now=later) == [rotated.secret]


def test_secrets_have_the_standard_webhooks_format(account):
    secret = services.settings_for(account=account).secret
    assert secret.startswith("whsec_")
    assert len(Webhook(secret)._whsecret) == 32
    assert services.settings_for(account=account).secret == secret  # stable until rotated


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5:6379/",
        "http://127.0.0.1:8000/hook",
        "http://[::1]/hook",
        "ftp://example.com/hook",
        "not a url",
        "",
    ],
)
def test_validate_webhook_url_refuses_forbidden_or_malformed_urls(url):
    with pytest.raises(ApplicationError) as refused:
        services.validate_webhook_url(url=url)
    assert refused.value.code == "invalid_webhook_url"
    assert refused.value.status_code == 400
    assert refused.value.message.startswith("webhook_url ")


def test_validate_webhook_url_accepts_an_allowed_network(allow_loopback):
    url = "http://127.0.0.1:9/hook"
    assert services.validate_webhook_url(url=url) == url


def test_the_accounts_default_url_is_validated_and_returned(account, allow_loopback):
    assert services.webhook_url_for(account=account) == ""
    services.set_webhook_url(account=account, url="http://127.0.0.1:9/hook")
    assert services.webhook_url_for(account=account) == "http://127.0.0.1:9/hook"
    with pytest.raises(ApplicationError):
        services.set_webhook_url(account=account, url="http://10.1.1.1/")
    services.set_webhook_url(account=account, url="")
    assert services.webhook_url_for(account=account) == ""


@pytest.mark.weights
def test_an_event_is_made_once_per_job_and_queued_on_its_own_cluster(
    ended_job, django_capture_on_commit_callbacks
):
    job = ended_job("http://127.0.0.1:9/hook")
    with django_capture_on_commit_callbacks(execute=True):
        first = services.announce_job_event(job=job)
        second = services.announce_job_event(job=job)
    assert first.pk == second.pk
    assert WebhookEvent.objects.filter(job=job).count() == 1
    queued = OrmQ.objects.filter(key="webhooks")
    assert queued.count() == 1
    assert queued.get().task["args"] == (first.pk,)
    assert json.loads(first.body)["task_id"] == str(job.id)


@pytest.mark.weights
def test_no_event_for_a_job_without_a_webhook_url_or_that_has_not_ended(account):
    assert services.announce_job_event(job=completed_job(account)) is None
    running = submitted_job(account)
    RemovalJob.objects.filter(pk=running.pk).update(webhook_url="http://127.0.0.1:9/hook")
    assert services.announce_job_event(job=running) is None
    assert services.enqueue_due_deliveries() == 0
    assert not WebhookEvent.objects.exists()


@pytest.mark.weights
def test_the_sweep_finds_unannounced_jobs_and_overdue_attempts(
    ended_job, django_capture_on_commit_callbacks
):
    # A job whose worker died between finishing and announcing it.
    job = ended_job("http://127.0.0.1:9/hook")
    RemovalJob.objects.filter(pk=job.pk).update(
        completed_at=timezone.now() - services.sweep_grace() - timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.enqueue_due_deliveries()
    event = WebhookEvent.objects.get(job=job)

    # Its queued task was lost too (a restart): the next sweep queues it again.
    OrmQ.objects.all().delete()
    later = timezone.now() + services.sweep_grace() + timedelta(seconds=1)
    assert services.enqueue_due_deliveries(now=later) == 1
    assert [q.task["args"] for q in OrmQ.objects.filter(key="webhooks")] == [(event.pk,)]


@pytest.mark.weights
def test_an_attempt_cut_short_by_a_dead_worker_is_retried_after_its_claim_ends(receiver, ended_job):
    hook = receiver()
    event = announce(ended_job(hook.url))
    claimed = services._claim(event_id=event.pk)  # a worker took it, then died
    WebhookDelivery.objects.create(event=claimed, attempt=1, url=event.url)
    assert services.deliver(event_id=event.pk) is None  # still claimed

    WebhookEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    delivery = services.deliver(event_id=event.pk)

    assert delivery.attempt == 2 and delivery.succeeded
    lost = WebhookDelivery.objects.get(event=event, attempt=1)
    assert lost.finished_at is not None and "worker stopped" in lost.error
