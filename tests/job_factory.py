"""Jobs in a given state, made through the real submit service (so they are
charged) and the model's guarded transitions; only ``processed_job`` runs a
model (the real one, in the worker's code)."""

from datetime import timedelta
from unittest import mock

from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from imaging.options import BATCH
from removal.models import RemovalJob
from removal.services import fail_job, process_job, submit_job
from removal.submissions import Fields, RemovalRequest, seed_request
from tests.images import encode, photo, photo_bytes


def removal_request(
    account,
    *,
    data: bytes | None = None,
    photo_name: str = "astronaut",
    model: str = "u2netp",
    filename: str | None = None,
    idempotency_key: str | None = None,
    **fields,
) -> RemovalRequest:
    """A validated request, as the seed API would build it from a multipart upload."""
    upload = SimpleUploadedFile(filename or f"{photo_name}.jpg", data or photo_bytes(photo_name))
    return seed_request(
        account=account,
        fields=Fields({"model": model, **fields}, {"file": upload}),
        idempotency_key=idempotency_key,
        origin=RemovalJob.Origin.API,
    )


def submitted_job(account, *, api_key=None, **kwargs) -> RemovalJob:
    """A pending, charged job, submitted through the real services."""
    return submit_job(account=account, request=removal_request(account, **kwargs), api_key=api_key)


def completed_job(account, **kwargs) -> RemovalJob:
    job = submitted_job(account, **kwargs)
    assert job.mark_processing()
    cutout = encode(photo("astronaut").convert("RGBA"), "PNG")
    job.output_file.save(job.output_filename, ContentFile(cutout), save=False)
    assert job.mark_completed(
        output_size=len(cutout),
        elapsed_seconds=1.234,
        expires_at=timezone.now() + timedelta(hours=24),
    )
    return job


def failed_job(account, *, error: str = "Processing timed out after 60 seconds") -> RemovalJob:
    job = submitted_job(account)
    assert job.mark_processing()
    assert fail_job(job=job, error=error)
    return job


def processed_job(account, **kwargs) -> RemovalJob:
    """A job run through the worker's own code with the real model (u2netp by default)."""
    with mock.patch("removal.services.enqueue_job"):
        job = submitted_job(account, **kwargs)
    process_job(job_id=job.id)
    job.refresh_from_db()
    assert job.status == RemovalJob.Status.COMPLETED, job.error
    return job


def submitted_batch(account, photos: list[bytes], *, model: str = "u2netp", **fields):
    """A pending, charged batch of ``photos`` (named 0.jpg, 1.jpg, ...) through the
    real checks and submit service; nothing queued (the test runs the items)."""
    from removal import batch_submissions, batches

    uploads = [SimpleUploadedFile(f"{n}.jpg", data) for n, data in enumerate(photos)]
    request = batch_submissions.build_batch_request(
        fields=Fields({"model": model, **fields}),
        items=batch_submissions.items_from_uploads(uploads),
        door=BATCH,
        idempotency_key=None,
    )
    with mock.patch("removal.batches.queue_next_items"):
        return batches.submit_batch(account=account, request=request)
