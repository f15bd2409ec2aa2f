"""Webhooks' answers to what the jobs layer announces (``removal.signals``)."""

from removal.models import RemovalJob
from webhooks.services import announce_batch_event, announce_job_event


def queue_job_event(sender, *, job: RemovalJob, **kwargs) -> None:
    """A job ended: create its event (once) and queue the delivery."""
    announce_job_event(job=job)


def queue_batch_event(sender, *, batch, **kwargs) -> None:
    """A batch ended: its one ``batch.completed`` event, if it names a webhook."""
    announce_batch_event(batch=batch)
