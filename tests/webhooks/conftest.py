import pytest

from removal.models import RemovalJob
from tests.job_factory import completed_job, failed_job
from tests.webhooks.receiver import Receiver


@pytest.fixture
def fast_retries(settings):
    settings.WEBHOOK_RETRY_DELAYS = [0.3, 0.6, 1.2]
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    settings.WEBHOOK_TIMEOUT_SECONDS = 5


@pytest.fixture
def receiver(allow_loopback):
    """Makes real receivers on loopback (which the fetcher may reach); stops them after."""
    made: list[Receiver] = []

    def make(answers=(), **kwargs) -> Receiver:
        made.append(Receiver(answers, **kwargs))
        return made[-1]

    yield make
    for item in made:
        item.stop()


def with_webhook(job: RemovalJob, url: str) -> RemovalJob:
    RemovalJob.objects.filter(pk=job.pk).update(webhook_url=url)
    job.refresh_from_db()
    return job


@pytest.fixture
def ended_job(account):
    """A completed (or failed) job that names ``url`` as its webhook."""

    def make(url: str, *, failed: bool = False) -> RemovalJob:
        return with_webhook(failed_job(account) if failed else completed_job(account), url)

    return make
