import uuid

from django.db.models import QuerySet

from accounts.models import Account
from removal import registry
from removal.models import RemovalJob


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
