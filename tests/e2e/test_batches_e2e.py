"""Batches through HTTP, the real queue and a real worker process.

A batch hands its items to the queue a few at a time (BATCH_CONCURRENCY),
so another customer's single image, submitted while a batch runs, starts
after at most that many more batch items, never after the whole batch.
A worker killed mid-batch loses nothing: every item still ends.
"""

import io
import json
import math
import signal
import time
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_q.tasks import async_task

from accounts.services import create_api_key
from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from billing.services import open_account
from removal.models import Batch, RemovalJob
from tests.conftest import wait_for
from tests.images import photo_bytes
from tests.speed import job_seconds, model_load_seconds, photo_taking_at_least

pytestmark = [pytest.mark.e2e, pytest.mark.model]

URL = "/paid/image/remove/background/batch"
ITEMS = 6
# Seconds each item of the batch that shares the worker takes at least.
SUBMIT_WITHIN = 0.5


def deadline_for(jobs: int, data: bytes | None = None) -> float:
    """Seconds a worker needs for ``jobs`` jobs on this machine now, with room."""
    one = job_seconds(data or photo_bytes("coffee"), model="u2netp")
    return 10 * model_load_seconds("u2netp") + 10 * jobs * one + 30


def test_a_single_image_is_not_stuck_behind_another_accounts_batch(start_worker):
    from rest_framework.test import APIClient

    batcher, single = APIClient(), APIClient()
    batcher.credentials(
        HTTP_X_API_KEY=create_api_key(account=open_account(name="shop", credits=1000))[1]
    )
    single.credentials(
        HTTP_X_API_KEY=create_api_key(account=open_account(name="solo", credits=100))[1]
    )
    # Each item lasts long enough (measured here, now) that the batch is
    # still running when the single image comes: the test looks every 0.2 s
    # and submits in well under the items the batch has left.
    data, _ = photo_taking_at_least(SUBMIT_WITHIN, model="u2netp")
    start_worker(BATCH_CONCURRENCY="1")
    files = [SimpleUploadedFile(f"{n}.jpg", data) for n in range(ITEMS)]
    batch_id = batcher.post(URL, {"files": files, "model": "u2netp"}).json()["batch_id"]
    items = RemovalJob.objects.filter(batch_id=batch_id)
    wait_for(
        lambda: items.filter(status="completed").exists(),
        timeout=deadline_for(1, data),
        message="the batch's first item never completed",
    )

    photo = SimpleUploadedFile("solo.jpg", photo_bytes("coffee"))
    response = single.post("/paid/image/remove/background", {"file": photo, "model": "u2netp"})
    assert response.status_code == 202
    solo = RemovalJob.objects.get(pk=response.json()["task_id"])
    ended_before = items.filter(status__in=["completed", "failed"]).count()
    wait_for(
        lambda: RemovalJob.objects.get(pk=solo.pk).status == "completed",
        timeout=deadline_for(3, data),
        message="the single image never completed",
    )
    solo.refresh_from_db()

    # At most BATCH_CONCURRENCY (1) batch item ran between its submission and its start.
    started_between = items.filter(
        started_at__gt=solo.created_at, started_at__lt=solo.started_at
    ).count()
    assert started_between <= 1, started_between
    assert ended_before < ITEMS  # the batch was still running when it came


def test_a_batch_runs_to_its_end_with_one_event_and_an_exact_ledger(
    start_worker, api_client, account
):
    balance = account.credit_balance
    start_worker(BATCH_CONCURRENCY="2")
    files = [SimpleUploadedFile(f"{n}.jpg", photo_bytes("astronaut")) for n in range(3)]
    batch_id = api_client.post(URL, {"files": files, "model": "u2netp"}).json()["batch_id"]

    wait_for(
        lambda: Batch.objects.get(pk=batch_id).ended_at is not None,
        timeout=deadline_for(3),
        message="the batch never ended",
    )
    status = api_client.get(f"/api/batch/{batch_id}").json()

    assert status["status"] == "ended" and status["counts"]["completed"] == 3
    zipped = api_client.get(f"/api/batch/{batch_id}/download")
    names = zipfile.ZipFile(io.BytesIO(b"".join(zipped.streaming_content))).namelist()
    assert sorted(names) == ["0.png", "1.png", "2.png", "manifest.json"]
    account.refresh_from_db()
    assert account.credit_balance == balance - 3 * 25
    assert LedgerEntry.objects.filter(account=account, kind="charge").count() == 3


POLL = 0.05  # how often the test looks at the batch's items
# Each item (model loaded) lasts at least this many polls, so the kill lands
# while one runs.
POLLS_PER_ITEM = 20
STALE_GRACE = 1


def test_a_worker_killed_mid_batch_leaves_every_item_ended_the_ledger_exact_and_the_zip_whole(
    start_worker, api_client, account
):
    data, run_seconds = photo_taking_at_least(POLL * POLLS_PER_ITEM, model="u2netp")
    item_seconds = model_load_seconds("u2netp") + run_seconds
    job_timeout = max(8, math.ceil(3 * item_seconds))
    env = {
        "REMOVAL_JOB_TIMEOUT": str(job_timeout),
        "REMOVAL_STALE_GRACE": str(STALE_GRACE),
        "BATCH_CONCURRENCY": "1",
    }
    balance = account.credit_balance
    files = [SimpleUploadedFile(f"{n}.jpg", data) for n in range(ITEMS)]
    response = api_client.post(URL, {"files": files, "model": "u2netp"})
    assert response.status_code == 202, response.content
    batch_id = response.json()["batch_id"]
    items = RemovalJob.objects.filter(batch_id=batch_id)

    started = time.monotonic()
    first = start_worker(**env)

    def mid_batch() -> bool:
        statuses = list(items.values_list("status", flat=True))
        return "completed" in statuses and "processing" in statuses and "pending" in statuses

    wait_for(
        mid_batch,
        timeout=deadline_for(ITEMS),
        interval=POLL,
        message=f"never caught the batch mid-way:\n{first.log()[-3000:]}",
    )
    startup = time.monotonic() - started
    first.kill(signal.SIGKILL)
    first.process.wait(timeout=10)
    at_kill = dict(items.values_list("batch_index", "status"))
    assert "processing" in at_kill.values() and "pending" in at_kill.values(), at_kill

    start_worker(**env)

    def batch_ended() -> bool:
        if Batch.objects.get(pk=batch_id).ended_at is not None:
            return True
        # The reaper's schedule fires every minute (in the housekeeping
        # cluster); here it goes through the queue to the new worker sooner.
        async_task("removal.tasks.fail_stale_jobs", task_name=f"reaper-{time.monotonic()}")
        return False

    # The killed items are reaped after the job timeout and grace (or
    # redelivered after django-q2's retry), then the rest run.
    retry = job_timeout + STALE_GRACE + 5
    bound = 2 * startup + retry + job_timeout + deadline_for(ITEMS)
    wait_for(
        batch_ended,
        timeout=bound,
        interval=3,
        message=f"the batch did not end within {bound:.0f}s",
    )

    jobs = list(items.order_by("batch_index"))
    assert {job.status for job in jobs} <= {"completed", "failed"}
    for job in jobs:
        kinds = sorted(LedgerEntry.objects.filter(job=job).values_list("kind", flat=True))
        assert kinds == (["charge"] if job.status == "completed" else ["charge", "refund"]), (
            job.batch_index,
            job.status,
            kinds,
        )
        if at_kill[job.batch_index] == "processing" and job.status == "completed":
            assert job.attempts >= 2  # redone after the kill
    # The items killed mid-run ended (failed and refunded, or redone); the rest ran.
    assert all(job.status == "completed" for job in jobs if at_kill[job.batch_index] == "pending")
    completed = [job for job in jobs if job.status == "completed"]
    account.refresh_from_db()
    assert account.credit_balance == ledger_sum(account=account)
    assert account.credit_balance == balance - 25 * len(completed)

    zipped = api_client.get(f"/api/batch/{batch_id}/download")
    assert zipped.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(zipped.streaming_content)))
    assert sorted(archive.namelist()) == sorted(
        [f"{job.batch_index}.png" for job in completed] + ["manifest.json"]
    )
    for job in completed:
        with job.output_file.open("rb") as handle:
            assert archive.read(f"{job.batch_index}.png") == handle.read()
    manifest = json.loads(archive.read("manifest.json"))["items"]
    assert [entry["index"] for entry in manifest] == list(range(ITEMS))
    for entry, job in zip(manifest, jobs, strict=True):
        refunded = LedgerEntry.objects.filter(job=job, kind="refund").exists()
        assert entry["status"] == job.status
        assert entry["credits_charged"] == 25
        assert entry["credits_refunded"] == (25 if refunded else 0)
        assert entry["output_name"] == (
            f"{job.batch_index}.png" if job.status == "completed" else None
        )
        assert (entry["error"] is None) == (job.status == "completed")
