"""Webhooks' answers to what the jobs layer announces (``removal.signals``)."""

from removal.models import RemovalJob
from webhooks.services import announce_job_event


def queue_job_event(sender, *, job: RemovalJob, **kwargs) -> None:
    """A job ended: create its event (once) and queue the delivery."""
    announce_job_event(job=job)
