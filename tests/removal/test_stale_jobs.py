"""The reaper: jobs that can never finish on their own are failed and refunded once."""

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from removal import services
from removal.models import RemovalJob
from tests.images import solid_png
from tests.job_factory import submitted_job

pytestmark = pytest.mark.django_db


def submit(account) -> RemovalJob:
    return submitted_job(account, data=solid_png(), filename="red.png")


def age(job: RemovalJob, **created_ago) -> None:
    RemovalJob.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - timedelta(**created_ago)
    )


@pytest.mark.weights
def test_it_fails_and_refunds_a_job_no_worker_started_in_time(account, settings):
    settings.REMOVAL_QUEUE_TIMEOUT = 60
    lost = submit(account)
    age(lost, seconds=61)

    assert services.fail_stale_jobs() == 1

    lost.refresh_from_db()
    assert lost.status == RemovalJob.Status.FAILED
    assert lost.error == "No worker could start this image in time; the charge was refunded"
    assert LedgerEntry.objects.filter(job=lost, kind="refund").count() == 1
    account.refresh_from_db()
    assert account.credit_balance == 1000
    assert ledger_sum(account=account) == account.credit_balance


@pytest.mark.weights
def test_it_leaves_a_job_that_is_still_within_the_queue_timeout(account, settings):
    settings.REMOVAL_QUEUE_TIMEOUT = 60
    waiting = submit(account)
    age(waiting, seconds=59)

    assert services.fail_stale_jobs() == 0
    waiting.refresh_from_db()
    assert waiting.status == RemovalJob.Status.PENDING


@pytest.mark.weights
def test_it_refunds_a_lost_job_only_once_however_often_it_runs(account, settings):
    settings.REMOVAL_QUEUE_TIMEOUT = 60
    lost = submit(account)
    age(lost, minutes=5)

    assert services.fail_stale_jobs() == 1
    assert services.fail_stale_jobs() == 0
    assert LedgerEntry.objects.filter(job=lost, kind="refund").count() == 1


@pytest.mark.weights
def test_a_late_delivery_of_a_reaped_job_does_nothing(account, settings):
    settings.REMOVAL_QUEUE_TIMEOUT = 60
    lost = submit(account)
    age(lost, minutes=5)
    services.fail_stale_jobs()

    # The task turns up after all (a slow broker, a worker that was only
    # paused): the job stays failed, uncharged, and no model runs.
    job = services.process_job(job_id=lost.pk)
    assert job.status == RemovalJob.Status.FAILED
    assert job.attempts == 0
    assert not job.output_file.name
    account.refresh_from_db()
    assert account.credit_balance == 1000


# Processing jobs whose worker died (killed, out of memory, machine lost).


@pytest.mark.weights
def test_the_reaper_fails_and_refunds_jobs_whose_worker_died(account, settings):
    settings.REMOVAL_JOB_TIMEOUT = 60
    stuck = submit(account)
    assert stuck.mark_processing()
    RemovalJob.objects.filter(pk=stuck.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    recent = submit(account)
    assert recent.mark_processing()
    assert services.fail_stale_jobs() == 1
    stuck.refresh_from_db()
    recent.refresh_from_db()
    assert stuck.status == RemovalJob.Status.FAILED
    assert "stopped" in stuck.error
    assert recent.status == RemovalJob.Status.PROCESSING
    assert ledger_sum(account=account) == 1000 - 25
    assert services.fail_stale_jobs() == 0


@pytest.mark.weights
def test_a_worker_killed_after_storing_its_output_leaves_no_file_once_reaped(account, settings):
    # Killed between saving the file and marking the job completed: the job
    # row never names the file, so nothing would ever serve or expire it.
    settings.REMOVAL_JOB_TIMEOUT = 60
    stuck = submit(account)
    assert stuck.mark_processing()
    orphan = stuck.output_file.storage.save(f"outputs/{stuck.output_filename}", ContentFile(b"x"))
    RemovalJob.objects.filter(pk=stuck.pk).update(started_at=timezone.now() - timedelta(minutes=5))

    assert services.fail_stale_jobs() == 1

    stuck.refresh_from_db()
    assert stuck.status == RemovalJob.Status.FAILED
    assert not stuck.output_file.storage.exists(orphan)


@pytest.mark.model
def test_a_redelivered_task_may_take_over_a_stale_job(account, settings):
    settings.REMOVAL_JOB_TIMEOUT = 60
    job = submit(account)
    assert job.mark_processing()
    RemovalJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    job = services.process_job(job_id=job.id)
    assert job.status == RemovalJob.Status.COMPLETED
    assert job.attempts == 2


@pytest.mark.model
def test_a_worker_that_finishes_after_the_reaper_does_not_complete_or_charge(account):
    job = submit(account)
    assert job.mark_processing()
    services.fail_job(job=job, error="The worker processing this image stopped")
    # A late redelivery of the same task finds the job finished.
    services.process_job(job_id=job.id)
    job.refresh_from_db()
    assert job.status == RemovalJob.Status.FAILED
    assert LedgerEntry.objects.filter(job=job, kind="refund").count() == 1
