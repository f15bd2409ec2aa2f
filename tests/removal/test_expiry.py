"""Inputs and outputs expire: files go, the job row and the ledger stay."""

import os
import time
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from django_q.models import Schedule

from billing.models import LedgerEntry
from removal import services, tasks
from removal.models import RemovalJob
from tests.conftest import bucket_keys, s3_client
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
    [
        ("removal.tasks.expire_job_files", 10),
        ("removal.tasks.fail_stale_jobs", 1),
        ("removal.tasks.delete_orphaned_files", 60),
    ],
)
def test_housekeeping_is_scheduled_on_a_queue_of_its_own(db, settings, func, most_minutes):
    schedule = Schedule.objects.get(func=func)
    assert schedule.schedule_type == Schedule.MINUTES
    assert schedule.minutes <= most_minutes
    assert schedule.repeats == -1
    # Not the removal queue: a backlog of removals never delays these.
    assert schedule.cluster == settings.HOUSEKEEPING_CLUSTER == "housekeeping"
    assert settings.HOUSEKEEPING_CLUSTER in settings.Q_CLUSTER["ALT_CLUSTERS"]
    assert settings.Q_CLUSTER["name"] != settings.HOUSEKEEPING_CLUSTER


# --- at scale: bulk deletes, orphans -------------------------------------------


def expired_jobs(account, count: int) -> list[RemovalJob]:
    """``count`` finished jobs past their expiry, their rows made in one query."""
    past = timezone.now() - timedelta(hours=1)
    jobs = []
    for _ in range(count):
        job = RemovalJob(
            id=uuid.uuid4(),
            account=account,
            model_name="u2netp",
            status=RemovalJob.Status.COMPLETED,
            input_format="png",
            expires_at=past,
        )
        job.input_file.name = f"inputs/{job.id}.png"
        job.output_file.name = f"outputs/{job.id}_output.png"
        jobs.append(job)
    return RemovalJob.objects.bulk_create(jobs)


def count_s3_calls(operation: str):
    """A list that grows by one for each ``operation`` call the default storage's client makes."""
    from django.core.files.storage import default_storage

    calls = []
    client = default_storage.connection.meta.client
    client.meta.events.register(
        f"before-parameter-build.s3.{operation}", lambda params, **kwargs: calls.append(params)
    )
    return calls


@pytest.mark.django_db
def test_expiry_deletes_from_the_bucket_1000_keys_per_request(account, s3_storage_settings):
    jobs = expired_jobs(account, 600)  # 1,200 files
    client = s3_client(s3_storage_settings)
    bucket = s3_storage_settings["AWS_STORAGE_BUCKET_NAME"]
    for job in jobs:
        for name in (job.input_file.name, job.output_file.name):
            client.put_object(Bucket=bucket, Key=name, Body=b"x")
    kept = processed_or_live_job(account)
    assert len(bucket_keys(s3_storage_settings)) == 1201
    deletes = count_s3_calls("DeleteObjects")

    assert services.expire_job_files() == 600

    # Two requests for 1,200 keys, not 1,200 requests.
    assert [len(call["Delete"]["Objects"]) for call in deletes] == [1000, 200]
    assert bucket_keys(s3_storage_settings) == {kept.input_file.name}
    assert RemovalJob.objects.filter(files_deleted_at__isnull=True).count() == 1
    assert services.expire_job_files() == 0


def processed_or_live_job(account) -> RemovalJob:
    """A pending job (its input stored by the real submit service), never expired."""
    from tests.job_factory import submitted_job

    with mock.patch("removal.services.enqueue_job"):
        return submitted_job(account, data=CAT, filename="cat.png")


@pytest.mark.django_db
def test_expiry_of_local_files_marks_each_batch_in_one_query(
    account, django_assert_max_num_queries
):
    jobs = expired_jobs(account, 1200)
    storage = jobs[0].input_file.storage
    for job in jobs:
        for name in (job.input_file.name, job.output_file.name):
            storage.save(name, ContentFile(b"x"))
    # Per batch of 500 jobs: one SELECT, one UPDATE; no query per job.
    with django_assert_max_num_queries(2 * 3):
        assert services.expire_job_files() == 1200
    assert not any(storage.exists(job.input_file.name) for job in jobs)
    assert not any(storage.exists(job.output_file.name) for job in jobs)


@pytest.mark.django_db
def test_a_stopping_worker_ends_the_expiry_between_batches(account):
    expired_jobs(account, services.EXPIRY_BATCH + 10)
    assert services.expire_job_files(should_stop=lambda: True) == services.EXPIRY_BATCH
    # The next run carries on where this one stopped.
    assert services.expire_job_files() == 10


@pytest.mark.django_db
def test_the_orphan_sweep_deletes_old_files_no_job_names_in_the_bucket(
    account, s3_storage_settings
):
    live = processed_or_live_job(account)
    (gone,) = expired_jobs(account, 1)
    services.expire_job_files()  # gone's row stays, its files are deleted
    client = s3_client(s3_storage_settings)
    bucket = s3_storage_settings["AWS_STORAGE_BUCKET_NAME"]
    orphans = {
        f"inputs/{uuid.uuid4()}.jpg",  # a web process died before its job committed
        f"outputs/{uuid.uuid4()}_output.png",  # a worker died after storing its result
        f"outputs/{gone.id}_output.png",  # stored again after its job's files expired
    }
    for key in orphans:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    everything = {live.input_file.name, *orphans}
    assert bucket_keys(s3_storage_settings) == everything

    # Written just now: their jobs may still be committing; nothing goes.
    assert services.delete_orphaned_files() == 0
    assert bucket_keys(s3_storage_settings) == everything

    later = timezone.now() + services.ORPHAN_MIN_AGE + timedelta(minutes=1)
    assert services.delete_orphaned_files(now=later) == 3
    assert bucket_keys(s3_storage_settings) == {live.input_file.name}


@pytest.mark.django_db
def test_the_orphan_sweep_deletes_old_local_files_no_job_names(account):
    live = processed_or_live_job(account)
    storage = live.input_file.storage
    orphan = storage.save(f"inputs/{uuid.uuid4()}.png", ContentFile(b"x"))
    young = storage.save(f"inputs/{uuid.uuid4()}.png", ContentFile(b"x"))
    an_hour_ago = time.time() - 2 * services.ORPHAN_MIN_AGE.total_seconds()
    for name in (orphan, live.input_file.name):
        os.utime(storage.path(name), (an_hour_ago, an_hour_ago))

    assert services.delete_orphaned_files() == 1
    assert not storage.exists(orphan)
    assert storage.exists(young)
    assert storage.exists(live.input_file.name)
