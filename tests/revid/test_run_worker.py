"""The drain flag: a worker whose run_worker was asked to stop starts nothing
new and hands the tasks it had taken back to the queue (the whole stop, with
real processes and signals, is tests/e2e/test_worker_drain.py)."""

import pytest
from django_q.models import OrmQ

from removal import tasks
from removal.models import RemovalJob
from revid import run_worker
from tests.job_factory import completed_job, submitted_job


@pytest.fixture
def stopping(tmp_path, monkeypatch):
    """This process is a worker of a run_worker that got SIGTERM."""
    flag = tmp_path / "drain"
    monkeypatch.setenv(run_worker.DRAIN_ENV, str(flag))
    assert not run_worker.draining()
    flag.touch()
    assert run_worker.draining()


def test_no_drain_flag_means_not_draining(monkeypatch):
    monkeypatch.delenv(run_worker.DRAIN_ENV, raising=False)
    assert not run_worker.draining()


def test_a_stopping_worker_hands_a_taken_removal_back_untouched(
    transactional_db, account, stopping
):
    job = submitted_job(account)
    OrmQ.objects.all().delete()  # the task this worker took off the queue

    assert tasks.process_removal_job(str(job.pk)) == "requeued"

    job.refresh_from_db()
    assert (job.status, job.attempts, job.started_at) == ("pending", 0, None)
    assert [(row.task["func"], row.task["args"]) for row in OrmQ.objects.all()] == [
        ("removal.tasks.process_removal_job", (str(job.pk),))
    ]


def test_a_finished_job_is_not_queued_again(transactional_db, account, stopping):
    job = completed_job(account)
    OrmQ.objects.all().delete()
    assert tasks.process_removal_job(str(job.pk)) is None
    assert not OrmQ.objects.exists()


def test_a_stopping_worker_leaves_housekeeping_to_the_next_run(db, stopping, monkeypatch):
    from removal import services

    def must_not_run(**kwargs):
        raise AssertionError("housekeeping ran on a stopping worker")

    for name in ("fail_stale_jobs", "expire_job_files", "delete_orphaned_files"):
        monkeypatch.setattr(services, name, must_not_run)
        assert getattr(tasks, name)() == 0


def test_a_stopping_webhook_worker_hands_the_attempt_back(transactional_db, stopping, settings):
    from webhooks import tasks as webhook_tasks

    assert webhook_tasks.deliver_event("0f6121b6-1a3e-46f0-939a-d1277f0b5ae1") == "requeued"
    (row,) = OrmQ.objects.all()
    assert row.key == settings.WEBHOOK_CLUSTER
    assert row.task["func"] == "webhooks.tasks.deliver_event"
    assert RemovalJob.objects.count() == 0
