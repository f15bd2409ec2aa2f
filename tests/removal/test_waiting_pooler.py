"""LISTEN/NOTIFY that cannot work refuses loudly instead of degrading silently.

Behind PgBouncer in transaction mode, LISTEN runs on a server connection
that goes back to the pool: the workers' NOTIFY never arrives. The listener
proves, before it counts as listening, that it hears a NOTIFY sent the way
workers send them (through the Django connection). Here it listens on
another database than the one notifications are sent in (NOTIFY does not
cross databases), which fails the same way.
"""

import logging
import time
import uuid

import pytest
from django.conf import settings as django_settings
from django.db import connection

from removal import wait_listeners, waiting
from tests.job_factory import submitted_job

pytestmark = pytest.mark.skipif(
    "postgresql" not in django_settings.DATABASES["default"]["ENGINE"],
    reason="LISTEN/NOTIFY needs the suite on PostgreSQL (DATABASE_URL=postgres://..., as CI runs)",
)


@pytest.fixture
def postgres_wait(settings, transactional_db):
    settings.WAIT_BACKEND = "postgres"
    settings.WAIT_CHANNEL = f"revid_test_{uuid.uuid4().hex}"
    return settings


def other_database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/postgres"


def listener_started(server_loop, timeout: float) -> bool:
    async def start():
        return await waiting._listener("postgres").ensure_started(timeout=timeout)

    return server_loop.run(start())


def test_a_listener_that_cannot_hear_notify_refuses_with_an_error_and_waiters_still_finish(
    postgres_wait, account, caplog, monkeypatch, server_loop
):
    monkeypatch.setattr(wait_listeners, "PROBE_SECONDS", 1.0)
    postgres_wait.WAIT_DATABASE_URL = other_database_url()  # hears nothing sent here
    job = submitted_job(account)

    with caplog.at_level(logging.ERROR, logger="removal.waiting"):
        started = time.monotonic()
        waiter = server_loop.start(waiting.wait_for_job(job_id=job.id, timeout=30))
        assert not listener_started(server_loop, timeout=5)  # never counts as listening
        refusal = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert refusal, "the listener degraded without a word"
        message = refusal[0].getMessage()
        assert "transaction pooler" in message and "WAIT_DATABASE_URL" in message

        # Waiters are not lost meanwhile: the sweep looks for them.
        assert job.mark_processing()
        assert job.mark_completed(output_size=1, elapsed_seconds=0.1, expires_at=job.expires_at)
        waiting.announce_job_finished(job_id=job.id)
        assert waiter.result(timeout=10) is True
        assert time.monotonic() - started < 10


def test_a_listener_on_the_jobs_database_passes_its_probe(postgres_wait, account, server_loop):
    assert listener_started(server_loop, timeout=10)


def test_auto_never_picks_listen_through_a_transaction_pooler(settings, db):
    settings.WAIT_BACKEND = "auto"
    settings.REDIS_URL = ""
    settings.DB_TRANSACTION_POOLER = True
    settings.WAIT_DATABASE_URL = ""
    assert waiting.backend_name() == "poll"
    settings.WAIT_DATABASE_URL = other_database_url()
    assert waiting.backend_name() == "postgres"
    settings.DB_TRANSACTION_POOLER = False
    settings.WAIT_DATABASE_URL = ""
    assert waiting.backend_name() == "postgres"
