"""Inputs and outputs expire: files go, the job row and the ledger stay."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from billing.models import LedgerEntry
from removal import services, tasks
from removal.models import RemovalJob
from tests.images import encode, photo
from tests.job_factory import processed_job
from tests.removal.helpers import accepted_task, assert_json_error

CAT = encode(photo("chelsea"), "PNG")


def submit(client) -> RemovalJob:
    return RemovalJob.objects.get(pk=accepted_task(client, CAT, filename="cat.png"))


@pytest.fixture
def completed_job(account) -> RemovalJob:
    return processed_job(account, data=CAT, filename="cat.png")


def files_exist(job: RemovalJob) -> tuple[bool, bool]:
    storage = job.input_file.storage
    return storage.exists(job.input_file.name), storage.exists(job.output_file.name)


def expire_now(job: RemovalJob) -> None:
    RemovalJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    job.refresh_from_db()


@pytest.mark.model
def test_the_scheduled_task_deletes_expired_files_and_keeps_the_row_and_ledger(
    api_client, anon_client, account, completed_job
):
    job = completed_job
    assert files_exist(job) == (True, True)
    ledger_before = list(LedgerEntry.objects.filter(account=account).values_list("id", "amount"))
    expire_now(job)

    assert tasks.expire_job_files() == 1  # what the django-q2 schedule calls

    job.refresh_from_db()
    assert files_exist(job) == (False, False)
    assert job.files_deleted_at is not None
    assert job.status == RemovalJob.Status.COMPLETED
    assert list(LedgerEntry.objects.filter(account=account).values_list("id", "amount")) == (
        ledger_before
    )
    account.refresh_from_db()
    assert account.credit_balance == 975  # expiry is not a refund

    status = anon_client.get(f"/api/get/{job.id}").json()
    assert status["status"] == "completed"
    assert status["result"]["expired"] is True
    assert "expired" in status["message"]

    body = assert_json_error(anon_client.get(f"/output/{job.output_filename}"), 410, "expired")
    assert "expired" in body["error"]
    assert tasks.expire_job_files() == 0  # nothing twice


@pytest.mark.model
def test_a_result_past_its_expiry_is_gone_even_before_the_task_runs(anon_client, completed_job):
    assert anon_client.get(f"/output/{completed_job.output_filename}").status_code == 200
    expire_now(completed_job)
    assert_json_error(anon_client.get(f"/output/{completed_job.output_filename}"), 410, "expired")


@pytest.mark.model
def test_unexpired_results_are_kept_and_served(anon_client, completed_job):
    assert tasks.expire_job_files() == 0
    assert files_exist(completed_job) == (True, True)
    response = anon_client.get(f"/output/{completed_job.output_filename}")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert anon_client.get(f"/api/get/{completed_job.id}").json()["result"].get("expired") is None


@pytest.mark.weights
def test_the_expiry_follows_output_ttl_hours(api_client, account, settings):
    settings.OUTPUT_TTL_HOURS = 3
    job = submit(api_client)
    expected = timezone.now() + timedelta(hours=3)
    assert abs((job.expires_at - expected).total_seconds()) < 60


@pytest.mark.weights
def test_a_failed_jobs_input_expires_too_and_its_refund_stays(api_client, account):
    job = submit(api_client)
    services.fail_job(job=job, error="test failure")
    expire_now(job)
    assert tasks.expire_job_files() == 1
    job.refresh_from_db()
    assert not job.input_file.storage.exists(job.input_file.name)
    kinds = sorted(LedgerEntry.objects.filter(job=job).values_list("kind", flat=True))
    assert kinds == ["charge", "refund"]


@pytest.mark.weights
def test_jobs_still_waiting_or_running_are_never_expired(api_client, account):
    pending = submit(api_client)
    running = submit(api_client)
    assert running.mark_processing()
    for job in (pending, running):
        expire_now(job)
    assert tasks.expire_job_files() == 0
    for job in (pending, running):
        assert job.input_file.storage.exists(job.input_file.name)


@pytest.mark.parametrize(
    ("func", "most_minutes"),
    [("removal.tasks.expire_job_files", 10), ("removal.tasks.fail_stale_jobs", 1)],
)
def test_housekeeping_is_scheduled_in_django_q(db, func, most_minutes):
    schedule = Schedule.objects.get(func=func)
    assert schedule.schedule_type == Schedule.MINUTES
    assert schedule.minutes <= most_minutes
    assert schedule.repeats == -1
