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
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.conftest import ROOT, free_port, wait_for
from tests.images import photo_bytes

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
        # The README's local webhook receiver, on loopback.
        OUTBOUND_ALLOWED_NETWORKS="127.0.0.1/32",
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
        self.data_dir = data_dir
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


def the_readmes_webhook_example_works_on_this_port(run: MakeRun, tmp_path: Path) -> None:
    """The README's local receiver gets the event of a job submitted with the
    printed key, and every URL in it is on `make run`'s own PORT."""
    output = run.output()
    key = output.split(KEY_BANNER, 1)[1].split()[0]
    env = plain_environment(run.data_dir)
    secret = subprocess.run(
        [".venv/bin/python", "manage.py", "webhook_secret", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()[-1]
    receiver_port = free_port()
    with (tmp_path / "receiver.log").open("w") as log:
        receiver = subprocess.Popen(
            [".venv/bin/python", "docs/webhook_receiver.py", "--port", str(receiver_port)]
            + ["--once"],
            cwd=ROOT,
            env=env | {"WEBHOOK_SECRET": secret},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: "Listening" in (tmp_path / "receiver.log").read_text(),
            timeout=60,
            message="the receiver never listened",
        )
        base = f"http://127.0.0.1:{run.port}"
        submitted = requests.post(
            f"{base}/paid/image/remove/background",
            headers={"x-api-key": key},
            files={"file": ("astronaut.jpg", photo_bytes("astronaut"), "image/jpeg")},
            data={"model": "u2netp", "webhook_url": f"http://127.0.0.1:{receiver_port}/hook"},
            timeout=30,
        )
        assert submitted.status_code == 202, submitted.text
        task_id = submitted.json()["task_id"]
        receiver.wait(timeout=START_DEADLINE)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    printed = (tmp_path / "receiver.log").read_text()
    image_url = f"{base}/output/{task_id}_output.png"
    assert f"removal.completed {task_id} {image_url}" in printed, printed
    status = requests.get(f"{base}/api/get/{task_id}", timeout=30).json()
    assert status["result"]["image_url"] == image_url


def test_make_run_stops_every_process_on_ctrl_c_and_on_sigterm_and_shows_the_key_once(
    make_run, tmp_path
):
    first = make_run()
    first.wait_until_ready()
    assert first.output().count(KEY_BANNER) == 1
    # Everything follows PORT: the banner, results' and webhooks' URLs; and
    # gunicorn's control socket is in this instance's own data folder.
    assert f"Web login: demo / demo-password   (http://127.0.0.1:{first.port}/)" in (first.output())
    assert (first.data_dir / "gunicorn.ctl").is_socket()
    the_readmes_webhook_example_works_on_this_port(first, tmp_path)
    assert "Make another with: .venv/bin/python manage.py create_account" not in first.output()
    assert_stopped_cleanly(first, signal.SIGINT)

    # A second `make run` reuses the database: the same demo account, no new key.
    second = make_run()
    second.wait_until_ready()
    assert KEY_BANNER not in second.output()
    # The first run's webhook example spent one request's credits.
    left = settings.DEMO_ACCOUNT_CREDITS - settings.REMOVAL_PRICE_CREDITS
    assert f"Demo account exists ({left} credits)" in second.output()
    assert "Make another with: .venv/bin/python manage.py create_account NAME" in second.output()
    assert_stopped_cleanly(second, signal.SIGTERM)


def serve(tmp_path: Path, name: str) -> tuple[subprocess.Popen, int, Path]:
    """`make serve` as an operator starts it, with a data folder of its own."""
    data_dir = tmp_path / name
    port = free_port()
    env = plain_environment(data_dir) | {
        "HOME": str(tmp_path / "home"),  # where gunicorn's default socket would go
        "SECRET_KEY": "two-instances-test-secret-key-0123456789abcdefghijklmnop",
        "STATIC_ROOT": str(tmp_path / f"static-{name}"),
        "WEB_CONCURRENCY": "1",
    }
    env.pop("XDG_RUNTIME_DIR", None)
    log = (tmp_path / f"{name}.log").open("wb")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "serve", "HOST=127.0.0.1", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, port, data_dir / "gunicorn.ctl"


def control(socket_path: Path, command: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn.ctl.cli", "-s", str(socket_path), "-c", command, "-j"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_two_instances_on_one_machine_keep_their_own_control_sockets(tmp_path):
    (tmp_path / "home").mkdir()
    first, first_port, first_socket = serve(tmp_path, "first")
    second, second_port, second_socket = serve(tmp_path, "second")
    try:
        for process, port, socket_path in (
            (first, first_port, first_socket),
            (second, second_port, second_socket),
        ):

            def up(port=port, socket_path=socket_path, process=process) -> bool:
                assert process.poll() is None, "make serve exited early"
                try:
                    requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                except requests.RequestException:
                    return False
                return socket_path.is_socket()

            wait_for(up, timeout=START_DEADLINE, message=f"{socket_path} never appeared")
        # Each socket answers for its own gunicorn, and none went to the home folder.
        assert not (tmp_path / "home" / ".gunicorn").exists()
        first_stats = control(first_socket, "show stats")
        assert first_stats != {}
        assert control(second_socket, "show stats") != {}

        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=60)
        # Stopping the second removed its socket only: the first still answers on its own.
        assert not second_socket.exists()
        assert first_socket.is_socket()
        assert control(first_socket, "show stats") != {}
        assert requests.get(f"http://127.0.0.1:{first_port}/healthz", timeout=5).status_code == 200
    finally:
        for process in (first, second):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
