"""Business rules of a removal job: accept, run, fail, expire.

The API view, the web upload page and the admin call these functions;
the django-q2 tasks in ``tasks.py`` only fetch an id and call them.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account, ApiKey
from billing.services import charge_for_job, refund_for_job
from imaging.errors import DeadlineExceeded, PipelineError
from imaging.options import OutputOptions
from imaging.pipeline import remove_background
from removal import registry, signals, waiting
from removal.models import RemovalJob, output_upload_to
from removal.submissions import RemovalRequest
from revid import observability
from revid.errors import ApplicationError

logger = logging.getLogger(__name__)


# What a job no worker ever started is failed with (the reaper, the remove.bg door).
QUEUE_TIMEOUT_ERROR = "No worker could start this image in time; the charge was refunded"


def stale_grace() -> timedelta:
    """How long past the job timeout a job may sit in "processing" before the
    reaper decides its worker is gone (REMOVAL_STALE_GRACE)."""
    return timedelta(seconds=settings.REMOVAL_STALE_GRACE)


class IdempotencyConflict(ApplicationError):
    status_code = 409
    code = "idempotency_conflict"


def _replay(*, account: Account, idempotency_key: str, fingerprint: str) -> RemovalJob | None:
    """The job already accepted under this key, if the request is the same one."""
    job = RemovalJob.objects.filter(account=account, idempotency_key=idempotency_key).first()
    if job is not None and job.request_fingerprint != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used for a different request (another file, "
            "model or options); use a new key for a new request."
        )
    return job


def submit_job(
    *, account: Account, request: RemovalRequest, api_key: ApiKey | None = None
) -> RemovalJob:
    """Charges and queues one removal that ``submissions`` has already validated.

    Steps:
    1. With an Idempotency-Key already used by this account: the same
       request gets the job it created (not charged again), a different
       one is refused (409).
    2. In one transaction: create the job, charge it (402 if short), store
       the upload. If anything fails, nothing of it remains.
    3. After commit, enqueue the worker task (a task must never run against
       a job that was rolled back).
    """
    key = request.idempotency_key
    fingerprint = request.fingerprint() if key else ""
    if key and (existing := _replay(account=account, idempotency_key=key, fingerprint=fingerprint)):
        return existing
    info = request.image
    data = request.source.data

    job = RemovalJob(
        id=uuid.uuid4(),
        account=account,
        api_key=api_key,
        model_name=request.model_name,
        origin=request.origin,
        options=request.options.to_json(),
        webhook_url=request.webhook_url,
        output_format=request.options.format,
        original_filename=request.source.name[:255],
        input_format=info.format,
        input_size=len(data),
        width=info.width,
        height=info.height,
        expires_at=timezone.now() + timedelta(hours=settings.OUTPUT_TTL_HOURS),
        idempotency_key=key,
        request_fingerprint=fingerprint,
    )
    stored_name = None
    try:
        with transaction.atomic():
            job.save(force_insert=True)
            charge_for_job(job=job)
            job.input_file.save(f"{job.id}.{info.format}", ContentFile(data), save=False)
            stored_name = job.input_file.name
            job.save(update_fields=["input_file"])
            transaction.on_commit(lambda: enqueue_job(job_id=job.id))
    except IntegrityError:
        if stored_name:
            job.input_file.storage.delete(stored_name)
        # Two retries with the same Idempotency-Key raced; the unique
        # constraint let one in and rolled this one back, uncharged.
        if key and (
            existing := _replay(account=account, idempotency_key=key, fingerprint=fingerprint)
        ):
            return existing
        raise
    except Exception:
        if stored_name:
            job.input_file.storage.delete(stored_name)
        raise
    return job


def enqueue_job(*, job_id: uuid.UUID) -> None:
    from django_q.tasks import async_task

    # The submitting request's id goes with the job, so the worker's log
    # lines for it carry the same id (revid.observability).
    async_task(
        "removal.tasks.process_removal_job",
        str(job_id),
        observability.current_request_id(),
        task_name=f"removal-{job_id}",
        group="removal",
    )


def process_job(*, job_id: uuid.UUID | str) -> RemovalJob | None:
    """Runs one job in the worker.

    Steps:
    1. Claim it (pending -> processing); a duplicate delivery stops here.
    2. Run the pipeline with the cached model session, reporting progress.
    3. Store ``<task_id>_output.<ext>`` and mark completed, or on any
       failure mark failed and refund, once.
    4. Either way, tell whoever waits (a long poll, the remove.bg door,
       the customer's webhook), after the state is committed.
    """
    job = RemovalJob.objects.select_related("account").filter(pk=job_id).first()
    if job is None:
        logger.warning("Job %s does not exist; nothing to do", job_id)
        return None
    timeout = settings.REMOVAL_JOB_TIMEOUT
    stale_before = _stale_cutoff()
    if not job.mark_processing(stale_before=stale_before):
        logger.info("Job %s is %s; not processing it again", job.id, job.status)
        return job

    started = time.monotonic()
    deadline = started + timeout
    stages: dict[str, float] = {}
    try:
        with _timed(stages, "read_input"), job.input_file.open("rb") as handle:
            data = handle.read()
        with _timed(stages, "session"):
            session = registry.get_session(job.model_name)
        cutout = remove_background(
            data,
            session,
            max_pixels=settings.MAX_IMAGE_PIXELS,
            options=OutputOptions.from_json(job.options),
            on_progress=job.set_progress,
            deadline=deadline,
            timings=stages,
        )
        if time.monotonic() > deadline:
            raise DeadlineExceeded()
        with _timed(stages, "write_output"):
            job.output_file.save(job.output_filename, ContentFile(cutout.data), save=False)
        elapsed = time.monotonic() - started
        completed = job.mark_completed(
            output_size=len(cutout.data),
            elapsed_seconds=elapsed,
            expires_at=timezone.now() + timedelta(hours=settings.OUTPUT_TTL_HOURS),
            output_width=cutout.width,
            output_height=cutout.height,
            foreground=cutout.foreground,
            stage_seconds={name: round(seconds, 4) for name, seconds in stages.items()},
        )
        if completed:
            announce_job_end(job=job)
        else:
            # The reaper failed (and refunded) this job while we worked.
            job.output_file.storage.delete(job.output_file.name)
            job.refresh_from_db()
        return job
    except BaseException as exc:
        fail_job(job=job, error=describe_failure(exc, timeout=timeout))
        if not isinstance(exc, Exception):
            raise
        return job


@contextmanager
def _timed(stages: dict[str, float], name: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - started


def describe_failure(exc: BaseException, *, timeout: int) -> str:
    if isinstance(exc, DeadlineExceeded) or type(exc).__name__ == "TimeoutException":
        unit = "second" if timeout == 1 else "seconds"
        return f"Processing timed out after {timeout} {unit}"
    if isinstance(exc, PipelineError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return "The model or the uploaded file is no longer available on this server"
    if isinstance(exc, MemoryError):
        return "The image is too large to process with the memory available"
    logger.exception("Job failed with an unexpected error")
    return "Internal error while processing the image"


def fail_job(*, job: RemovalJob, error: str, unstarted_only: bool = False) -> bool:
    """Marks the job failed and refunds it, in one transaction, at most once.

    ``unstarted_only``: only if no worker has claimed it yet (a job given up
    on before it started); a claimed one runs on and ends as usual.
    """
    with transaction.atomic():
        failed = job.mark_failed(error=error, unstarted_only=unstarted_only)
        if failed:
            refund_for_job(job=job, reason=error)
    if failed:
        logger.info("Job %s failed: %s", job.id, error)
        announce_job_end(job=job)
    return failed


def announce_job_end(*, job: RemovalJob) -> None:
    """Wakes requests waiting for the job and tells the layers above (``job_ended``:
    webhooks queue the job's event).

    Runs after the job's own transaction has committed (a waiter must read
    the final state, and a webhook must never go out for a rolled-back
    end), and never raises: the job's state and charge do not depend on it.
    """

    def announce() -> None:
        try:
            waiting.announce_job_finished(job_id=job.id)
        except Exception:
            logger.exception("Could not wake the waiters of job %s", job.id)
        for receiver, result in signals.job_ended.send_robust(sender=RemovalJob, job=job):
            if isinstance(result, Exception):
                logger.error(
                    "Could not announce the end of job %s to %r",
                    job.id,
                    receiver,
                    exc_info=result,
                )

    transaction.on_commit(announce)


def _stale_cutoff():
    """Jobs started before this, still processing, have lost their worker."""
    return timezone.now() - timedelta(seconds=settings.REMOVAL_JOB_TIMEOUT) - stale_grace()


def _delete_orphan_output(*, job: RemovalJob) -> None:
    """Deletes the output a worker stored before it died, if any.

    A worker killed between storing the file and marking the job completed
    leaves a file the job row never names: nothing would serve it or expire
    it. The job is failed now, so the file at its name is an orphan (a slow
    worker still alive finds the job failed and deletes its file itself).
    """
    name = output_upload_to(job, job.output_filename)
    storage = job.output_file.storage
    if storage.exists(name):
        storage.delete(name)


def fail_stale_jobs() -> int:
    """Fails (and refunds) jobs that will never finish on their own.

    Steps:
    1. Processing past the timeout plus a grace: the worker died mid-run
       (killed, out of memory, machine lost).
    2. Pending past REMOVAL_QUEUE_TIMEOUT: no worker ever started it. With
       the Redis broker a task taken off the queue by a qcluster that was
       then killed is gone (Redis has no acknowledgements), so its job would
       otherwise wait forever.
    A worker that later receives such a job finds it failed and does nothing.
    """
    count = 0
    for job in RemovalJob.objects.filter(
        status=RemovalJob.Status.PROCESSING, started_at__lt=_stale_cutoff()
    ).select_related("account"):
        if fail_job(
            job=job, error="The worker processing this image stopped; the charge was refunded"
        ):
            _delete_orphan_output(job=job)
            count += 1
    queued_before = timezone.now() - timedelta(seconds=settings.REMOVAL_QUEUE_TIMEOUT)
    for job in RemovalJob.objects.filter(
        status=RemovalJob.Status.PENDING, created_at__lt=queued_before
    ).select_related("account"):
        if fail_job(job=job, error=QUEUE_TIMEOUT_ERROR):
            count += 1
    return count


def expire_job_files(*, now=None) -> int:
    """Deletes inputs and outputs past their expiry; rows and ledger stay."""
    now = now or timezone.now()
    count = 0
    expired = RemovalJob.objects.filter(expires_at__lte=now, files_deleted_at__isnull=True).exclude(
        status__in=[RemovalJob.Status.PENDING, RemovalJob.Status.PROCESSING]
    )
    for job in expired.iterator():
        for field in (job.input_file, job.output_file):
            if field.name:
                field.storage.delete(field.name)
        RemovalJob.objects.filter(pk=job.pk).update(files_deleted_at=now)
        count += 1
    return count
