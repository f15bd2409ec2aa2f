"""A batch request's checks (removal/batch_submissions.py) without HTTP:
the batch-wide fields before any item is read, and the items' URLs fetched
on the event loop, against a real server on loopback."""

import asyncio
import base64
import threading
import time

import pytest
from asgiref.sync import async_to_sync

from imaging.options import BATCH
from removal import batch_submissions
from removal.submissions import Fields, InvalidOption
from tests.removal.conftest import PNG

PNG_B64 = base64.b64encode(PNG).decode()


def fields(**values) -> Fields:
    return Fields(values)


def check_fields(items, **values):
    return batch_submissions.check_batch_fields(
        fields=fields(**values), items=items, door=BATCH, idempotency_key=None
    )


def test_urls_are_left_to_fetch_and_fetched_on_the_loop_in_order(remote, db):
    items = batch_submissions.items_from_json(
        [
            {"image_url": remote.url("/image.png")},
            {"image_file_b64": PNG_B64, "filename": "inline.png"},
            {"image_url": remote.url("/missing.png")},
        ]
    )
    assert [item.url for item in items] == [
        remote.url("/image.png"),
        None,
        remote.url("/missing.png"),
    ]

    fetched = async_to_sync(batch_submissions.afetch_items)(items)
    request = batch_submissions.check_items(check_fields(items), fetched)

    first, inline, missing = request.items
    assert (first.source.data, first.source.name) == (PNG, "image.png")
    assert inline.filename == "inline.png" and inline.source.data == PNG
    # A refused download stays with its item, with the code the blocking path gives.
    assert not missing.accepted and missing.code == "failed_image_download"
    assert [item.index for item in request.accepted] == [0, 1]


def test_a_batch_wide_refusal_comes_before_any_url_is_fetched(remote, db):
    items = batch_submissions.items_from_json([{"image_url": remote.url("/image.png")}])
    with pytest.raises(InvalidOption):
        check_fields(items, format="gif")
    assert remote.requests == []


def test_slow_item_urls_wait_together_on_the_loop_and_hold_no_thread(remote, db, settings):
    """A batch of slow remotes never holds a request thread: its URLs wait
    on one loop, URL_FETCHES_AT_ONCE at a time, each to the fetch timeout."""
    settings.OUTBOUND_TIMEOUT_SECONDS = 2
    count = batch_submissions.URL_FETCHES_AT_ONCE
    items = batch_submissions.items_from_json(
        [{"image_url": remote.url("/slow.png")} for _ in range(count)]
    )
    threads = []

    async def fetch_all():
        fetching = asyncio.ensure_future(batch_submissions.afetch_items(items))
        await asyncio.sleep(1)
        threads.append(threading.active_count())
        return await fetching

    before = threading.active_count()
    started = time.monotonic()
    fetched = async_to_sync(fetch_all)()
    took = time.monotonic() - started

    request_items = [item.read for item in fetched]
    for read in request_items:
        with pytest.raises(batch_submissions.ApplicationError) as info:
            read()
        assert info.value.code == "failed_image_download"
    # The remote's own threads (one per slow connection) are in this process
    # too; the fetches add at most the resolver's pool and the loop's thread.
    from outbound import async_fetcher

    assert threads[0] - before <= count + async_fetcher.RESOLVER_THREADS + 2
    # Together, not one after another: one by one they would take count x 2 s.
    assert took < count * settings.OUTBOUND_TIMEOUT_SECONDS / 2
