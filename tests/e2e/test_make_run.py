"""`make run` as a person runs it, stopped as a terminal or a supervisor stops it.

A real `make run` (set-up, honcho, gunicorn, the removal and the webhook
qcluster and their children) starts in its own process group, on a free port
and a fresh DATA_DIR, with a plain environment (no SECRET_KEY, no
DJANGO_DEBUG: the set-up's .env supplies them). Once it serves HTTP, its
worker is warm and both clusters run, the test signals the whole group, as
Ctrl-C in a terminal does (SIGINT) or a supervisor (SIGTERM), and then
requires every process it had seen to be gone, with each qcluster stopped in
order rather than killed. Before the fix, the second signal the old Makefile
trap sent left qcluster deadlocked in its own signal handler.
"""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.conftest import ROOT, free_port

pytestmark = [pytest.mark.e2e]

# Generous: set-up (pip no-op, weights md5, migrate), then honcho, runserver
# and qcluster warming a model, on a busy 2-core machine.
START_DEADLINE = 300
# The bound for a stopped `make run` to leave nothing behind.
STOP_DEADLINE = 15
KEY_BANNER = "API key (shown only this once):"
# The Procfile's two django-q2 clusters: honcho process name -> queue name.
CLUSTERS = {"worker": "revid", "webhooks": "webhooks"}


def plain_environment(data_dir: Path) -> dict[str, str]:
    """What a new user's shell has, plus a data folder of the test's own and
    the weights already installed (so `make models` does not download)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "TMPDIR")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.update(
        DATA_DIR=str(data_dir),
        U2NET_HOME=str(settings.U2NET_HOME),
        # The lighter model: this test is about processes, not masks.
        WARM_MODELS="u2netp",
    )
    return env


def process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time) for every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it just exited
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), fields[0], fields[19])
    return table


def descendants(root: int) -> set[tuple[int, str]]:
    """(pid, start time) of ``root`` and every process below it."""
    table = process_table()
    found = {root}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return {(pid, table[pid][2]) for pid in found if pid in table}


def still_running(processes: set[tuple[int, str]]) -> dict[int, str]:
    """Those of ``processes`` still alive (a zombie has exited), with their command."""
    table = process_table()
    alive = {}
    for pid, started in processes:
        if pid in table and table[pid][2] == started and table[pid][1] not in "ZX":
            try:
                alive[pid] = (Path("/proc") / str(pid) / "cmdline").read_text().replace("\0", " ")
            except OSError:
                continue
    return alive


class MakeRun:
    def __init__(self, data_dir: Path, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "run", "HOST=127.0.0.1", f"PORT={self.port}"],
            cwd=ROOT,
            env=plain_environment(data_dir),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.seen: set[tuple[int, str]] = set()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def serving(self) -> bool:
        try:
            requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
        except requests.RequestException:
            return False
        return True

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"make run exited early:\n{self.output()}"
            self.seen |= descendants(self.process.pid)
            output = self.output()
            if (
                self.serving()
                and "warm in" in output
                and all(f"[{queue}] running." in output for queue in CLUSTERS.values())
            ):
                self.seen |= descendants(self.process.pid)
                return
            time.sleep(0.5)
        raise AssertionError(f"make run never got ready:\n{self.output()}")

    def stop_with(self, sig: int) -> dict[int, str]:
        """Signals the whole group; returns what is still running at the deadline."""
        os.killpg(self.process.pid, sig)
        deadline = time.monotonic() + STOP_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None and not still_running(self.seen):
                break
            time.sleep(0.2)
        return still_running(self.seen)

    def clean_up(self) -> None:
        for pid in still_running(self.seen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def make_run(tmp_path):
    data_dir = tmp_path / "data"
    runs: list[MakeRun] = []

    def start() -> MakeRun:
        run = MakeRun(data_dir, tmp_path / f"make-run-{len(runs)}.log")
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.clean_up()


def assert_stopped_cleanly(run: MakeRun, sig: int) -> None:
    commands = " ".join(
        (Path("/proc") / str(pid) / "cmdline").read_text()
        for pid, _ in run.seen
        if (Path("/proc") / str(pid)).exists()
    )
    for name in ("honcho", "gunicorn", "qcluster"):
        assert name in commands, f"{name} was never seen running:\n{run.output()}"
    assert commands.count("qcluster") >= 2 * len(CLUSTERS), commands  # wrapper + qcluster each
    left = run.stop_with(sig)
    assert left == {}, f"still running {STOP_DEADLINE}s after {sig.name}: {left}\n{run.output()}"
    # Each qcluster stopped its sentinel and workers in order: not killed, not hung.
    lines = run.output().splitlines()
    for process in CLUSTERS:
        stopped = [line for line in lines if f"{process}.1" in line and "has stopped." in line]
        assert stopped, f"{process} did not stop in order:\n{run.output()}"


def test_make_run_stops_every_process_on_ctrl_c_and_on_sigterm_and_shows_the_key_once(
    make_run,
):
    first = make_run()
    first.wait_until_ready()
    assert first.output().count(KEY_BANNER) == 1
    assert "Make another with: .venv/bin/python manage.py create_account" not in first.output()
    assert_stopped_cleanly(first, signal.SIGINT)

    # A second `make run` reuses the database: the same demo account, no new key.
    second = make_run()
    second.wait_until_ready()
    assert KEY_BANNER not in second.output()
    assert "Demo account exists (1000 credits)" in second.output()
    assert "Make another with: .venv/bin/python manage.py create_account NAME" in second.output()
    assert_stopped_cleanly(second, signal.SIGTERM)
