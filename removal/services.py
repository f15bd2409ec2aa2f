"""Business rules of a removal job: accept, run, fail, expire.

The API view, the web upload page and the admin call these functions;
the django-q2 tasks in ``tasks.py`` only fetch an id and call them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, ApiKey
from billing.services import charge_for_job, refund_for_job
from imaging.errors import DeadlineExceeded, PipelineError
from imaging.options import OutputOptions
from imaging.pipeline import remove_background
from removal import registry, signals, storage_cleanup, waiting
from removal.models import RemovalJob, output_upload_to
from removal.submissions import RemovalRequest
from revid import observability
from revid.errors import ApplicationError

logger = logging.getLogger(__name__)


# Jobs whose files one expiry batch deletes together (two files each).
EXPIRY_BATCH = 500
# A stored file no job names is deleted only once it is this old: its job's
# transaction (submit) or its worker's last step (store, then record) may
# still be under way.
ORPHAN_MIN_AGE = timedelta(hours=1)

# What a job no worker ever started is failed with (the reaper, the remove.bg door).
QUEUE_TIMEOUT_ERROR = "No worker could start this image in time; the charge was refunded"


def stale_grace() -> timedelta:
    """How long past the job timeout a job may sit in "processing" before the
    reaper decides its worker is gone (REMOVAL_STALE_GRACE)."""
    return timedelta(seconds=settings.REMOVAL_STALE_GRACE)


class IdempotencyConflict(ApplicationError):
    status_code = 409
    code = "idempotency_conflict"


def replay(model, *, account: Account, key: str, fingerprint: str, conflict: str):
    """The row (a job, a batch) already accepted under this Idempotency-Key, if the
    request is the same one; None if the key is new. A different request with
    a used key is refused (409, ``conflict`` says why)."""
    found = model.objects.filter(account=account, idempotency_key=key).first()
    if found is not None and found.request_fingerprint != fingerprint:
        raise IdempotencyConflict(conflict)
    return found


def _replay(*, account: Account, idempotency_key: str, fingerprint: str) -> RemovalJob | None:
    return replay(
        RemovalJob,
        account=account,
        key=idempotency_key,
        fingerprint=fingerprint,
        conflict="This Idempotency-Key was already used for a different request (another "
        "file, model or options); use a new key for a new request.",
    )


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
    stored: list = []  # (storage, name) of each file written, to delete on a rollback
    try:
        with transaction.atomic():
            job.save(force_insert=True)
            charge_for_job(job=job)
            job.input_file.save(f"{job.id}.{info.format}", ContentFile(data), save=False)
            stored.append((job.input_file.storage, job.input_file.name))
            saved = ["input_file"]
            if request.background is not None:
                job.background_file.save(
                    f"{job.id}.{request.background_image.format}",
                    ContentFile(request.background.data),
                    save=False,
                )
                stored.append((job.background_file.storage, job.background_file.name))
                saved.append("background_file")
            job.save(update_fields=saved)
            # Taken now: the commit may run its callbacks outside the request.
            request_id = observability.current_request_id()
            transaction.on_commit(lambda: enqueue_job(job_id=job.id, request_id=request_id))
    except IntegrityError:
        _delete_stored(stored)
        # Two retries with the same Idempotency-Key raced; the unique
        # constraint let one in and rolled this one back, uncharged.
        if key and (
            existing := _replay(account=account, idempotency_key=key, fingerprint=fingerprint)
        ):
            return existing
        raise
    except Exception:
        _delete_stored(stored)
        raise
    return job


def _delete_stored(stored: list) -> None:
    for storage, name in stored:
        storage.delete(name)


PROCESS_TASK = "removal.tasks.process_removal_job"
# A batch's item: runs it, then the batch's next ones in the same task (removal.batch_runner).
BATCH_ITEM_TASK = "removal.tasks.process_batch_item"


def enqueue_job(
    *, job_id: uuid.UUID, request_id: str | None = None, task: str = PROCESS_TASK
) -> None:
    from django_q.tasks import async_task

    # The submitting request's id goes with the job, so the worker's log
    # lines for it carry the same id (revid.observability).
    async_task(
        task,
        str(job_id),
        request_id=observability.current_request_id() if request_id is None else request_id,
        task_name=f"removal-{job_id}",
        group="removal",
    )


def requeue_job(*, job_id: uuid.UUID | str) -> bool:
    """Puts a job's task back on the queue, untouched, for another worker.

    A stopping worker does this with the tasks it had taken but not
    started. Only a job still waiting (or stuck in processing, which a
    redelivery may claim) goes back; the claim keeps a copy from running twice.
    """
    job = RemovalJob.objects.filter(pk=job_id).only("status", "batch_id").first()
    if job is None or job.is_finished:
        return False
    enqueue_job(job_id=job.pk, task=BATCH_ITEM_TASK if job.batch_id else PROCESS_TASK)
    return True


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
    stale_before = stale_cutoff()
    if not job.mark_processing(stale_before=stale_before):
        logger.info("Job %s is %s; not processing it again", job.id, job.status)
        return job

    started = time.monotonic()
    deadline = started + timeout
    stages: dict[str, float] = {}
    try:
        with timed(stages, "read_input"), job.input_file.open("rb") as handle:
            data = handle.read()
        background = None
        if job.background_file.name:
            with timed(stages, "read_input"), job.background_file.open("rb") as handle:
                background = handle.read()
        with timed(stages, "session"):
            session = registry.get_session(job.model_name)
        cutout = remove_background(
            data,
            session,
            max_pixels=settings.MAX_IMAGE_PIXELS,
            options=OutputOptions.from_json(job.options),
            background=background,
            on_progress=job.set_progress,
            deadline=deadline,
            timings=stages,
        )
        if time.monotonic() > deadline:
            raise DeadlineExceeded()
        complete_job(job=job, cutout=cutout, started=started, stages=stages)
        return job
    except BaseException as exc:
        fail_job(job=job, error=describe_failure(exc, timeout=timeout))
        if not isinstance(exc, Exception):
            raise
        return job


def complete_job(*, job: RemovalJob, cutout, started: float, stages: dict[str, float]) -> bool:
    """Stores the job's output and marks it completed, then announces its end.

    If the reaper failed (and refunded) the job while it ran, the stored
    file is deleted and the job reloaded instead; returns whether it completed.
    ``started`` is the ``time.monotonic()`` of its claim.
    """
    with timed(stages, "write_output"):
        job.output_file.save(job.output_filename, ContentFile(cutout.data), save=False)
    completed = job.mark_completed(
        output_size=len(cutout.data),
        elapsed_seconds=time.monotonic() - started,
        expires_at=timezone.now() + timedelta(hours=settings.OUTPUT_TTL_HOURS),
        output_width=cutout.width,
        output_height=cutout.height,
        foreground=cutout.foreground,
        stage_seconds={name: round(seconds, 4) for name, seconds in stages.items()},
    )
    if completed:
        announce_job_end(job=job)
    else:
        job.output_file.storage.delete(job.output_file.name)
        job.refresh_from_db()
    return completed


@contextmanager
def timed(stages: dict[str, float], name: str):
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


def stale_cutoff():
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
        status=RemovalJob.Status.PROCESSING, started_at__lt=stale_cutoff()
    ).select_related("account"):
        if fail_job(
            job=job, error="The worker processing this image stopped; the charge was refunded"
        ):
            _delete_orphan_output(job=job)
            count += 1
    queued_before = timezone.now() - timedelta(seconds=settings.REMOVAL_QUEUE_TIMEOUT)
    # A single job counts from its creation; a batch item from when its batch
    # handed it to the queue (until then it is waiting its turn, not lost).
    never_started = Q(batch__isnull=True, created_at__lt=queued_before) | Q(
        batch__isnull=False, queued_at__lt=queued_before
    )
    for job in RemovalJob.objects.filter(
        never_started, status=RemovalJob.Status.PENDING
    ).select_related("account"):
        if fail_job(job=job, error=QUEUE_TIMEOUT_ERROR):
            count += 1
    return count


def expire_job_files(*, now=None, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Deletes inputs and outputs past their expiry; rows and ledger stay.

    In batches of EXPIRY_BATCH jobs: their files are deleted together
    (``removal.storage_cleanup``: S3's DeleteObjects takes 1,000 keys a
    call) and the batch is marked in one UPDATE. Stops between batches once
    HOUSEKEEPING_RUN_SECONDS have passed or ``should_stop()`` (a worker
    stopping); the next run carries on, oldest first.
    """
    now = now or timezone.now()
    stop_at = time.monotonic() + settings.HOUSEKEEPING_RUN_SECONDS
    count = 0
    expired = (
        RemovalJob.objects.filter(expires_at__lte=now, files_deleted_at__isnull=True)
        .exclude(status__in=[RemovalJob.Status.PENDING, RemovalJob.Status.PROCESSING])
        .order_by("expires_at")
    )
    while True:
        # A plain query per batch, not .iterator(): no server-side cursor,
        # which a transaction pooler would break (DB_TRANSACTION_POOLER).
        fields = ("pk", "input_file", "output_file", "background_file")
        batch = list(expired.values_list(*fields)[:EXPIRY_BATCH])
        if not batch:
            return count
        failed = storage_cleanup.delete_files(
            storage=_file_storage(), names=[name for _, *files in batch for name in files]
        )
        done = [pk for pk, *files in batch if not failed.intersection(files)]
        count += RemovalJob.objects.filter(pk__in=done, files_deleted_at__isnull=True).update(
            files_deleted_at=now
        )
        # Files that could not be deleted are tried again by the next run.
        if failed or len(batch) < EXPIRY_BATCH or should_stop() or time.monotonic() > stop_at:
            return count


def delete_orphaned_files(*, now=None, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Deletes stored inputs and outputs that no live job names.

    A web process that dies between storing an upload and committing its
    job, or a worker killed between storing a result and recording it,
    leaves a file nothing would ever expire. Files younger than
    ORPHAN_MIN_AGE are left alone (their job may not be committed yet).
    """
    storage = _file_storage()
    older_than = (now or timezone.now()) - ORPHAN_MIN_AGE
    stop_at = time.monotonic() + settings.HOUSEKEEPING_RUN_SECONDS
    count = 0
    for folder in ("inputs", "outputs"):
        for names in storage_cleanup.old_files(
            storage=storage, folder=folder, older_than=older_than, page=EXPIRY_BATCH
        ):
            orphans = sorted(set(names) - _live_file_names(names))
            failed = storage_cleanup.delete_files(storage=storage, names=orphans)
            count += len(orphans) - len(failed)
            if should_stop() or time.monotonic() > stop_at:
                return count
    return count


def _file_storage():
    """The storage inputs and outputs are kept in (the default storage)."""
    return RemovalJob._meta.get_field("input_file").storage


def _live_file_names(names: list[str]) -> set[str]:
    """Those of ``names`` that a job whose files are not deleted yet still names."""
    ids = {_job_id_of(name) for name in names} - {None}
    live: set[str] = set()
    for input_name, output_name in RemovalJob.objects.filter(
        pk__in=ids, files_deleted_at__isnull=True
    ).values_list("input_file", "output_file"):
        live.update((input_name, output_name))
    return live


def _job_id_of(name: str) -> uuid.UUID | None:
    stem = name.rsplit("/", 1)[-1].split(".", 1)[0].removesuffix("_output")
    try:
        return uuid.UUID(stem)
    except ValueError:
        return None
