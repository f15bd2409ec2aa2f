"""Concurrent waits per API key and per address: counted, refused early, freed at once."""

import threading
import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from billing.models import LedgerEntry
from removal import wait_limits
from removal.services import fail_job
from tests.images import solid_png
from tests.job_factory import submitted_job


@pytest.fixture(params=["memory", "redis"])
def counted_in(request, settings):
    """Each test runs with the in-process counts and with Redis's."""
    if request.param == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
    return request.param


def take(**kwargs):
    return async_to_sync(wait_limits.take)(**kwargs)


def release(slot):
    async_to_sync(slot.release)()


def test_a_key_gets_its_limit_and_no_more_then_a_freed_slot_is_taken_again(counted_in, settings):
    settings.WAIT_MAX_PER_KEY, settings.WAIT_MAX_PER_ADDRESS = 3, 0
    key = uuid.uuid4().hex
    slots = [take(key=key, address="192.0.2.1", seconds=30) for _ in range(3)]
    assert all(isinstance(slot, wait_limits.WaitSlot) for slot in slots)
    refused = take(key=key, address="192.0.2.1", seconds=30)
    assert refused == wait_limits.Refusal(limit="key", maximum=3)
    # Another key is not affected.
    other = take(key=uuid.uuid4().hex, address="192.0.2.1", seconds=30)
    assert isinstance(other, wait_limits.WaitSlot)
    release(slots[0])
    release(slots[0])  # twice: counted once
    again = take(key=key, address="192.0.2.1", seconds=30)
    assert isinstance(again, wait_limits.WaitSlot)
    assert isinstance(take(key=key, address="192.0.2.1", seconds=30), wait_limits.Refusal)
    for slot in [*slots[1:], other, again]:
        release(slot)


def test_an_address_is_limited_whatever_the_key(counted_in, settings):
    settings.WAIT_MAX_PER_KEY, settings.WAIT_MAX_PER_ADDRESS = 0, 2
    address = f"198.51.100.{uuid.uuid4().int % 250}"
    slots = [take(key=uuid.uuid4().hex, address=address, seconds=30) for _ in range(2)]
    refused = take(key=None, address=address, seconds=30)
    assert refused == wait_limits.Refusal(limit="address", maximum=2)
    for slot in slots:
        release(slot)
    assert isinstance(take(key=None, address=address, seconds=30), wait_limits.WaitSlot)


def test_a_refused_wait_takes_no_slot_of_the_other_limit(counted_in, settings):
    settings.WAIT_MAX_PER_KEY, settings.WAIT_MAX_PER_ADDRESS = 1, 5
    key, address = uuid.uuid4().hex, "203.0.113.7"
    first = take(key=key, address=address, seconds=30)
    for _ in range(10):
        assert isinstance(take(key=key, address=address, seconds=30), wait_limits.Refusal)
    # The ten refusals took nothing from the address's five.
    others = [take(key=uuid.uuid4().hex, address=address, seconds=30) for _ in range(4)]
    assert all(isinstance(slot, wait_limits.WaitSlot) for slot in others)
    for slot in [first, *others]:
        release(slot)


def test_zero_means_no_limit(counted_in, settings):
    settings.WAIT_MAX_PER_KEY, settings.WAIT_MAX_PER_ADDRESS = 0, 0
    slots = [take(key="k", address="192.0.2.9", seconds=30) for _ in range(50)]
    assert all(isinstance(slot, wait_limits.WaitSlot) for slot in slots)


def test_in_redis_a_slot_of_a_process_that_died_expires_with_its_wait(redis_url, settings):
    settings.REDIS_URL = redis_url
    settings.WAIT_MAX_PER_KEY, settings.WAIT_MAX_PER_ADDRESS = 1, 0
    key = uuid.uuid4().hex
    # Taken and never released (its process was killed), for a 0.2 s wait.
    original = wait_limits.EXPIRY_MARGIN_SECONDS
    wait_limits.EXPIRY_MARGIN_SECONDS = 0
    try:
        take(key=key, address=None, seconds=0.2)
    finally:
        wait_limits.EXPIRY_MARGIN_SECONDS = original
    assert isinstance(take(key=key, address=None, seconds=30), wait_limits.Refusal)
    time.sleep(0.4)
    assert isinstance(take(key=key, address=None, seconds=30), wait_limits.WaitSlot)


def test_without_redis_reachable_waits_are_let_through(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.WAIT_MAX_PER_KEY = 1
    slots = [take(key="k", address=None, seconds=30) for _ in range(3)]
    assert all(isinstance(slot, wait_limits.WaitSlot) for slot in slots)


# --- at the doors -------------------------------------------------------------


@pytest.mark.weights
def test_a_status_call_over_the_address_limit_answers_at_once_with_the_status(
    transactional_db, settings, account, anon_client
):
    settings.REDIS_URL = ""
    settings.WAIT_MAX_PER_KEY, settings.WAIT_MAX_PER_ADDRESS = 0, 1
    job = submitted_job(account)
    held = take(key=None, address="127.0.0.1", seconds=30)  # another wait from this address
    try:
        started = time.monotonic()
        response = anon_client.get(f"/api/get/{job.id}?wait=30")
        assert time.monotonic() - started < 10
        assert response.status_code == 200
        assert response.json()["status"] == "pending"
        assert response["X-Wait-Refused"] == "address"
    finally:
        release(held)
    # Freed: the next one waits (and is answered by the job's end).
    ender = threading.Timer(0.5, lambda: (fail_job(job=job, error="Stopped"), connection.close()))
    ender.start()
    response = anon_client.get(f"/api/get/{job.id}?wait=30")
    ender.join()
    assert response.json()["status"] == "failed"
    assert "X-Wait-Refused" not in response


@pytest.mark.weights
def test_removebg_over_the_key_limit_is_a_429_with_retry_after_and_costs_nothing(
    transactional_db, settings, account, api_client
):
    settings.REDIS_URL = ""
    settings.WAIT_MAX_PER_KEY, settings.WAIT_MAX_PER_ADDRESS = 1, 0
    prefix = account.api_keys.get().prefix
    held = take(key=prefix, address=None, seconds=30)
    try:
        response = api_client.post(
            "/v1.0/removebg",
            {"image_file": ("photo.png", solid_png(32, 24), "image/png")},
            format="multipart",
        )
    finally:
        release(held)
    assert response.status_code == 429
    assert response["Retry-After"] == str(wait_limits.RETRY_AFTER_SECONDS)
    error = response.json()["errors"][0]
    assert error["code"] == "rate_limit_exceeded"
    assert "Nothing was charged" in error["detail"]
    account.refresh_from_db()
    assert account.credit_balance == 1000
    assert not LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.CHARGE).exists()
