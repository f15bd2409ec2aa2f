import uuid

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from storages.backends.s3 import S3Storage

from accounts.models import Account
from billing.models import LedgerEntry
from billing.selectors import UsageQuery, usage_entries
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


def pending_jobs(*, now=None) -> dict:
    """Removal jobs waiting for a worker and running, and the age in seconds
    of the oldest waiting one (0.0: none): the number to scale workers on,
    since it grows when they fall behind, whatever the job sizes."""
    from django.db.models import Count, Min

    now = now or timezone.now()
    pending = RemovalJob.objects.filter(status=RemovalJob.Status.PENDING).aggregate(
        n=Count("id"), oldest=Min("created_at")
    )
    oldest = pending["oldest"]
    return {
        "pending": pending["n"],
        "processing": RemovalJob.objects.filter(status=RemovalJob.Status.PROCESSING).count(),
        "oldest_pending_seconds": (
            round((now - oldest).total_seconds(), 1) if oldest is not None else 0.0
        ),
    }


def queue_stats(*, now=None) -> dict:
    """What an autoscaler needs: how much work waits and for how long.

    ``jobs``: ``pending_jobs()``. ``queues``: tasks waiting in each
    cluster's broker queue, not yet taken by any cluster.
    """
    from django_q.brokers import get_broker

    queues = {}
    for name in (settings.Q_CLUSTER["name"], *settings.Q_CLUSTER.get("ALT_CLUSTERS", {})):
        queues[name] = get_broker(list_key=name).queue_size()
    return {"jobs": pending_jobs(now=now), "queues": queues}


def daily_usage(*, query: UsageQuery) -> list[dict]:
    """One dict per day of the period (days without rows included):
    ``images_completed`` and ``images_failed`` (the jobs charged that day, by
    how they ended), ``credits_spent`` (charges less refunds booked that day)
    and ``credits_added`` (grants, adjustments and purchases, net)."""
    charge = Q(kind=LedgerEntry.Kind.CHARGE)
    spending = Q(kind__in=[LedgerEntry.Kind.CHARGE, LedgerEntry.Kind.REFUND])
    rows = (
        usage_entries(query=query)
        .order_by()
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .values("day")
        .annotate(
            completed=Count("id", filter=charge & Q(job__status=RemovalJob.Status.COMPLETED)),
            failed=Count("id", filter=charge & Q(job__status=RemovalJob.Status.FAILED)),
            spent=Sum("amount", filter=spending),
            added=Sum("amount", filter=~spending),
        )
    )
    by_day = {row["day"]: row for row in rows}
    days = []
    for day in query.days:
        row = by_day.get(day, {})
        days.append(
            {
                "date": day,
                "images_completed": row.get("completed", 0),
                "images_failed": row.get("failed", 0),
                "credits_spent": -(row.get("spent") or 0),
                "credits_added": row.get("added") or 0,
            }
        )
    return days


def batch_usage(*, query: UsageQuery, limit: int = 20) -> dict:
    """The period's batches (one API key's, when the query names one):
    how many, their items (accepted and refused), the credits they spent
    (charges less refunds, from the ledger) and the latest ``limit`` rows."""
    batches = Batch.objects.filter(
        account=query.account,
        created_at__date__gte=query.start,
        created_at__date__lte=query.end,
    )
    if query.api_key is not None:
        batches = batches.filter(api_key=query.api_key)
    spending = Q(kind__in=[LedgerEntry.Kind.CHARGE, LedgerEntry.Kind.REFUND])
    spent_by_batch = dict(
        LedgerEntry.objects.filter(spending, job__batch__in=batches)
        .order_by()
        .values("job__batch")
        .annotate(total=Sum("amount"))
        .values_list("job__batch", "total")
    )
    rows = list(
        batches.select_related("api_key")
        .order_by("-created_at")
        .annotate(
            completed=Count("jobs", filter=Q(jobs__status=RemovalJob.Status.COMPLETED)),
            failed=Count("jobs", filter=Q(jobs__status=RemovalJob.Status.FAILED)),
        )[:limit]
    )
    for batch in rows:
        batch.refused_count = len(batch.refused)
        batch.credits_spent = -(spent_by_batch.get(batch.id) or 0)
    accepted = sum(batches.values_list("item_count", flat=True))
    refused = sum(len(refused) for refused in batches.values_list("refused", flat=True))
    return {
        "count": batches.count(),
        "items": accepted + refused,
        "accepted": accepted,
        "refused": refused,
        "credits_spent": -sum(spent_by_batch.values()),
        "rows": rows,
    }
