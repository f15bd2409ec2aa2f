"""Doorbells: one process rings, another stops waiting at once."""

import multiprocessing
import time

import pytest
from django.db import connection

from revid.doorbell import Doorbell, between_looks, ring_all


def test_a_rung_bell_ends_the_wait_and_an_unrung_one_times_out(tmp_path):
    bell = Doorbell(tmp_path)
    assert bell.ready()

    assert ring_all(tmp_path) == 1
    started = time.monotonic()
    assert bell.wait(30) is True
    assert time.monotonic() - started < 15
    assert bell.wait(0.05) is False  # the ring was used up
    bell.close()


def test_many_rings_are_answered_by_one_wake(tmp_path):
    bell = Doorbell(tmp_path)
    bell.ready()
    for _ in range(50):
        ring_all(tmp_path)

    assert bell.wait(5) is True
    assert bell.wait(0.05) is False
    bell.close()


def test_a_bell_rings_itself_for_whoever_stops_its_waiter(tmp_path):
    bell = Doorbell(tmp_path)
    other = Doorbell(tmp_path / "elsewhere")
    bell.ready()
    other.ready()

    bell.ring()

    assert bell.wait(30) is True
    assert other.wait(0.05) is False  # only its own
    bell.close()
    other.close()
    Doorbell(tmp_path).ring()  # no bell made yet: nothing to ring, no error


def test_a_dead_processs_bell_is_removed_by_the_next_ring(tmp_path):
    (tmp_path / "999999.sock").touch()  # a leftover nobody listens on

    assert ring_all(tmp_path) == 0
    assert not (tmp_path / "999999.sock").exists()


def test_without_the_folder_nobody_is_rung(tmp_path):
    assert ring_all(tmp_path / "missing") == 0


def _wait_in_child(folder, results):
    bell = Doorbell(folder)
    bell.ready()
    results.put("ready")
    results.put(bell.wait(30))


def test_a_bell_rings_across_processes(tmp_path):
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_wait_in_child, args=(tmp_path, results))
    child.start()
    assert results.get(timeout=30) == "ready"

    assert ring_all(tmp_path) == 1
    assert results.get(timeout=15) is True
    child.join(timeout=10)


SQLITE, POSTGRES = "sqlite", "postgresql"


@pytest.mark.parametrize(
    "vendor, local_wake, bell_works, poll, expected",
    [
        # Every ringer shares this machine: the poll only catches a lost ring.
        (SQLITE, True, True, 0.05, 1.0),
        (SQLITE, True, True, 0.025, 1.0),
        (SQLITE, True, True, 3600.0, 3600.0),  # a longer poll is kept
        # A web or worker elsewhere can't ring: the poll is how it is heard.
        (POSTGRES, True, True, 0.05, 0.05),
        # No bells, or none that works here: polling is all there is.
        (SQLITE, False, True, 0.05, 0.05),
        (SQLITE, True, False, 0.05, 0.05),
    ],
)
def test_between_looks_stretches_the_poll_only_where_every_ringer_reaches_the_bell(
    settings, tmp_path, monkeypatch, vendor, local_wake, bell_works, poll, expected
):
    monkeypatch.setattr(connection, "vendor", vendor)
    settings.LOCAL_WAKE = local_wake
    settings.LOCAL_WAKE_FALLBACK_MS = 1000
    folder = tmp_path / "wake"
    if not bell_works:
        folder.write_text("a file where the bells' folder should be")
    bell = Doorbell(folder)

    assert between_looks(poll, bell) == expected
    bell.close()
