"""The ORM broker's pusher wakes when a task is enqueued, not at its next poll."""

import threading
import time

import pytest
from django.db import connection
from django_q.brokers import get_broker
from django_q.conf import Conf

from revid import broker as waking


@pytest.fixture
def wake_dir(tmp_path, settings):
    settings.QUEUE_WAKE_DIR = tmp_path / "wake"  # derived from LOCAL_WAKE_DIR
    return settings.QUEUE_WAKE_DIR


@pytest.mark.django_db
def test_the_embedded_default_uses_the_waking_orm_broker():
    assert isinstance(get_broker(), waking.WakingORM)


@pytest.mark.django_db(transaction=True)
def test_a_waiting_pusher_takes_a_task_long_before_its_poll_ends(wake_dir, monkeypatch):
    # A poll far longer than any machine needs to answer a nudge.
    monkeypatch.setattr(Conf, "POLL", 30.0)
    pusher = waking.WakingORM(list_key="wake-test")
    pusher.purge_queue()
    assert waking.doorbell().ready()  # the pusher's bell exists before anyone enqueues
    took: list[float] = []

    def look_until_found():
        started = time.monotonic()
        while time.monotonic() - started < 60:
            if pusher.dequeue():
                took.append(time.monotonic() - started)
                return

    thread = threading.Thread(target=look_until_found)
    thread.start()
    time.sleep(0.2)  # the pusher is now inside its 30 s wait
    waking.WakingORM(list_key="wake-test").enqueue("payload")
    thread.join(timeout=60)

    assert took and took[0] < Conf.POLL / 2
    pusher.purge_queue()


def test_without_a_wake_directory_nobody_is_rung(wake_dir):
    assert waking.wake_pushers() == 0


@pytest.mark.django_db
def test_on_sqlite_an_idle_pusher_looks_again_only_at_the_fallback(wake_dir, settings, monkeypatch):
    """Every enqueue rings on SQLite: the short poll would only cost queries."""
    monkeypatch.setattr(Conf, "POLL", 0.05)
    monkeypatch.setattr(connection, "vendor", "sqlite")
    settings.LOCAL_WAKE_FALLBACK_MS = 1500
    waits: list[float] = []
    monkeypatch.setattr(waking.Doorbell, "wait", lambda self, timeout: waits.append(timeout))
    pusher = waking.WakingORM(list_key="fallback-test")
    pusher.purge_queue()

    assert pusher.dequeue() is None
    assert waits == [1.5]
