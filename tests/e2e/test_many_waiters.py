"""Hundreds of waiting clients, and `make serve` answers everyone else at once.

`make serve` itself (gunicorn, two uvicorn workers) with no removal worker,
so every job stays pending and every waiting client really waits: long polls
(``GET /api/get/<id>?wait=30``) and synchronous remove.bg calls (``POST
/v1.0/removebg``) together, all from loopback (so the per-address limit is
off here; tests/removal/test_wait_limits.py covers the limits). While they
wait: ``/healthz`` and another account's submissions are timed against
their own idle timings measured first on the same server; the server's
threads and memory are read from /proc; a hundred clients hang up and the
server's count of waiting requests (``revid_waiting_clients`` on /metrics)
drops by a hundred at once; then every job ends and every client left is
answered. Bounded: one server, WAITERS clients, every step under a deadline.
"""

import json
import statistics
import time
import uuid

import pytest
import requests
from django.conf import settings

from accounts.services import create_api_key
from billing.services import open_account
from removal.models import RemovalJob
from removal.services import fail_job
from tests.conftest import wait_for
from tests.e2e.conftest import assert_clean_log, serve_process
from tests.e2e.load_client import (
    Call,
    LoopThread,
    multipart,
    percentile,
    process_tree,
    rss_and_threads,
)
from tests.images import solid_png
from tests.job_factory import submitted_job

pytestmark = [pytest.mark.e2e]

LONG_POLLS = 300
SYNCHRONOUS = 100
WAITERS = LONG_POLLS + SYNCHRONOUS
HANG_UPS = 100
JOBS = 30
PROBES = 150
SUBMITS = 25
METRICS_TOKEN = uuid.uuid4().hex


def waiting_now(url: str) -> float:
    """The server's own count of requests waiting for a job, all processes."""
    text = requests.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    ).text
    for line in text.splitlines():
        if line.startswith("revid_waiting_clients"):
            return float(line.split()[-1])
    return 0.0


def server_pids(make: int) -> list[int]:
    """The gunicorn master and workers that ``make serve`` (pid ``make``) started."""
    pids = [pid for pid in process_tree(make) if pid != make]
    assert pids, "make serve has no server process"
    return pids


def timings(call, count: int, *, spacing: float = 0.0) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.monotonic()
        response = call()
        samples.append(time.monotonic() - started)
        assert response.status_code in (200, 202), response.text
        time.sleep(spacing)
    return samples


def test_hundreds_of_waiting_clients_leave_health_and_submissions_prompt(
    transactional_db, tmp_path, account
):
    waiter_account = open_account(name="waiters", credits=100_000)
    _, waiter_key = create_api_key(account=waiter_account, name="waiters")
    other = open_account(name="other", credits=100_000)
    _, other_key = create_api_key(account=other, name="other")
    image = solid_png(32, 24)
    env = {
        "WAIT_MAX_PER_KEY": "0",
        "WAIT_MAX_PER_ADDRESS": "0",
        "REMOVAL_RATE_LIMIT": "",
        "REMOVEBG_QUEUE_WAIT_SECONDS": "300",
        "METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "LOG_LEVEL": "WARNING",
    }
    (tmp_path / "metrics").mkdir()
    with serve_process(tmp_path, **env) as (make, url, log_path):
        port = int(url.rsplit(":", 1)[1])

        def healthz():
            return requests.get(f"{url}/healthz", timeout=60)

        def submit():
            return requests.post(
                f"{url}/paid/image/remove/background",
                headers={"x-api-key": other_key},
                files={"file": ("probe.png", image, "image/png")},
                data={"model": "u2netp"},
                timeout=60,
            )

        # Idle: the same calls on the same server, before anyone waits.
        timings(healthz, 10)
        timings(submit, 3)
        idle_health = timings(healthz, PROBES // 3, spacing=0.005)
        idle_submit = timings(submit, SUBMITS // 2)
        idle_rss, idle_threads = rss_and_threads(server_pids(make.pid))

        jobs = [submitted_job(account) for _ in range(JOBS)]
        body, content_type = multipart(
            {"size": "full", "format": "png"}, {"image_file": ("p.png", image, "image/png")}
        )
        clients = LoopThread()
        try:
            polls = [
                Call("127.0.0.1", port, "GET", f"/api/get/{jobs[i % JOBS].id}?wait=30")
                for i in range(LONG_POLLS)
            ]
            synchronous = [
                Call(
                    "127.0.0.1",
                    port,
                    "POST",
                    "/v1.0/removebg",
                    headers={"X-Api-Key": waiter_key, "Content-Type": content_type},
                    body=body,
                )
                for _ in range(SYNCHRONOUS)
            ]
            everyone = polls + synchronous
            started = time.monotonic()
            futures = [clients.start(call.answer(timeout=120)) for call in everyone]
            # Arriving costs each long poll about a /healthz and each remove.bg
            # call about a submit (its upload, checks and charge), as measured
            # idle on this server: the deadline grows with a busy machine.
            arrival = LONG_POLLS * statistics.median(idle_health) + SYNCHRONOUS * statistics.median(
                idle_submit
            )
            wait_for(
                lambda: waiting_now(url) >= WAITERS,
                timeout=25 + 5 * arrival,
                interval=0.2,
                message=f"the server never held {WAITERS} waiting requests",
            )
            arrived = time.monotonic() - started
            assert not any(future.done() for future in futures)

            during_health = timings(healthz, PROBES, spacing=0.005)
            during_submit = timings(submit, SUBMITS)
            rss, threads = rss_and_threads(server_pids(make.pid))
            assert not any(future.done() for future in futures)

            # A hundred clients close their connections mid-wait.
            for call in polls[:HANG_UPS]:
                clients.call(call.hang_up)
            hung_up_at = time.monotonic()
            wait_for(
                lambda: waiting_now(url) <= WAITERS - HANG_UPS,
                timeout=10,
                interval=0.05,
                message="the server kept waiting for clients that had hung up",
            )
            dropped_after = time.monotonic() - hung_up_at

            # Every job ends (as a worker's failure would): everyone left is answered.
            removebg_jobs = list(
                RemovalJob.objects.filter(account=waiter_account, status="pending")
            )
            assert len(removebg_jobs) == SYNCHRONOUS
            ended_at = {}
            for job in jobs + removebg_jobs:
                assert fail_job(job=job, error="Ended by the load test")
                ended_at[str(job.id)] = time.monotonic()
            answers = [future.result(timeout=60) for future in futures[HANG_UPS:]]
        finally:
            clients.close()
    assert_clean_log(log_path)

    # Each client's hand-off: from its job's end (committed, announced) to its answer.
    answered_jobs = [str(jobs[i % JOBS].id) for i in range(HANG_UPS, LONG_POLLS)] + [
        answer.headers["x-task-id"] for answer in answers[LONG_POLLS - HANG_UPS :]
    ]
    handoffs = [
        answer.answered_at - ended_at[job_id]
        for answer, job_id in zip(answers, answered_jobs, strict=True)
    ]
    assert all(answer.status == 200 for answer in answers[: LONG_POLLS - HANG_UPS])
    assert {a.status for a in answers[LONG_POLLS - HANG_UPS :]} == {400}  # failed: remove.bg's 400
    per_waiter = (rss - idle_rss) / WAITERS
    health_bound = max(0.050, 5 * percentile(idle_health, 0.99))
    submit_bound = max(0.200, 5 * percentile(idle_submit, 0.99))
    print(
        f"\n{WAITERS} waiters ({LONG_POLLS} ?wait=30, {SYNCHRONOUS} /v1.0/removebg) held after "
        f"{arrived:.1f} s; /healthz p50/p99 idle {percentile(idle_health, 0.5) * 1000:.1f}/"
        f"{percentile(idle_health, 0.99) * 1000:.1f} ms, during "
        f"{percentile(during_health, 0.5) * 1000:.1f}/{percentile(during_health, 0.99) * 1000:.1f}"
        f" ms (bound {health_bound * 1000:.0f}); submit p50/p99 idle "
        f"{percentile(idle_submit, 0.5) * 1000:.0f}/{percentile(idle_submit, 0.99) * 1000:.0f} ms,"
        f" during {percentile(during_submit, 0.5) * 1000:.0f}/"
        f"{percentile(during_submit, 0.99) * 1000:.0f} ms (bound {submit_bound * 1000:.0f}); "
        f"server threads {idle_threads} idle, {threads} with {WAITERS} waiting; RSS "
        f"{(rss - idle_rss) / 2**20:+.1f} MiB ({per_waiter / 1024:.1f} KiB a waiter); "
        f"{HANG_UPS} hang-ups dropped within {dropped_after * 1000:.0f} ms; the "
        f"{len(answers)} left answered {percentile(handoffs, 0.5) * 1000:.0f} ms (median), "
        f"{max(handoffs) * 1000:.0f} ms (max) after their job ended"
    )
    assert percentile(during_health, 0.99) <= health_bound
    assert percentile(during_submit, 0.99) <= submit_bound
    # No thread per waiter: a few hundred waiters add no more threads than
    # the sync work of a couple of requests at a time would.
    assert threads - idle_threads < 2 * settings.WEB_THREADS
    assert per_waiter < 256 * 1024
    assert max(handoffs) < 15
    # The long polls left were held to their job's end, not to their timeout.
    assert all(
        json.loads(answer.body)["status"] == "failed" for answer in answers[: LONG_POLLS - HANG_UPS]
    )
