"""A web server stopped during a deploy: the load balancer's probe fails at
once, and a client already waiting for its job still gets its answer.

`make serve` (gunicorn with revid/gunicorn_conf.py) gets SIGTERM, as every
process of its group, while it holds a synchronous remove.bg request that
waits for a worker (none runs, so the door gives up after
REMOVEBG_QUEUE_WAIT_SECONDS, fails and refunds the job, and answers 429).
"""

import os
import signal
import threading
import time

import pytest
import requests

from billing.models import LedgerEntry
from removal.models import RemovalJob
from tests.conftest import wait_for
from tests.e2e.conftest import serve_process
from tests.images import solid_png

pytestmark = [pytest.mark.e2e]

QUEUE_WAIT = 4  # REMOVEBG_QUEUE_WAIT_SECONDS for the server under test


@pytest.fixture
def serve(transactional_db, tmp_path):
    with serve_process(
        tmp_path,
        path="/readyz",
        WEB_CONCURRENCY="1",
        REMOVEBG_QUEUE_WAIT_SECONDS=str(QUEUE_WAIT),
    ) as served:
        yield served


def probe(url: str) -> int | str:
    """What a load balancer's health check sees: a status, or no answer."""
    try:
        return requests.get(f"{url}/readyz", timeout=1).status_code
    except requests.ConnectionError:
        return "refused"
    except requests.Timeout:
        return "no answer"


def test_sigterm_fails_readiness_at_once_and_lets_a_waiting_request_finish(serve, account, api_key):
    process, url, log_path = serve
    answers: list = []

    def synchronous_removal():
        try:
            answers.append(
                requests.post(
                    f"{url}/v1.0/removebg",
                    headers={"X-Api-Key": api_key},
                    files={"image_file": ("a.png", solid_png(), "image/png")},
                    timeout=120,
                )
            )
        except requests.RequestException as exc:
            answers.append(exc)

    client = threading.Thread(target=synchronous_removal, daemon=True)
    client.start()
    # The request is in the view, charged and waiting, once its job exists.
    wait_for(lambda: RemovalJob.objects.exists(), timeout=30, interval=0.05)
    job = RemovalJob.objects.get()
    assert probe(url) == 200

    os.killpg(process.pid, signal.SIGTERM)  # every process of `make serve`
    signalled = time.monotonic()
    # Readiness fails at once: the listening socket is closed (or a worker
    # that still answers says 503), well before the waiting client is done.
    wait_for(lambda: probe(url) != 200, timeout=QUEUE_WAIT / 2, interval=0.05)
    assert client.is_alive(), "the waiting request ended before the probe failed"

    client.join(timeout=60)
    assert answers, "the waiting client never got an answer"
    response = answers[0]
    assert isinstance(response, requests.Response), f"cut off: {response!r}"
    # The door's own answer after its queue wait, not a dropped connection.
    assert response.status_code == 429, response.text
    assert response.json()["errors"][0]["code"] == "service_busy"
    assert time.monotonic() - signalled < QUEUE_WAIT + 30
    job.refresh_from_db()
    assert job.status == RemovalJob.Status.FAILED
    assert sorted(LedgerEntry.objects.filter(job=job).values_list("kind", flat=True)) == [
        "charge",
        "refund",
    ]

    process.wait(timeout=60)
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "Handling signal: term" in log


def test_gunicorns_graceful_stop_is_the_settings_longest_request(settings):
    from revid import gunicorn_conf

    assert gunicorn_conf.graceful_timeout == settings.WEB_GRACEFUL_TIMEOUT
    assert gunicorn_conf.graceful_timeout >= settings.LONGEST_REQUEST_SECONDS
    assert gunicorn_conf.worker_class == "revid.server.Worker"
    assert not hasattr(gunicorn_conf, "max_requests")  # recycling would cut waiters
