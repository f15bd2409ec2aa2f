import uuid

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from storages.backends.s3 import S3Storage

from accounts.models import Account
from imaging.formats import CONTENT_TYPES
from removal import registry
from removal.models import Batch, RemovalJob


def parse_task_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def get_job(*, task_id: str, account: Account | None = None) -> RemovalJob | None:
    """A job by id; scoped to ``account`` when one presents itself."""
    job_id = parse_task_id(task_id)
    if job_id is None:
        return None
    jobs = RemovalJob.objects.filter(pk=job_id)
    if account is not None:
        jobs = jobs.filter(account=account)
    return jobs.first()


def jobs_for_account(*, account: Account, limit: int = 20) -> QuerySet[RemovalJob]:
    return RemovalJob.objects.filter(account=account).order_by("-created_at")[:limit]


def model_catalogue() -> list[dict]:
    return [
        {
            "name": spec.name,
            "available": registry.is_available(spec.name),
            "best_for": spec.best_for,
            "speed": spec.speed,
            "quality": spec.quality,
        }
        for spec in registry.MODELS.values()
    ]


def output_redirect_url(*, job: RemovalJob) -> str | None:
    """A short-lived presigned URL of the job's result, or None to stream it.

    Only with OUTPUT_REDIRECT_TO_STORAGE and S3 storage. The URL lives
    OUTPUT_URL_EXPIRE_SECONDS, never past the result's own expiry, and makes
    the bucket answer with the same type and file name as streaming does.
    """
    storage = job.output_file.storage
    if not settings.OUTPUT_REDIRECT_TO_STORAGE or not isinstance(storage, S3Storage):
        return None
    expire = settings.OUTPUT_URL_EXPIRE_SECONDS
    if job.expires_at is not None:
        remaining = int((job.expires_at - timezone.now()).total_seconds())
        expire = max(1, min(expire, remaining))
    return storage.url(
        job.output_file.name,
        expire=expire,
        parameters={
            "ResponseContentType": CONTENT_TYPES.get(job.output_format, "application/octet-stream"),
            "ResponseContentDisposition": f'inline; filename="{job.output_filename}"',
        },
    )


def get_batch(*, batch_id: str, account: Account | None = None) -> Batch | None:
    """A batch by id; scoped to ``account`` when one presents itself."""
    parsed = parse_task_id(batch_id)
    if parsed is None:
        return None
    batches = Batch.objects.filter(pk=parsed)
    if account is not None:
        batches = batches.filter(account=account)
    return batches.first()
