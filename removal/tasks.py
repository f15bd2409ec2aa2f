"""django-q2 task entry points: fetch by id, call a service, nothing more.

A worker that is stopping (``revid.run_worker.draining``) starts nothing
new: a removal it had taken goes back to the queue for another worker, a
housekeeping run waits for its next turn.
"""

from removal import registry, services
from revid.run_worker import draining


def process_removal_job(job_id: str) -> str | None:
    if draining():
        return "requeued" if services.requeue_job(job_id=job_id) else None
    try:
        job = services.process_job(job_id=job_id)
    finally:
        registry.release_free_memory()
    return job.status if job is not None else None


def fail_stale_jobs() -> int:
    if draining():
        return 0
    return services.fail_stale_jobs()


def expire_job_files() -> int:
    if draining():
        return 0
    return services.expire_job_files(should_stop=draining)


def delete_orphaned_files() -> int:
    if draining():
        return 0
    return services.delete_orphaned_files(should_stop=draining)
