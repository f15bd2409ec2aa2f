"""The worker's side: process, fail, refund once, reap, expire (real u2netp)."""

import io
from datetime import timedelta

import pytest
from django.utils import timezone
from PIL import Image

from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from removal.models import RemovalJob
from removal.services import (
    expire_job_files,
    fail_job,
    process_job,
)
from tests.images import photo_bytes
from tests.job_factory import submitted_job

pytestmark = pytest.mark.django_db


def submit(account, data=None, model="u2netp"):
    return submitted_job(account, data=data or photo_bytes("chelsea"), model=model)


def balance(account) -> int:
    account.refresh_from_db()
    return account.credit_balance


@pytest.mark.model
def test_it_processes_a_job_into_a_transparent_png(account):
    job = process_job(job_id=submit(account).id)
    assert job.status == RemovalJob.Status.COMPLETED
    assert job.progress == 100
    assert job.output_file.name == f"outputs/{job.id}_output.png"
    with job.output_file.open("rb") as handle:
        png = handle.read()
    assert len(png) == job.output_size
    img = Image.open(io.BytesIO(png))
    assert (img.mode, img.size) == ("RGBA", (451, 300))
    assert job.elapsed_seconds > 0
    assert job.started_at <= job.completed_at
    assert job.expires_at > timezone.now()
    assert balance(account) == 975


@pytest.mark.model
def test_a_completed_job_records_where_its_time_went(account):
    job = process_job(job_id=submit(account).id)
    job.refresh_from_db()

    stages = job.stage_seconds
    # A set: PostgreSQL's jsonb does not keep the keys' order.
    assert set(stages) == {
        "read_input",
        "session",
        "decode",
        "model",
        "composite",
        "encode",
        "write_output",
    }
    assert all(seconds >= 0 for seconds in stages.values())
    assert stages["model"] > 0 and stages["encode"] > 0
    # The stages are parts of the job's own time, measured on the same clock.
    assert sum(stages.values()) <= job.elapsed_seconds + 0.005


@pytest.mark.model
def test_a_second_delivery_of_the_same_task_does_nothing(account):
    job = process_job(job_id=submit(account).id)
    completed_at = job.completed_at
    again = process_job(job_id=job.id)
    assert again.status == RemovalJob.Status.COMPLETED
    assert again.completed_at == completed_at
    assert again.attempts == 1


@pytest.mark.weights
def test_a_job_that_fails_is_refunded_exactly_once(account):
    job = submit(account)
    job.input_file.storage.delete(job.input_file.name)
    job = process_job(job_id=job.id)
    assert job.status == RemovalJob.Status.FAILED
    assert job.error
    assert fail_job(job=job, error="again") is False
    assert balance(account) == 1000
    assert LedgerEntry.objects.filter(job=job, kind="refund").count() == 1
    assert ledger_sum(account=account) == 1000


@pytest.mark.weights
def test_a_job_over_the_time_limit_fails_with_a_clear_message(account, settings):
    job = submit(account)
    settings.REMOVAL_JOB_TIMEOUT = 0  # every step is already past the deadline
    job = process_job(job_id=job.id)
    assert job.status == RemovalJob.Status.FAILED
    assert job.error == "Processing timed out after 0 seconds"
    assert job.message == "Background removal failed: Processing timed out after 0 seconds"
    assert balance(account) == 1000


@pytest.mark.weights
def test_a_failed_job_cannot_be_completed_or_reopened(account):
    job = submit(account)
    assert fail_job(job=job, error="gave up")
    assert job.mark_processing() is False
    assert job.mark_completed(output_size=1, elapsed_seconds=1, expires_at=timezone.now()) is False
    job.refresh_from_db()
    assert job.status == RemovalJob.Status.FAILED


@pytest.mark.model
def test_expired_files_are_deleted_but_the_job_and_ledger_stay(account):
    job = process_job(job_id=submit(account).id)
    storage = job.output_file.storage
    names = [job.input_file.name, job.output_file.name]
    assert all(storage.exists(name) for name in names)
    assert expire_job_files() == 0
    assert expire_job_files(now=job.expires_at + timedelta(seconds=1)) == 1
    assert not any(storage.exists(name) for name in names)
    job.refresh_from_db()
    assert job.files_deleted_at is not None and job.is_expired
    assert LedgerEntry.objects.filter(job=job).count() == 1
    assert expire_job_files(now=job.expires_at + timedelta(hours=1)) == 0
