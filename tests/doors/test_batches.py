"""The batch door, through HTTP, with the real worker code and the real u2netp model."""

import base64
import io
import json
import threading
import time
import zipfile

import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from PIL import Image

from billing.models import LedgerEntry
from removal import wait_limits, waiting
from removal.models import Batch, RemovalJob
from removal.services import fail_job, process_job
from tests.images import grey_png, photo_bytes
from webhooks.models import WebhookEvent

URL = "/paid/image/remove/background/batch"
PRICE = 25


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def gif() -> bytes:
    return b"GIF89a" + b"\0" * 64


def run_all(batch_id: str, on_commit) -> None:
    """Runs the worker's code on each item the batch queued, in turn, as a
    worker would (each item's end queues the next)."""
    while True:
        job = (
            RemovalJob.objects.filter(
                batch_id=batch_id, queued_at__isnull=False, status=RemovalJob.Status.PENDING
            )
            .order_by("batch_index")
            .first()
        )
        if job is None:
            return
        with on_commit(execute=True):
            process_job(job_id=job.id)


@pytest.fixture
def allow_webhooks(settings):
    """A webhook receiver on loopback may be named (nothing listens: the event is what counts)."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]


@pytest.fixture
def post_batch(api_client, django_capture_on_commit_callbacks):
    def post(data, **extra):
        with django_capture_on_commit_callbacks(execute=True):
            return api_client.post(URL, data, **extra)

    return post


def test_each_item_is_checked_and_only_the_accepted_ones_are_charged_in_one_go(account, post_batch):
    balance = account.credit_balance
    response = post_batch(
        {
            "files": [
                upload("a.jpg", photo_bytes("astronaut")),
                upload("b.gif", gif()),
                upload("c.jpg", photo_bytes("coffee")),
            ],
            "model": "u2netp",
        }
    )

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["success"] is True and body["status"] == "pending"
    assert body["charged_credits"] == 2 * PRICE
    a, b, c = body["items"]
    assert (a["index"], a["filename"]) == (0, "a.jpg") and "task_id" in a
    assert (b["index"], b["filename"]) == (1, "b.gif") and "task_id" not in b
    assert "Unsupported image format: gif" in b["error"]
    assert c["index"] == 2 and "task_id" in c
    assert body["endpoints"] == {
        "check_status": f"/api/batch/{body['batch_id']}",
        "download_zip": f"/api/batch/{body['batch_id']}/download",
    }
    account.refresh_from_db()
    assert account.credit_balance == balance - 2 * PRICE
    charges = LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.CHARGE)
    assert charges.count() == 2


def test_a_batch_the_balance_cannot_cover_is_refused_whole(account, post_batch):
    LedgerEntry.objects.filter(account=account).delete()
    type(account).objects.filter(pk=account.pk).update(credit_balance=PRICE)
    response = post_batch(
        {"files": [upload("a.jpg", photo_bytes()), upload("b.jpg", photo_bytes("coffee"))]}
    )

    assert response.status_code == 402
    assert response.json()["code"] == "insufficient_credits"
    assert not RemovalJob.objects.filter(account=account).exists()
    assert not Batch.objects.exists()
    account.refresh_from_db()
    assert account.credit_balance == PRICE


def test_a_batch_without_one_acceptable_item_is_a_400_and_costs_nothing(account, post_batch):
    response = post_batch({"files": [upload("x.gif", gif()), upload("y.txt", b"hello")]})

    assert response.status_code == 400
    assert response.json()["code"] == "no_acceptable_item"
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE).exists()


def test_more_items_than_the_limit_is_a_413(account, post_batch, settings):
    settings.BATCH_MAX_ITEMS = 2
    files = [upload(f"{n}.jpg", photo_bytes()) for n in range(3)]

    response = post_batch({"files": files})

    assert response.status_code == 413
    assert response.json()["code"] == "too_many_items"


def test_an_archive_keeps_its_folders_in_the_names(account, post_batch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("shoes/red.jpg", photo_bytes("astronaut"))
        archive.writestr("shoes/", b"")
        archive.writestr("__MACOSX/shoes/._red.jpg", b"junk")
        archive.writestr("bags/red.jpg", photo_bytes("coffee"))

    response = post_batch({"archive": upload("catalogue.zip", buffer.getvalue())})

    assert response.status_code == 202, response.content
    assert [item["filename"] for item in response.json()["items"]] == [
        "shoes/red.jpg",
        "bags/red.jpg",
    ]


def test_json_items_take_base64_and_urls_each_checked_on_its_own(account, post_batch):
    b64 = base64.b64encode(photo_bytes("chelsea")).decode()
    response = post_batch(
        {
            "items": [
                {"image_file_b64": b64, "filename": "cat.jpg"},
                {"image_url": "http://127.0.0.1:9/secret.png"},
                {"neither": True},
            ],
            "model": "u2netp",
        },
        format="json",
    )

    assert response.status_code == 202, response.content
    cat, url, neither = response.json()["items"]
    assert cat["filename"] == "cat.jpg" and "task_id" in cat
    assert "error" in url and "task_id" not in url
    assert "exactly one of" in neither["error"]
    assert response.json()["charged_credits"] == PRICE


def test_a_repeated_idempotency_key_returns_the_same_batch_uncharged(account, post_batch):
    files = lambda: {"files": [upload("a.jpg", photo_bytes())]}  # noqa: E731
    first = post_batch(files(), HTTP_IDEMPOTENCY_KEY="batch-key-1")
    second = post_batch(files(), HTTP_IDEMPOTENCY_KEY="batch-key-1")

    assert first.json()["batch_id"] == second.json()["batch_id"]
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE).count() == 1


def test_items_go_to_the_queue_a_few_at_a_time(account, post_batch, settings):
    settings.BATCH_CONCURRENCY = 1
    response = post_batch(
        {"files": [upload(f"{n}.jpg", photo_bytes()) for n in range(3)], "model": "u2netp"}
    )
    jobs = RemovalJob.objects.filter(batch_id=response.json()["batch_id"])

    assert jobs.filter(queued_at__isnull=False).count() == 1
    assert jobs.get(queued_at__isnull=False).batch_index == 0


@pytest.mark.model
def test_an_ended_batch_reports_each_item_and_streams_a_zip_with_a_manifest(
    account, api_client, post_batch, django_capture_on_commit_callbacks, allow_webhooks
):
    balance = account.credit_balance
    response = post_batch(
        {
            "files": [
                upload("shoe.jpg", photo_bytes("astronaut")),
                upload("lost.png", grey_png(200, 160)),
                upload("shoe.jpeg", photo_bytes("coffee")),
                upload("notes.gif", gif()),
            ],
            "model": "u2netp",
            "crop": "true",
            "format": "webp",
            "webhook_url": "http://127.0.0.1:9/hooks",
        }
    )
    batch_id = response.json()["batch_id"]
    # This item's stored upload is lost before a worker runs it: it fails, refunded.
    lost = RemovalJob.objects.get(batch_id=batch_id, batch_index=1)
    lost.input_file.storage.delete(lost.input_file.name)
    download = f"/api/batch/{batch_id}/download"
    early = api_client.get(download)
    assert early.status_code == 409 and early.json()["code"] == "batch_not_ended"

    run_all(batch_id, django_capture_on_commit_callbacks)

    status = api_client.get(f"/api/batch/{batch_id}").json()
    assert status["status"] == "ended" and status["progress"] == 100
    assert status["counts"]["completed"] == 2 and status["counts"]["failed"] == 1
    assert status["counts"]["refused"] == 1
    by_name = {item["filename"]: item for item in status["items"]}
    assert by_name["shoe.jpg"]["image_url"].endswith(".webp")
    assert "no longer available" in by_name["lost.png"]["error"]
    assert by_name["notes.gif"]["status"] == "refused"

    zipped = api_client.get(download)
    assert zipped.status_code == 200 and zipped["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(zipped.streaming_content)))
    assert sorted(archive.namelist()) == ["manifest.json", "shoe (2).webp", "shoe.webp"]
    assert Image.open(io.BytesIO(archive.read("shoe.webp"))).mode == "RGBA"
    manifest = {item["index"]: item for item in json.loads(archive.read("manifest.json"))["items"]}
    assert manifest[0]["output_name"] == "shoe.webp" and manifest[0]["size"] > 0
    assert manifest[1]["status"] == "failed" and manifest[1]["credits_refunded"] == PRICE
    assert manifest[2]["output_name"] == "shoe (2).webp"
    assert manifest[3] == {
        "index": 3,
        "original_name": "notes.gif",
        "status": "refused",
        "output_name": None,
        "size": None,
        "error": manifest[3]["error"],
        "credits_charged": 0,
        "credits_refunded": 0,
    }
    account.refresh_from_db()
    assert account.credit_balance == balance - 2 * PRICE  # 3 charged, 1 refunded
    refunds = LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.REFUND)
    assert refunds.count() == 1
    events = WebhookEvent.objects.filter(batch_id=batch_id)
    assert [event.type for event in events] == ["batch.completed"]
    assert events[0].payload["data"]["counts"]["completed"] == 2
    assert not WebhookEvent.objects.filter(job__batch_id=batch_id).exists()


@pytest.mark.parametrize("body", [b"null", b"3", b"[1, 2]", b"[" * 100_000])
def test_a_json_body_that_is_not_an_object_is_a_400(account, api_client, body):
    response = api_client.post(URL, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"


# --- ?wait= on the event loop, within the wait limits ---------------------------


def post_one_item(account, post_batch) -> str:
    response = post_batch({"files": [upload("a.png", grey_png(64, 48))], "model": "u2netp"})
    assert response.status_code == 202, response.content
    return response.json()["batch_id"]


@pytest.mark.weights
def test_a_batch_status_with_wait_answers_as_soon_as_its_last_item_ends(
    transactional_db, account, post_batch, api_client
):
    batch_id = post_one_item(account, post_batch)
    job = RemovalJob.objects.get(batch_id=batch_id)

    def end() -> None:
        fail_job(job=job, error="Stopped")
        connection.close()

    ender = threading.Timer(0.5, end)
    started = time.monotonic()
    ender.start()
    response = api_client.get(f"/api/batch/{batch_id}?wait=30")
    ender.join()
    assert response.status_code == 200
    assert response.json()["status"] == "ended"
    assert time.monotonic() - started < 15
    assert "X-Wait-Refused" not in response


@pytest.mark.weights
@pytest.mark.parametrize("end_order", [(0, 1, 2), (2, 0, 1)], ids=["in-order", "last-first"])
def test_a_batch_wait_watches_its_last_unfinished_item_and_answers_when_all_ended(
    transactional_db, account, post_batch, api_client, monkeypatch, end_order
):
    response = post_batch(
        {"files": [upload(f"{n}.png", grey_png(64, 48)) for n in range(3)], "model": "u2netp"}
    )
    assert response.status_code == 202, response.content
    batch_id = response.json()["batch_id"]
    jobs = list(RemovalJob.objects.filter(batch_id=batch_id).order_by("batch_index"))
    watched: list[int] = []
    wait_then_reload = waiting.wait_then_reload

    def end() -> None:
        for index in end_order:
            fail_job(job=jobs[index], error="Stopped")
            time.sleep(0.2)
        connection.close()

    ender = threading.Thread(target=end)

    async def watch(job, *, timeout):
        watched.append(job.batch_index)
        if not ender.is_alive() and len(watched) == 1:
            ender.start()  # the items end only once the wait is watching
        return await wait_then_reload(job, timeout=timeout)

    monkeypatch.setattr(waiting, "wait_then_reload", watch)

    response = api_client.get(f"/api/batch/{batch_id}?wait=30")
    ender.join()

    assert response.status_code == 200
    assert response.json()["status"] == "ended"
    # Items ending in order wake the wait once, for the last; one ending out
    # of order sends it on to the next unfinished one from the end.
    assert watched[0] == 2
    if end_order == (0, 1, 2):
        assert watched == [2]
    else:
        assert watched[:2] == [2, 1]


@pytest.mark.weights
def test_a_batch_status_over_the_key_limit_answers_at_once_with_its_status(
    transactional_db, account, post_batch, api_client, settings
):
    settings.REDIS_URL = ""
    settings.WAIT_MAX_PER_KEY, settings.WAIT_MAX_PER_ADDRESS = 1, 0
    batch_id = post_one_item(account, post_batch)
    prefix = account.api_keys.get().prefix
    held = async_to_sync(wait_limits.take)(key=prefix, address=None, seconds=30)
    try:
        started = time.monotonic()
        response = api_client.get(f"/api/batch/{batch_id}?wait=30")
        assert time.monotonic() - started < 10
    finally:
        async_to_sync(held.release)()
    assert response.status_code == 200
    assert response.json()["status"] != "ended"
    assert response["X-Wait-Refused"] == "key"
