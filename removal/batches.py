"""Batches: many images, one charge transaction, one ZIP, one event at the end.

Each accepted item is an ordinary ``RemovalJob`` (charged, run, refunded and
expired like any job); the batch adds three rules:

1. **One charge, all or nothing.** Every accepted item is charged in one
   transaction under one lock of the account; if the balance cannot cover
   them all, nothing is charged (402).
2. **Fair queueing.** A batch hands at most ``BATCH_CONCURRENCY`` of its
   items to the queue at a time; each item's end queues the next. Another
   customer's single image therefore waits for at most that many batch
   items, never for the whole batch. A claim (``queued_at``) makes each item
   queued once, and the reaper queues the next item of a batch whose
   hand-off was lost (a worker killed between an item's end and the next).
3. **One end.** When its last item has ended, ``ended_at`` is set once (a
   conditional update) and ``batch_ended`` is sent; webhooks listen.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from accounts.models import Account, ApiKey
from billing.services import charge_for_jobs
from removal import signals
from removal.batch_submissions import BatchRequest
from removal.models import Batch, RemovalJob
from removal.services import BATCH_ITEM_TASK, enqueue_job, replay

logger = logging.getLogger(__name__)

FINISHED = (RemovalJob.Status.COMPLETED, RemovalJob.Status.FAILED)


def _replay(*, account: Account, key: str, fingerprint: str) -> Batch | None:
    return replay(
        Batch,
        account=account,
        key=key,
        fingerprint=fingerprint,
        conflict="This Idempotency-Key was already used for a different batch; use a new key.",
    )


def submit_batch(
    *, account: Account, request: BatchRequest, api_key: ApiKey | None = None
) -> Batch:
    """Charges and queues the accepted items of a checked batch.

    Steps:
    1. With a used Idempotency-Key: the same batch again gets the first
       one back (not charged again); another batch is refused (409).
    2. One transaction: the batch row, a job per accepted item, their
       charges (402 and nothing kept if the balance is short), their inputs.
    3. After commit, the first BATCH_CONCURRENCY items go to the queue.
    """
    key = request.idempotency_key
    if key and (existing := _replay(account=account, key=key, fingerprint=request.fingerprint)):
        return existing
    now = timezone.now()
    batch = Batch(
        id=uuid.uuid4(),
        account=account,
        api_key=api_key,
        model_name=request.model_name,
        options=request.options.to_json(),
        output_format=request.options.format,
        webhook_url=request.webhook_url,
        item_count=len(request.accepted),
        refused=[
            {"index": item.index, "filename": item.filename, "error": item.error, "code": item.code}
            for item in request.refused
        ],
        idempotency_key=key,
        request_fingerprint=request.fingerprint,
        created_at=now,
    )
    jobs = [
        RemovalJob(
            id=uuid.uuid4(),
            account=account,
            api_key=api_key,
            batch=batch,
            batch_index=item.index,
            model_name=request.model_name,
            origin=RemovalJob.Origin.BATCH,
            options=batch.options,
            output_format=batch.output_format,
            original_filename=item.filename[:255],
            input_format=item.image.format,
            input_size=len(item.source.data),
            width=item.image.width,
            height=item.image.height,
            expires_at=now + timedelta(hours=settings.OUTPUT_TTL_HOURS),
        )
        for item in request.accepted
    ]
    stored: list[str] = []
    try:
        with transaction.atomic():
            batch.save(force_insert=True)
            RemovalJob.objects.bulk_create(jobs)
            charge_for_jobs(account=account, jobs=jobs)
            for job, item in zip(jobs, request.accepted, strict=True):
                name = f"{job.id}.{item.image.format}"
                job.input_file.save(name, ContentFile(item.source.data), save=False)
                stored.append(job.input_file.name)
            RemovalJob.objects.bulk_update(jobs, ["input_file"])
            transaction.on_commit(lambda: queue_next_items(batch_id=batch.id))
    except Exception as exc:
        for name in stored:
            jobs[0].input_file.storage.delete(name)
        if isinstance(exc, IntegrityError) and key:
            existing = _replay(account=account, key=key, fingerprint=request.fingerprint)
            if existing is not None:
                return existing
        raise
    return batch


def queue_next_items(*, batch_id: uuid.UUID) -> int:
    """Hands the batch's next items to the queue, up to BATCH_CONCURRENCY in flight.

    Each item is claimed with a conditional update (``queued_at`` from
    null), so two callers (an item's end and the reaper) never queue one
    item twice. Returns how many were queued.
    """
    in_flight = (
        RemovalJob.objects.filter(batch_id=batch_id, queued_at__isnull=False)
        .exclude(status__in=FINISHED)
        .count()
    )
    room = settings.BATCH_CONCURRENCY - in_flight
    queued = 0
    if room <= 0:
        return 0
    waiting = RemovalJob.objects.filter(
        batch_id=batch_id, queued_at__isnull=True, status=RemovalJob.Status.PENDING
    ).order_by("batch_index")
    for job_id in waiting.values_list("id", flat=True)[: room * 2]:
        if queued >= room:
            break
        claimed = RemovalJob.objects.filter(pk=job_id, queued_at__isnull=True).update(
            queued_at=timezone.now()
        )
        if claimed:
            enqueue_job(job_id=job_id, task=BATCH_ITEM_TASK)
            queued += 1
    return queued


def on_job_ended(sender, *, job: RemovalJob, **kwargs) -> None:
    """``job_ended``'s receiver: a batch item's end queues the next and may end the batch."""
    if job.batch_id is None:
        return
    queue_next_items(batch_id=job.batch_id)
    end_if_done(batch_id=job.batch_id)


def end_if_done(*, batch_id: uuid.UUID) -> bool:
    """Marks the batch ended when none of its items is left; announces it once."""
    if RemovalJob.objects.filter(batch_id=batch_id).exclude(status__in=FINISHED).exists():
        return False
    ended = Batch.objects.filter(pk=batch_id, ended_at__isnull=True).update(ended_at=timezone.now())
    if not ended:
        return False
    batch = Batch.objects.get(pk=batch_id)
    for receiver, result in signals.batch_ended.send_robust(sender=Batch, batch=batch):
        if isinstance(result, Exception):
            logger.error(
                "Could not announce the end of batch %s to %r", batch_id, receiver, exc_info=result
            )
    return True


def resume_batches() -> int:
    """The reaper's part: batches whose hand-off to the next item was lost
    (a worker killed between an item's end and the next's queueing) go on,
    and batches whose last item ended unannounced end. Returns batches touched."""
    touched = 0
    for batch_id in Batch.objects.filter(ended_at__isnull=True).values_list("id", flat=True):
        if queue_next_items(batch_id=batch_id) or end_if_done(batch_id=batch_id):
            touched += 1
    return touched


def batch_counts(*, batch: Batch) -> dict[str, int]:
    """How many of the batch's items are in each status (refused items included)."""
    rows = batch.jobs.values("status").annotate(n=Count("id")).order_by()
    counts = {status: 0 for status in RemovalJob.Status.values}
    counts.update({row["status"]: row["n"] for row in rows})
    counts["refused"] = len(batch.refused)
    return counts
