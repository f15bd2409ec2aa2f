"""django-q2 task entry points: fetch by id, call a service, nothing more.

A worker that is stopping (``revid.run_worker.draining``) starts nothing
new: a removal it had taken goes back to the queue for another worker, a
housekeeping run waits for its next turn.
"""

import logging
import time

from removal import batch_runner, batches, registry, services
from revid import observability
from revid.run_worker import draining

logger = logging.getLogger("revid.jobs")


def process_removal_job(job_id: str, request_id: str = "") -> str | None:
    """Runs one job under the id of the request that submitted it, and writes
    its log line and metrics (the job's own record has the same numbers)."""
    if draining():
        return "requeued" if services.requeue_job(job_id=job_id) else None
    token = observability.bind_request_id(request_id)
    started = time.monotonic()
    try:
        job = services.process_job(job_id=job_id)
        if job is not None and job.is_finished:
            _log_job_end(job, seconds=time.monotonic() - started)
    finally:
        registry.release_free_memory()
        observability.reset_request_id(token)
    return job.status if job is not None else None


def process_batch_item(job_id: str, request_id: str = "") -> str | None:
    """Runs a batch's item, then its next ones while nobody else waits
    (``removal.batch_runner``); each item's log line and metrics as a job's."""
    if draining():
        return "requeued" if services.requeue_job(job_id=job_id) else None
    token = observability.bind_request_id(request_id)
    try:
        job = batch_runner.run_items(
            job_id=job_id,
            should_stop=draining,
            on_end=lambda job, seconds: _log_job_end(job, seconds=seconds),
        )
    finally:
        registry.release_free_memory()
        observability.reset_request_id(token)
    return job.status if job is not None else None


def _log_job_end(job, *, seconds: float) -> None:
    stages = job.stage_seconds or {}
    observability.observe_job(
        model=job.model_name, door=job.origin, status=job.status, seconds=seconds, stages=stages
    )
    logger.info(
        "job %s %s",
        job.id,
        job.status,
        extra={
            "event": "job",
            "task_id": str(job.id),
            "status": job.status,
            "door": job.origin,
            "model": job.model_name,
            "key_prefix": job.api_key.prefix if job.api_key_id else "",
            "duration_ms": round(seconds * 1000, 1),
            "stage_seconds": stages,
            "error": job.error,
        },
    )


def fail_stale_jobs() -> int:
    if draining():
        return 0
    failed = services.fail_stale_jobs()
    batches.resume_batches()
    return failed


def expire_job_files() -> int:
    if draining():
        return 0
    return services.expire_job_files(should_stop=draining)


def delete_orphaned_files() -> int:
    if draining():
        return 0
    return services.delete_orphaned_files(should_stop=draining)
