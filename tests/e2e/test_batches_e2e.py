"""Batches through HTTP, the real queue and a real worker process.

A batch hands its items to the queue a few at a time (BATCH_CONCURRENCY),
so another customer's single image, submitted while a batch runs, starts
after at most that many more batch items, never after the whole batch.
"""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.services import create_api_key
from billing.models import LedgerEntry
from billing.services import open_account
from removal.models import Batch, RemovalJob
from tests.conftest import wait_for
from tests.images import photo_bytes
from tests.speed import job_seconds, model_load_seconds

pytestmark = [pytest.mark.e2e, pytest.mark.model]

URL = "/paid/image/remove/background/batch"
ITEMS = 6


def deadline_for(jobs: int) -> float:
    """Seconds a worker needs for ``jobs`` jobs on this machine now, with room."""
    one = job_seconds(photo_bytes("coffee"), model="u2netp")
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
    start_worker(BATCH_CONCURRENCY="1")
    files = [SimpleUploadedFile(f"{n}.jpg", photo_bytes("coffee")) for n in range(ITEMS)]
    batch_id = batcher.post(URL, {"files": files, "model": "u2netp"}).json()["batch_id"]
    items = RemovalJob.objects.filter(batch_id=batch_id)
    wait_for(
        lambda: items.filter(status="completed").exists(),
        timeout=deadline_for(1),
        message="the batch's first item never completed",
    )

    photo = SimpleUploadedFile("solo.jpg", photo_bytes("coffee"))
    response = single.post("/paid/image/remove/background", {"file": photo, "model": "u2netp"})
    assert response.status_code == 202
    solo = RemovalJob.objects.get(pk=response.json()["task_id"])
    ended_before = items.filter(status__in=["completed", "failed"]).count()
    wait_for(
        lambda: RemovalJob.objects.get(pk=solo.pk).status == "completed",
        timeout=deadline_for(3),
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
