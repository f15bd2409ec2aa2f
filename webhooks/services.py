"""Signed webhooks: tell the customer when a job ends.

Events are created after the job's own transaction has committed and are
delivered by the django-q2 cluster named ``WEBHOOK_CLUSTER``, never in a
request or in the job's transaction; a job's state and charge never depend
on them. Each attempt goes through the safe outbound fetcher (the address
is checked again every time, redirects are never followed) and is
recorded as a ``WebhookDelivery``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from standardwebhooks import Webhook

from accounts.models import Account
from outbound import fetcher
from removal.batches import batch_counts
from removal.models import RemovalJob
from removal.serializers import batch_status_payload, task_status_payload
from removal.submissions import InvalidWebhookUrl, validate_webhook_url
from webhooks.models import WebhookDelivery, WebhookEvent, WebhookSettings, new_signing_secret
from webhooks.selectors import webhook_url_for

logger = logging.getLogger(__name__)

# How long a rotated-out secret keeps signing beside the new one.
PREVIOUS_SECRET_VALIDITY = timedelta(hours=24)
# How far back the sweep looks for ended jobs whose event was never made.
SWEEP_LOOKBACK = timedelta(hours=24)
SWEEP_BATCH = 500


def settings_for(*, account: Account) -> WebhookSettings:
    """The account's webhook settings, made (with a fresh secret) on first use."""
    webhook_settings, _ = WebhookSettings.objects.get_or_create(account=account)
    return webhook_settings


def set_webhook_url(*, account: Account, url: str) -> WebhookSettings:
    """Saves the default URL (validated); an empty one turns webhooks off."""
    url = (url or "").strip()
    if url:
        url = validate_webhook_url(url=url)
    webhook_settings = settings_for(account=account)
    webhook_settings.url = url
    webhook_settings.save(update_fields=["url"])
    return webhook_settings


def rotate_secret(*, account: Account) -> WebhookSettings:
    """A new signing secret; the old one keeps signing too for 24 hours.

    A second rotation within those 24 hours drops the oldest secret.
    """
    settings_for(account=account)
    with transaction.atomic():
        # Locked so two rotations cannot both keep the same "previous".
        webhook_settings = WebhookSettings.objects.select_for_update().get(account=account)
        now = timezone.now()
        webhook_settings.previous_secret = webhook_settings.secret
        webhook_settings.previous_secret_expires_at = now + PREVIOUS_SECRET_VALIDITY
        webhook_settings.secret = new_signing_secret()
        webhook_settings.rotated_at = now
        webhook_settings.save()
    logger.info("Rotated the webhook secret of account %s", account.pk)
    return webhook_settings


# --- Events -------------------------------------------------------------------


def event_type_for(job: RemovalJob) -> str | None:
    if job.status == RemovalJob.Status.COMPLETED:
        return WebhookEvent.Type.COMPLETED
    if job.status == RemovalJob.Status.FAILED:
        return WebhookEvent.Type.FAILED
    return None


def event_body(*, job: RemovalJob, event_type: str, created_at: datetime) -> str:
    """The JSON sent: Standard Webhooks' type/timestamp/data, plus task_id;
    ``data`` is exactly what ``GET /api/get/<task_id>`` answers now."""
    payload = {
        "type": event_type,
        "timestamp": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "task_id": str(job.id),
        "data": task_status_payload(job),
    }
    return json.dumps(payload, separators=(",", ":"))


def announce_job_event(*, job: RemovalJob) -> WebhookEvent | None:
    """Creates the event for a job that ended, once, and queues its delivery.

    Called after the job's own transaction committed. Does nothing for a
    job without a webhook_url or one that has not ended; a second call for
    the same job returns the existing event without queueing it again.
    """
    job = RemovalJob.objects.filter(pk=job.pk).first()  # its committed state
    if job is None or not job.webhook_url:
        return None
    event_type = event_type_for(job)
    if event_type is None:
        logger.warning("Job %s has not ended (%s); no webhook event", job.pk, job.status)
        return None
    existing = WebhookEvent.objects.filter(job=job, type=event_type).first()
    if existing is not None:
        return existing
    now = timezone.now()
    event = WebhookEvent(
        account_id=job.account_id,
        job=job,
        type=event_type,
        url=job.webhook_url,
        body=event_body(job=job, event_type=event_type, created_at=now),
        created_at=now,
        next_attempt_at=now,
    )
    try:
        with transaction.atomic():
            event.save(force_insert=True)
            transaction.on_commit(lambda: enqueue_delivery(event_id=event.id))
    except IntegrityError:
        # Announced twice at once (the worker and the sweep); the unique
        # constraint let one in.
        return WebhookEvent.objects.filter(job=job, type=event_type).first()
    return event


def announce_batch_event(*, batch) -> WebhookEvent | None:
    """Creates the batch's one ``batch.completed`` event when it has ended, and
    queues it; called after the batch's end committed, once or again (the
    unique batch and type keep it to one event)."""
    if not batch.webhook_url or not batch.has_ended:
        return None
    event_type = WebhookEvent.Type.BATCH_COMPLETED
    existing = WebhookEvent.objects.filter(batch=batch, type=event_type).first()
    if existing is not None:
        return existing
    now = timezone.now()
    payload = {
        "type": event_type,
        "timestamp": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "batch_id": str(batch.id),
        "data": batch_status_payload(batch, counts=batch_counts(batch=batch)),
    }
    event = WebhookEvent(
        account_id=batch.account_id,
        batch=batch,
        type=event_type,
        url=batch.webhook_url,
        body=json.dumps(payload, separators=(",", ":")),
        created_at=now,
        next_attempt_at=now,
    )
    try:
        with transaction.atomic():
            event.save(force_insert=True)
            transaction.on_commit(lambda: enqueue_delivery(event_id=event.id))
    except IntegrityError:
        return WebhookEvent.objects.filter(batch=batch, type=event_type).first()
    return event


def enqueue_delivery(*, event_id: str) -> None:
    """Queues one attempt on the webhook cluster (its own queue and workers)."""
    from django_q.tasks import async_task

    async_task(
        "webhooks.tasks.deliver_event",
        event_id,
        cluster=settings.WEBHOOK_CLUSTER,
        task_name=f"webhook-{event_id}",
        group="webhooks",
    )


def _schedule_attempt(*, event_id: str, attempt: int, at: datetime) -> None:
    """A one-off django-q2 schedule (in the database, so it survives a
    restart) that queues the next attempt when it is due."""
    from django_q.models import Schedule

    Schedule.objects.create(
        name=f"webhook {event_id} attempt {attempt}",
        func="webhooks.tasks.deliver_event",
        args=repr(event_id),
        schedule_type=Schedule.ONCE,
        repeats=-1,  # deleted once it has run
        next_run=at,
        cluster=settings.WEBHOOK_CLUSTER,
    )


# --- Delivery -----------------------------------------------------------------


def retry_delay(*, attempt: int) -> timedelta:
    """The wait after failed attempt ``attempt`` (1-based): WEBHOOK_RETRY_DELAYS,
    the last one repeating, plus up to 20 % jitter so retries to one
    receiver that failed at once do not all come back at once."""
    delays = settings.WEBHOOK_RETRY_DELAYS
    base = delays[min(attempt, len(delays)) - 1]
    return timedelta(seconds=base * (1 + 0.2 * random.random()))


def signed_headers(*, event: WebhookEvent, secrets: list[str], at: datetime) -> dict[str, str]:
    """Standard Webhooks headers; one ``v1,`` signature per valid secret,
    space-separated, so a receiver holding either secret verifies."""
    signatures = " ".join(
        Webhook(secret).sign(msg_id=event.id, timestamp=at, data=event.body) for secret in secrets
    )
    return {
        "content-type": "application/json",
        "user-agent": "revid-webhooks/1.0",
        "webhook-id": event.id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }


def _claim(*, event_id: str) -> WebhookEvent | None:
    """Takes the due attempt of a pending event, or None if it is not ours.

    The conditional UPDATE is the lock: of two workers handed the same event
    (the queued task and the sweep), one moves next_attempt_at past now and
    the other's UPDATE matches nothing.
    """
    now = timezone.now()
    # Due again after the attempt's time limit plus WEBHOOK_CLAIM_GRACE_SECONDS:
    # an attempt whose worker was killed is then retried by the sweep.
    lease = now + timedelta(
        seconds=settings.WEBHOOK_TIMEOUT_SECONDS + settings.WEBHOOK_CLAIM_GRACE_SECONDS
    )
    claimed = WebhookEvent.objects.filter(
        pk=event_id, status=WebhookEvent.Status.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=lease, attempts=models.F("attempts") + 1)
    if not claimed:
        return None
    return WebhookEvent.objects.select_related("account").get(pk=event_id)


def _describe_status(status: int) -> str:
    if 300 <= status < 400:
        return f"The receiver answered HTTP {status}, a redirect; webhooks do not follow redirects"
    return f"The receiver answered HTTP {status}"


def deliver(*, event_id: str) -> WebhookDelivery | None:
    """Makes one attempt to deliver an event, if one is due.

    Steps:
    1. Claim the attempt (a duplicate task stops here).
    2. Record the attempt, sign the frozen body with every valid secret and
       POST it through the safe fetcher within WEBHOOK_TIMEOUT_SECONDS.
    3. A 2xx answer delivers the event. A connection error, a timeout or
       any other answer (a redirect included) schedules the next attempt
       with backoff and jitter, until WEBHOOK_MAX_ATTEMPTS.
    """
    event = _claim(event_id=event_id)
    if event is None:
        return None
    attempt = event.attempts
    started_at = timezone.now()
    # An attempt left unfinished was cut short by its worker's death.
    WebhookDelivery.objects.filter(event=event, finished_at__isnull=True).update(
        finished_at=started_at, error="The worker stopped during this attempt; it was retried"
    )
    delivery = WebhookDelivery.objects.create(
        event=event, attempt=attempt, url=event.url, created_at=started_at
    )
    secrets = settings_for(account=event.account).signing_secrets(now=started_at)
    headers = signed_headers(event=event, secrets=secrets, at=started_at)
    status_code, error = None, ""
    clock = time.monotonic()
    try:
        posted = fetcher.post(
            event.url,
            body=event.body.encode(),
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
        )
    except fetcher.OutboundRefused as exc:
        status_code, error = exc.status, exc.message
        duration = time.monotonic() - clock
    else:
        status_code, duration = posted.status, posted.elapsed
        if not 200 <= posted.status < 300:
            error = _describe_status(posted.status)

    finished_at = timezone.now()
    next_retry_at = None
    if not error:
        WebhookEvent.objects.filter(pk=event.pk).update(
            status=WebhookEvent.Status.DELIVERED, next_attempt_at=None, delivered_at=finished_at
        )
    else:
        # Only if no newer attempt (a resend) has claimed the event meanwhile,
        # and never over a delivered one.
        still_ours = WebhookEvent.objects.filter(
            pk=event.pk, status=WebhookEvent.Status.PENDING, attempts=attempt
        )
        if attempt < settings.WEBHOOK_MAX_ATTEMPTS:
            next_retry_at = finished_at + retry_delay(attempt=attempt)
            if still_ours.update(next_attempt_at=next_retry_at):
                _schedule_attempt(event_id=event.pk, attempt=attempt + 1, at=next_retry_at)
            else:
                next_retry_at = None
        else:
            still_ours.update(status=WebhookEvent.Status.FAILED, next_attempt_at=None)
    delivery.status_code = status_code
    delivery.duration_seconds = round(duration, 3)
    delivery.error = error[:300]
    delivery.next_retry_at = next_retry_at
    delivery.finished_at = finished_at
    delivery.save(
        update_fields=["status_code", "duration_seconds", "error", "next_retry_at", "finished_at"]
    )
    logger.info(
        "Webhook %s attempt %s to %s: %s",
        event.pk,
        attempt,
        event.url,
        error or f"HTTP {status_code}",
    )
    return delivery


def resend(*, event: WebhookEvent) -> None:
    """A new attempt now, whatever happened before (the customer asked).

    If it fails and the event had attempts left, retries go on from there;
    otherwise it stays failed until the next resend.
    """
    WebhookEvent.objects.filter(pk=event.pk).update(
        status=WebhookEvent.Status.PENDING, next_attempt_at=timezone.now()
    )
    transaction.on_commit(lambda: enqueue_delivery(event_id=event.pk))


def sweep_grace() -> timedelta:
    return timedelta(seconds=settings.WEBHOOK_SWEEP_GRACE_SECONDS)


def enqueue_due_deliveries(*, now: datetime | None = None) -> int:
    """The periodic sweep: makes sure no event is lost.

    Steps:
    1. A job that ended (recently) with a webhook_url but no event, because
       its worker was killed before announcing it: announce it now.
    2. A pending event whose attempt is overdue (its queued task was lost
       in a restart, or its worker died mid-attempt and the claim ran out):
       queue it again. The claim in ``deliver`` makes a duplicate harmless.
    Returns how many attempts it queued.
    """
    now = now or timezone.now()
    # Recent work is left to the task queued for it.
    grace = sweep_grace()
    unannounced = (
        RemovalJob.objects.filter(
            status__in=[RemovalJob.Status.COMPLETED, RemovalJob.Status.FAILED],
            completed_at__gte=now - SWEEP_LOOKBACK,
            completed_at__lte=now - grace,
        )
        .exclude(webhook_url="")
        .filter(webhook_events__isnull=True)
    )
    for job in unannounced[:SWEEP_BATCH]:
        logger.warning("Job %s ended without a webhook event; announcing it now", job.pk)
        announce_job_event(job=job)
    overdue = WebhookEvent.objects.filter(
        status=WebhookEvent.Status.PENDING, next_attempt_at__lte=now - grace
    ).values_list("pk", flat=True)
    count = 0
    for event_id in overdue[:SWEEP_BATCH]:
        enqueue_delivery(event_id=event_id)
        count += 1
    return count


# Named here too: the dashboard and the tests ask the webhooks app for them.
__all__ = ["InvalidWebhookUrl", "validate_webhook_url", "webhook_url_for"]
