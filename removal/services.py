"""Business rules of a removal job: accept, run, fail, expire.

The API view, the web upload page and the admin call these functions;
the django-q2 tasks in ``tasks.py`` only fetch an id and call them.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account, ApiKey
from billing.services import charge_for_job, refund_for_job
from removal import pipeline, registry, waiting
from removal.models import RemovalJob
from revid.errors import ApplicationError

logger = logging.getLogger(__name__)


def stale_grace() -> timedelta:
    """How long past the job timeout a job may sit in "processing" before the
    reaper decides its worker is gone (REMOVAL_STALE_GRACE)."""
    return timedelta(seconds=settings.REMOVAL_STALE_GRACE)


class UnknownModel(ApplicationError):
    code = "unknown_model"


class ModelUnavailable(ApplicationError):
    status_code = 503
    code = "model_unavailable"


class FileRequired(ApplicationError):
    code = "file_required"


class FileTooLarge(ApplicationError):
    status_code = 413
    code = "file_too_large"


class UnsupportedImageFormat(ApplicationError):
    status_code = 415
    code = "unsupported_format"


class InvalidImage(ApplicationError):
    code = "invalid_image"


class ImageTooLarge(ApplicationError):
    status_code = 413
    code = "image_too_large"


class InvalidIdempotencyKey(ApplicationError):
    code = "invalid_idempotency_key"


class IdempotencyConflict(ApplicationError):
    status_code = 409
    code = "idempotency_conflict"


IDEMPOTENCY_KEY_MAX_LENGTH = 255


def validate_model_name(model_name: str | None) -> str:
    """Unknown names are a client error (400); known but missing weights, ours (503)."""
    name = (model_name or "").strip() or settings.REMOVAL_DEFAULT_MODEL
    if name not in registry.MODELS:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise UnknownModel(
            f"Unknown model {shown!r}. Supported models: {', '.join(registry.MODELS)}."
        )
    if not registry.is_available(name):
        raise ModelUnavailable(
            f"Model {name!r} is not available on this server (its weights are not "
            "installed). Try another model or contact the administrator."
        )
    return name


def read_upload(upload: UploadedFile | None) -> bytes:
    if upload is None:
        raise FileRequired("No file uploaded: send the image in the multipart field 'file'.")
    limit = settings.MAX_UPLOAD_BYTES
    if upload.size is not None and upload.size > limit:
        raise FileTooLarge(too_large_message(upload.size, limit))
    upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(too_large_message(len(data), limit, at_least=True))
    if not data:
        raise InvalidImage("The uploaded file is empty.")
    return data


def too_large_message(size: int, limit: int, *, at_least: bool = False) -> str:
    if at_least:
        return f"File too large: the limit is {limit / 1048576:.1f} MB."
    return f"File too large: {size / 1048576:.1f} MB; the limit is {limit / 1048576:.1f} MB."


def validate_image(data: bytes) -> pipeline.ImageInfo:
    try:
        return pipeline.inspect_image(data, max_pixels=settings.MAX_IMAGE_PIXELS)
    except pipeline.UnsupportedFormat as exc:
        raise UnsupportedImageFormat(str(exc)) from None
    except pipeline.TooManyPixels as exc:
        raise ImageTooLarge(str(exc)) from None
    except pipeline.PipelineError as exc:
        raise InvalidImage(str(exc)) from None


def validate_idempotency_key(value: str | None) -> str:
    """Empty means none; otherwise 1-255 visible ASCII characters."""
    key = (value or "").strip()
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH or not all(33 <= ord(c) <= 126 for c in key):
        raise InvalidIdempotencyKey(
            f"Idempotency-Key must be at most {IDEMPOTENCY_KEY_MAX_LENGTH} visible ASCII "
            "characters (a UUID is a good choice)."
        )
    return key


def request_fingerprint(*, model_name: str, data: bytes) -> str:
    """What makes two submissions "the same request" for an idempotency key."""
    digest = hashlib.sha256()
    digest.update(model_name.encode())
    digest.update(b"\0")
    digest.update(data)
    return digest.hexdigest()


def _replay(*, account: Account, idempotency_key: str, fingerprint: str) -> RemovalJob | None:
    """The job already accepted under this key, if the request is the same one."""
    job = RemovalJob.objects.filter(account=account, idempotency_key=idempotency_key).first()
    if job is not None and job.request_fingerprint != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used for a different request (another file "
            "or model); use a new key for a new request."
        )
    return job


def submit_job(
    *,
    account: Account,
    upload: UploadedFile | None,
    model_name: str | None = None,
    api_key: ApiKey | None = None,
    idempotency_key: str | None = None,
) -> RemovalJob:
    """Validates, charges and queues one removal.

    Steps:
    1. Validate model, size, format and pixels; any refusal charges nothing.
    2. With an Idempotency-Key already used by this account: the same
       request gets the job it created (not charged again), a different
       one is refused (409).
    3. In one transaction: create the job, charge it (402 if short), store
       the upload. If anything fails, nothing of it remains.
    4. After commit, enqueue the worker task (a task must never run against
       a job that was rolled back).
    """
    key = validate_idempotency_key(idempotency_key)
    name = validate_model_name(model_name)
    data = read_upload(upload)
    fingerprint = request_fingerprint(model_name=name, data=data) if key else ""
    if key and (existing := _replay(account=account, idempotency_key=key, fingerprint=fingerprint)):
        return existing
    info = validate_image(data)

    job = RemovalJob(
        id=uuid.uuid4(),
        account=account,
        api_key=api_key,
        model_name=name,
        original_filename=(getattr(upload, "name", "") or "")[:255],
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

    async_task(
        "removal.tasks.process_removal_job",
        str(job_id),
        task_name=f"removal-{job_id}",
        group="removal",
    )


def process_job(*, job_id: uuid.UUID | str) -> RemovalJob | None:
    """Runs one job in the worker.

    Steps:
    1. Claim it (pending -> processing); a duplicate delivery stops here.
    2. Run the pipeline with the cached model session, reporting progress.
    3. Store ``<task_id>_output.png`` and mark completed, or on any failure
       mark failed and refund, once.
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
    try:
        with job.input_file.open("rb") as handle:
            data = handle.read()
        session = registry.get_session(job.model_name)
        cutout = pipeline.remove_background(
            data,
            session,
            max_pixels=settings.MAX_IMAGE_PIXELS,
            on_progress=job.set_progress,
            deadline=deadline,
        )
        if time.monotonic() > deadline:
            raise pipeline.DeadlineExceeded()
        job.output_file.save(job.output_filename, ContentFile(cutout.png), save=False)
        elapsed = time.monotonic() - started
        completed = job.mark_completed(
            output_size=len(cutout.png),
            elapsed_seconds=elapsed,
            expires_at=timezone.now() + timedelta(hours=settings.OUTPUT_TTL_HOURS),
        )
        if completed:
            transaction.on_commit(lambda: waiting.announce_job_finished(job_id=job.id))
        if not completed:
            # The reaper failed (and refunded) this job while we worked.
            job.output_file.storage.delete(job.output_file.name)
            job.refresh_from_db()
        return job
    except BaseException as exc:
        fail_job(job=job, error=describe_failure(exc, timeout=timeout))
        if not isinstance(exc, Exception):
            raise
        return job


def describe_failure(exc: BaseException, *, timeout: int) -> str:
    if isinstance(exc, pipeline.DeadlineExceeded) or type(exc).__name__ == "TimeoutException":
        unit = "second" if timeout == 1 else "seconds"
        return f"Processing timed out after {timeout} {unit}"
    if isinstance(exc, pipeline.PipelineError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return "The model or the uploaded file is no longer available on this server"
    if isinstance(exc, MemoryError):
        return "The image is too large to process with the memory available"
    logger.exception("Job failed with an unexpected error")
    return "Internal error while processing the image"


def fail_job(*, job: RemovalJob, error: str) -> bool:
    """Marks the job failed and refunds it, in one transaction, at most once."""
    with transaction.atomic():
        failed = job.mark_failed(error=error)
        if failed:
            refund_for_job(job=job, reason=error)
            transaction.on_commit(lambda: waiting.announce_job_finished(job_id=job.id))
    if failed:
        logger.info("Job %s failed: %s", job.id, error)
    return failed


def _stale_cutoff():
    """Jobs started before this, still processing, have lost their worker."""
    return timezone.now() - timedelta(seconds=settings.REMOVAL_JOB_TIMEOUT) - stale_grace()


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
            count += 1
    queued_before = timezone.now() - timedelta(seconds=settings.REMOVAL_QUEUE_TIMEOUT)
    for job in RemovalJob.objects.filter(
        status=RemovalJob.Status.PENDING, created_at__lt=queued_before
    ).select_related("account"):
        if fail_job(
            job=job, error="No worker could start this image in time; the charge was refunded"
        ):
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
