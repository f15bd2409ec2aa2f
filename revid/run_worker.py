"""Runs django-q2 clusters so that a stop request drains them instead of killing jobs.

Every documented way to run a worker goes through here: `make worker`,
`make webhook-worker`, `make run` (the Procfile), the systemd units in
docs/systemd/ and a container's command.

Why a wrapper: django-q2 cannot take a SIGTERM sent to all of its
processes at once, which is what a supervisor that signals the whole
process group does (honcho, a terminal's Ctrl-C, `kill -- -PGID`). Its
sentinel and worker processes die at once on SIGTERM (the running job is
lost, refunded only after REMOVAL_JOB_TIMEOUT + REMOVAL_STALE_GRACE), and
the main process, stopping them, can deadlock on the stop event one of them
held (measured: a group SIGTERM left qcluster hung 5 times out of 5; a
SIGTERM to the main process alone stopped it in under a second, every
time). So each cluster runs as ``manage.py qcluster`` in a process group of
its own, and any number of SIGTERM/SIGINT here turn into:

1. the drain flag (a file named in REVID_DRAIN_FILE) is created: a worker
   that takes a task from now on hands it back to the queue instead of
   running it (``draining()``, checked by the task functions), so the tasks
   a cluster had already taken off the broker are not lost (Redis cannot
   redeliver them) nor run on borrowed time;
2. exactly one SIGTERM to each qcluster's main process, which stops taking
   tasks, lets its workers finish the ones they are running and stops its
   processes in order;
3. after WORKER_STOP_GRACE_SECONDS, SIGKILL to whatever is left (the reaper
   fails and refunds a job killed there).

systemd signals every process of the unit unless told otherwise: the units
in docs/systemd/ set ``KillMode=mixed`` (SIGTERM to this process only,
SIGKILL to all after TimeoutStopSec, which must exceed the grace).

If a cluster exits on its own (a crash), the others are stopped the same
way and this exits with its status, so the supervisor restarts the lot.

Usage: ``python -m revid.run_worker [--housekeeping]``: the cluster named by
Q_CLUSTER_NAME (the removal cluster when unset) and, with --housekeeping,
the one-process cluster that runs the reaper and the expiry beside it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType

MANAGE_PY = Path(__file__).resolve().parent.parent / "manage.py"
DRAIN_ENV = "REVID_DRAIN_FILE"
HOUSEKEEPING = "housekeeping"


def draining() -> bool:
    """True in a worker whose run_worker has been asked to stop.

    A task function that sees it hands its task back to the queue rather
    than start it: the cluster is going away and will not finish it.
    """
    path = os.environ.get(DRAIN_ENV)
    return bool(path) and os.path.exists(path)


def stop_grace() -> int:
    """WORKER_STOP_GRACE_SECONDS from the settings module (no Django set-up:
    this process runs no task and needs no app)."""
    import importlib

    module = os.environ.get("DJANGO_SETTINGS_MODULE", "revid.settings")
    return importlib.import_module(module).WORKER_STOP_GRACE_SECONDS


def _start(cluster: str | None, drain_file: str) -> subprocess.Popen:
    env = dict(os.environ, **{DRAIN_ENV: drain_file})
    if cluster is None:
        env.pop("Q_CLUSTER_NAME", None)
    else:
        env["Q_CLUSTER_NAME"] = cluster
    return subprocess.Popen(
        [sys.executable, str(MANAGE_PY), "qcluster"], env=env, start_new_session=True
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m revid.run_worker")
    parser.add_argument(
        "--housekeeping",
        action="store_true",
        help="also run the housekeeping cluster (the reaper and the expiry)",
    )
    options = parser.parse_args(argv)
    grace = stop_grace()
    main_cluster = os.environ.get("Q_CLUSTER_NAME") or None
    clusters = [main_cluster]
    if options.housekeeping and main_cluster != HOUSEKEEPING:
        clusters.append(HOUSEKEEPING)

    drain_file = os.path.join(tempfile.gettempdir(), f"revid-drain-{os.getpid()}-{uuid.uuid4()}")
    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    children = [_start(cluster, drain_file) for cluster in clusters]
    try:
        returncode = _supervise(children, drain_file, grace, lambda: stop_requested)
    finally:
        Path(drain_file).unlink(missing_ok=True)
    return returncode


def _supervise(children, drain_file: str, grace: int, stop_requested) -> int:
    crashed: subprocess.Popen | None = None
    while not stop_requested():
        crashed = next((child for child in children if child.poll() is not None), None)
        if crashed is not None:
            print(
                f"run_worker: qcluster {crashed.pid} exited ({crashed.returncode}); "
                "stopping the others",
                file=sys.stderr,
                flush=True,
            )
            break
        time.sleep(0.2)
    # Drain: hand back what is taken but not started, then one SIGTERM each
    # (a second one can catch django-q2 mid-stop).
    Path(drain_file).touch()
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(child.poll() is None for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    for child in children:
        if child.poll() is None:
            print(
                f"run_worker: qcluster {child.pid} still running {grace} s after SIGTERM "
                "(WORKER_STOP_GRACE_SECONDS); killing it",
                file=sys.stderr,
                flush=True,
            )
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    if crashed is not None:
        return _exit_status(crashed.returncode) or 1
    return max(_exit_status(child.returncode) for child in children)


def _exit_status(returncode: int) -> int:
    return returncode if returncode >= 0 else 128 - returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
