"""Waiting for a job's end: each backend, the API's ?wait= and the web page's.

The backends run against the real services: the poll on whatever database
the suite uses, Redis pub/sub on the local Redis (a channel of its own per
test), and PostgreSQL LISTEN/NOTIFY when the suite runs on PostgreSQL (as
CI does; LISTEN needs the same server as the jobs' table). Waiters run as
coroutines on one event loop (``server_loop``), as a web process runs them.
"""

import asyncio
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.services import add_member
from removal import wait_listeners, waiting
from removal.models import RemovalJob
from removal.services import fail_job, process_job
from revid import serving
from tests.conftest import ROOT, subprocess_env, wait_for
from tests.job_factory import completed_job, failed_job, submitted_job

# PostgreSQL's tests are collected on every database and skip, saying why,
# where the suite runs on SQLite: a local run shows what it did not test.
BACKENDS = ["poll", "redis", "postgres"]
ON_POSTGRESQL = "postgresql" in django_settings.DATABASES["default"]["ENGINE"]

HANDOFF_RUNS = 20


@pytest.fixture(params=BACKENDS)
def backend(request, settings, transactional_db) -> str:
    """Wait and announce through one backend, on a channel no one else uses."""
    name = request.param
    if name == "postgres" and not ON_POSTGRESQL:
        pytest.skip(
            "LISTEN/NOTIFY needs the jobs' own PostgreSQL server and this run is on "
            f"{django_settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}: set "
            "DATABASE_URL=postgres://... (CI does)"
        )
    if name == "redis":
        # The run's own Redis database (tests/conftest.py); skips without Redis.
        settings.REDIS_URL = request.getfixturevalue("redis_url")
    settings.WAIT_BACKEND = name
    settings.WAIT_CHANNEL = f"revid_test_{uuid.uuid4().hex}"
    return name


def finish(job: RemovalJob) -> None:
    """Completes a pending job as the worker does, without the model."""
    assert job.mark_processing()
    assert job.mark_completed(
        output_size=1, elapsed_seconds=0.1, expires_at=timezone.now() + timedelta(hours=1)
    )


class Waiter:
    """``wait_for_job`` as a coroutine on the server's loop, as a request runs it."""

    def __init__(self, server_loop, job_id, timeout: float, until_shutdown: bool = True):
        self.returned_at: float | None = None
        self.ended: bool | None = None

        async def wait():
            self.ended = await waiting.wait_for_job(
                job_id=job_id, timeout=timeout, until_shutdown=until_shutdown
            )
            self.returned_at = time.monotonic()

        self.future = server_loop.start(wait())

    def join(self, timeout: float) -> None:
        self.future.result(timeout=timeout)

    def is_waiting(self) -> bool:
        return not self.future.done()


def listener_of(server_loop, backend: str) -> wait_listeners.Listener:
    async def get():
        return waiting._listener(backend)

    return server_loop.run(get())


def start_waiter(server_loop, job_id, *, timeout: float, backend: str, **kwargs) -> Waiter:
    """Starts a waiter and returns once it is waiting (registered, listener up)."""
    listener = listener_of(server_loop, backend)
    before = len(listener)
    waiter = Waiter(server_loop, job_id, timeout, **kwargs)
    wait_for(lambda: len(listener) > before, timeout=10, interval=0.01)
    wait_for(lambda: listener.listening.is_set(), timeout=10, interval=0.01)
    # Past its own first read of the job.
    time.sleep(0.05)
    if backend == "poll":
        # A random phase, so hand-offs are not measured in step with the poll.
        time.sleep(random.uniform(0, django_settings.WAIT_POLL_MS / 1000))
    assert waiter.is_waiting(), waiter.future
    return waiter


@pytest.mark.weights
def test_wait_returns_at_once_for_a_job_that_already_ended(backend, account, server_loop):
    for job in (completed_job(account), failed_job(account)):
        started = time.monotonic()
        assert server_loop.run(waiting.wait_for_job(job_id=job.id, timeout=30)) is True
        assert time.monotonic() - started < 15


@pytest.mark.weights
def test_wait_returns_after_the_timeout_when_the_job_does_not_end(backend, account, server_loop):
    job = submitted_job(account)
    started = time.monotonic()
    assert server_loop.run(waiting.wait_for_job(job_id=job.id, timeout=0.5)) is False
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 0.5 + 5
    job.refresh_from_db()
    assert job.status == RemovalJob.Status.PENDING


@pytest.mark.weights
def test_an_announced_end_wakes_the_waiter_long_before_its_timeout(
    backend, account, monkeypatch, server_loop
):
    """Measures the hand-off (announce -> waiter returns), median of 20."""
    # Only the announcement (or the poll) can end these waits early.
    monkeypatch.setattr(django_settings, "WAIT_RECHECK_SECONDS", 120.0)
    latencies = []
    for _ in range(HANDOFF_RUNS):
        job = submitted_job(account)
        waiter = start_waiter(server_loop, job.id, timeout=60, backend=backend)
        finish(job)
        announced_at = time.monotonic()
        waiting.announce_job_finished(job_id=job.id)
        waiter.join(timeout=60)
        assert waiter.ended is True
        latencies.append(waiter.returned_at - announced_at)
    median_ms = statistics.median(latencies) * 1000
    print(
        f"\n{backend}: announce -> waiter returned, median {median_ms:.1f} ms "
        f"(max {max(latencies) * 1000:.1f} ms) over {HANDOFF_RUNS} runs"
    )
    # Each of them ended far from its 60 s timeout.
    assert max(latencies) < 30


@pytest.mark.weights
def test_many_waiters_on_many_jobs_are_each_woken_by_their_own_job(
    backend, account, monkeypatch, server_loop
):
    monkeypatch.setattr(django_settings, "WAIT_RECHECK_SECONDS", 120.0)
    jobs = [submitted_job(account) for _ in range(4)]
    waiters = [
        start_waiter(server_loop, job.id, timeout=60, backend=backend)
        for job in jobs
        for _ in range(3)
    ]
    finish(jobs[0])
    waiting.announce_job_finished(job_id=jobs[0].id)
    for waiter in waiters[:3]:
        waiter.join(timeout=60)
        assert waiter.ended is True
    # The other jobs' waiters are still waiting.
    assert all(waiter.is_waiting() for waiter in waiters[3:])
    for job in jobs[1:]:
        assert fail_job(job=job, error="Cancelled by the test")  # announces after commit
    for waiter in waiters[3:]:
        waiter.join(timeout=60)
        assert waiter.ended is True
    assert len(listener_of(server_loop, backend)) == 0


@pytest.mark.weights
def test_a_job_ended_by_another_process_wakes_the_waiter(
    backend, account, monkeypatch, server_loop
):
    monkeypatch.setattr(django_settings, "WAIT_RECHECK_SECONDS", 120.0)
    job = submitted_job(account)
    waiter = start_waiter(server_loop, job.id, timeout=60, backend=backend)
    env = subprocess_env(
        WAIT_BACKEND=backend, WAIT_CHANNEL=django_settings.WAIT_CHANNEL, REDIS_URL=""
    )
    if backend == "redis":
        env["REDIS_URL"] = django_settings.REDIS_URL
    script = (
        "from removal.models import RemovalJob\n"
        "from removal.services import fail_job\n"
        f"job = RemovalJob.objects.get(pk='{job.id}')\n"
        "assert fail_job(job=job, error='Ended by another process')\n"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    waiter.join(timeout=60)
    assert waiter.ended is True
    job.refresh_from_db()
    assert job.status == RemovalJob.Status.FAILED


@pytest.mark.model
def test_the_worker_announces_a_job_it_completed(backend, account, monkeypatch, server_loop):
    monkeypatch.setattr(django_settings, "WAIT_RECHECK_SECONDS", 120.0)
    job = submitted_job(account, photo_name="coffee", model="u2netp")
    waiter = start_waiter(server_loop, job.id, timeout=60, backend=backend)
    process_job(job_id=job.id)  # the real model; announces after commit
    waiter.join(timeout=60)
    assert waiter.ended is True
    job.refresh_from_db()
    assert job.status == RemovalJob.Status.COMPLETED


def kill_listener_connection(backend: str) -> None:
    if backend == "postgres":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = current_database()",
                [waiting.LISTENER_NAME],
            )
            assert cursor.fetchall(), "no listener connection to terminate"
    else:
        import redis

        client = redis.Redis.from_url(django_settings.REDIS_URL)
        name = f"{waiting.LISTENER_NAME}:{django_settings.WAIT_CHANNEL}"
        ids = [c["id"] for c in client.client_list() if c.get("name") == name]
        assert ids, "no listener connection to kill"
        for client_id in ids:
            client.client_kill_filter(_id=client_id)
        client.close()


@pytest.mark.weights
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "poll"], indirect=True)
def test_a_listener_that_loses_its_connection_reconnects_and_loses_no_job(
    backend, account, monkeypatch, server_loop
):
    monkeypatch.setattr(django_settings, "WAIT_RECHECK_SECONDS", 120.0)
    first = submitted_job(account)
    waiter = start_waiter(server_loop, first.id, timeout=60, backend=backend)
    kill_listener_connection(backend)
    # Ended while the listener is down or reconnecting: the announcement may
    # be lost, the waiter must not be (the sweep finds it).
    finish(first)
    waiting.announce_job_finished(job_id=first.id)
    waiter.join(timeout=60)
    assert waiter.ended is True

    # And the listener is back: a later job's end still wakes its waiter.
    second = submitted_job(account)
    waiter = start_waiter(server_loop, second.id, timeout=60, backend=backend)
    finish(second)
    waiting.announce_job_finished(job_id=second.id)
    waiter.join(timeout=60)
    assert waiter.ended is True


@pytest.mark.weights
def test_a_job_ended_without_an_announcement_is_found_by_the_sweep(
    backend, account, monkeypatch, server_loop
):
    monkeypatch.setattr(django_settings, "WAIT_RECHECK_SECONDS", 0.3)
    job = submitted_job(account)
    waiter = start_waiter(server_loop, job.id, timeout=60, backend=backend)
    finish(job)  # no announcement at all
    waiter.join(timeout=30)
    assert waiter.ended is True


@pytest.mark.weights
def test_two_hundred_waiters_hold_no_thread_and_are_dropped_when_cancelled(
    backend, account, monkeypatch, server_loop
):
    """A waiter is a coroutine: no thread of its own; a client that hangs up
    cancels it, and it leaves the listener at once."""
    monkeypatch.setattr(django_settings, "WAIT_RECHECK_SECONDS", 120.0)
    job = submitted_job(account)
    listener = listener_of(server_loop, backend)
    start_waiter(server_loop, job.id, timeout=60, backend=backend).future.cancel()
    threads_before = threading.active_count()
    waiters = [Waiter(server_loop, job.id, timeout=60) for _ in range(200)]
    wait_for(lambda: len(listener) == 200, timeout=30, interval=0.05)
    time.sleep(0.2)
    assert threading.active_count() <= threads_before + 2  # the sweep's thread, at most
    for waiter in waiters:
        waiter.future.cancel()
    wait_for(lambda: len(listener) == 0, timeout=5, interval=0.01)


@pytest.mark.weights
def test_a_stopping_server_answers_long_polls_but_lets_synchronous_calls_finish(
    account, server_loop, transactional_db, monkeypatch
):
    monkeypatch.setattr(django_settings, "WAIT_RECHECK_SECONDS", 120.0)
    job = submitted_job(account)
    long_poll = start_waiter(server_loop, job.id, timeout=60, backend=waiting.backend_name())
    synchronous = start_waiter(
        server_loop, job.id, timeout=60, backend=waiting.backend_name(), until_shutdown=False
    )
    serving.begin_shutdown(server_loop.loop)
    long_poll.join(timeout=10)
    assert long_poll.ended is False  # answered with the current status
    assert synchronous.is_waiting()
    finish(job)
    waiting.announce_job_finished(job_id=job.id)
    synchronous.join(timeout=30)
    assert synchronous.ended is True


# --- the HTTP endpoints (Django's test client runs the async views) ---------------


@pytest.mark.weights
@pytest.mark.parametrize("value", ["0", "-1", "31", "abc", "nan", "inf", "", "1e9"])
def test_the_status_api_refuses_a_wait_it_cannot_honour(value, anon_client, account):
    job = submitted_job(account)
    response = anon_client.get(f"/api/get/{job.id}", {"wait": value})
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "invalid_wait"
    assert "at most 30" in body["error"]


@pytest.mark.weights
def test_the_status_api_answers_as_soon_as_the_job_ends(transactional_db, account, anon_client):
    job = submitted_job(account)
    ender = threading.Timer(0.5, lambda: (fail_job(job=job, error="Stopped"), connection.close()))
    started = time.monotonic()
    ender.start()
    response = anon_client.get(f"/api/get/{job.id}?wait=30")
    elapsed = time.monotonic() - started
    ender.join()
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert elapsed < 15


@pytest.mark.weights
def test_the_status_api_answers_after_the_wait_with_the_current_status(
    transactional_db, account, anon_client
):
    job = submitted_job(account)
    started = time.monotonic()
    response = anon_client.get(f"/api/get/{job.id}?wait=0.5")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert "X-Wait-Refused" not in response
    assert elapsed >= 0.5


@pytest.mark.weights
def test_the_status_api_answers_a_finished_job_without_waiting(anon_client, account):
    job = completed_job(account)
    started = time.monotonic()
    response = anon_client.get(f"/api/get/{job.id}", {"wait": "30"})
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert time.monotonic() - started < 15


def test_an_unknown_task_is_404_at_once_even_with_wait(anon_client, db):
    response = anon_client.get(f"/api/get/{uuid.uuid4()}?wait=30")
    assert response.status_code == 404
    assert response.json()["code"] == "task_not_found"


@pytest.mark.weights
def test_the_web_status_endpoint_waits_too(transactional_db, account):
    member = add_member(account=account, username="alice", password="pw-alice-123")
    client = Client()
    client.force_login(member.user)
    job = submitted_job(account)

    refused = client.get(f"/jobs/{job.id}/status", {"wait": "0"})
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid_wait"

    pending = client.get(f"/jobs/{job.id}/status", {"wait": "0.3"})
    assert pending.status_code == 200
    assert pending.json()["status"] == "pending"

    ender = threading.Timer(0.3, lambda: (fail_job(job=job, error="Stopped"), connection.close()))
    ender.start()
    ended = client.get(f"/jobs/{job.id}/status", {"wait": "30"})
    ender.join()
    assert ended.status_code == 200
    body = ended.json()
    assert body["status"] == "failed"
    # The refund shows in the balance the page displays.
    assert body["balance"] == 1000


def test_on_one_machine_the_poll_backend_is_rung_not_polled(
    settings, transactional_db, account, monkeypatch, server_loop
):
    """SQLite's poll backend: the worker's announcement rings the web's doorbell."""
    monkeypatch.setattr(django_settings, "WAIT_RECHECK_SECONDS", 120.0)
    settings.WAIT_BACKEND = "poll"
    settings.WAIT_POLL_MS = 120_000  # only the doorbell can end the wait early
    settings.WAIT_WAKE_DIR = settings.DATA_DIR / f"wake-test-{uuid.uuid4().hex[:8]}" / "wait"
    job = submitted_job(account)
    waiter = Waiter(server_loop, job.id, timeout=100)
    listener = listener_of(server_loop, "poll")
    wait_for(lambda: len(listener) >= 1, timeout=10, interval=0.01)
    # The sweep's first query has run and it now sleeps on its bell.
    wait_for(lambda: any(settings.WAIT_WAKE_DIR.glob("*.sock")), timeout=10, interval=0.01)
    time.sleep(0.2)

    finish(job)
    announced_at = time.monotonic()
    waiting.announce_job_finished(job_id=job.id)
    waiter.join(timeout=100)

    assert waiter.ended is True
    assert waiter.returned_at - announced_at < 50


# --- wait_then_reload: the one way a door waits ------------------------------------


def no_wait(**kwargs):
    pytest.fail(f"waited: {kwargs}")


@pytest.mark.weights
@pytest.mark.parametrize("timeout", [None, 0])
def test_without_a_wait_the_job_is_returned_as_it_was_read(
    account, monkeypatch, timeout, server_loop
):
    job = submitted_job(account)
    RemovalJob.objects.filter(pk=job.pk).update(message="Changed meanwhile")
    monkeypatch.setattr(waiting, "wait_for_job", no_wait)
    assert server_loop.run(waiting.wait_then_reload(job, timeout=timeout)) is job
    assert job.message == "Background removal started"  # not read again


@pytest.mark.weights
def test_a_job_that_already_ended_is_returned_without_waiting(account, monkeypatch, server_loop):
    job = failed_job(account)
    monkeypatch.setattr(waiting, "wait_for_job", no_wait)
    assert server_loop.run(waiting.wait_then_reload(job, timeout=30)) is job


@pytest.mark.weights
def test_after_the_wait_the_job_is_read_again(transactional_db, account, server_loop):
    job = submitted_job(account)
    RemovalJob.objects.filter(pk=job.pk).update(message="Changed meanwhile")
    started = time.monotonic()
    assert server_loop.run(waiting.wait_then_reload(job, timeout=0.3)) is job
    assert time.monotonic() - started >= 0.3
    assert (job.status, job.message) == (RemovalJob.Status.PENDING, "Changed meanwhile")


def test_wait_then_reload_gives_the_job_as_it_ended(transactional_db, account):
    job = submitted_job(account)

    async def wait_and_end():
        task = asyncio.ensure_future(waiting.wait_then_reload(job, timeout=30))
        await asyncio.sleep(0.3)
        from asgiref.sync import sync_to_async

        await sync_to_async(fail_job, thread_sensitive=False)(job=job, error="Stopped")
        return await task

    ended = async_to_sync(wait_and_end)()
    assert ended.status == RemovalJob.Status.FAILED
