"""django-q2 task entry points: fetch by id, call a service, nothing more."""

from removal import registry, services


def process_removal_job(job_id: str) -> str | None:
    try:
        job = services.process_job(job_id=job_id)
    finally:
        registry.release_free_memory()
    return job.status if job is not None else None


def fail_stale_jobs() -> int:
    return services.fail_stale_jobs()


def expire_job_files() -> int:
    return services.expire_job_files()
