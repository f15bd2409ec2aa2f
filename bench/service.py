"""(c), (d), (e) of `make bench`: the service over HTTP (a real gunicorn and
qcluster on a throwaway folder) and its clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import BATCH_POLL_SECONDS, CLIENT_POLL_SECONDS, PYTHON, ROOT  # noqa: F401


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """gunicorn + qcluster on a throwaway data folder, stopped on exit."""

    def __init__(self, workdir: Path, extra_env: dict[str, str]):
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        # What the benchmark sets, printed with the defaults it departs from (bench/record.py).
        self.overrides = dict(
            DATA_DIR=str(workdir / "data"),
            U2NET_HOME=str(ROOT / "var" / "models"),
            SECRET_KEY="bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
            DJANGO_DEBUG="0",
            PYTHONUNBUFFERED="1",
            LOG_LEVEL="WARNING",
            # The benchmark sends hundreds of jobs a minute from one key.
            REMOVAL_RATE_LIMIT="",
            **extra_env,
        )
        env.update(self.overrides)
        self.env = env
        self.processes: list[subprocess.Popen] = []
        self.cluster: subprocess.Popen | None = None

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = (self.workdir / log_name).open("wb")
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def start(self) -> str:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput")
        key = (
            self.manage("create_account", "bench", "--credits", "10000000").strip().splitlines()[-1]
        )
        self._spawn(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "revid.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                # As `make run` starts it (the Procfile): one process, whose
                # threads are mostly waiting clients (?wait=, the sync door).
                "--worker-class",
                "gthread",
                "--threads",
                "16",
                "--worker-connections",
                "16",
                "--keep-alive",
                "0",
            ],
            "gunicorn.log",
        )
        self.start_cluster()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base}/api/models", timeout=10).status_code < 500:
                    return key
            except requests.RequestException:  # not listening yet, or still importing
                time.sleep(0.2)
        raise RuntimeError("the web server did not start; see gunicorn.log")

    def start_cluster(self) -> None:
        self.cluster = self._spawn([PYTHON, "manage.py", "qcluster"], "qcluster.log")

    def stop_cluster(self) -> None:
        if self.cluster is not None:
            _stop(self.cluster)
            self.processes.remove(self.cluster)
            self.cluster = None

    def all_pids(self) -> list[int]:
        """Every process of ours: gunicorn's and qcluster's trees."""
        pids = []
        for process in self.processes:
            pids += [process.pid, *_descendants(process.pid)]
        return pids

    def worker_rss_mib(self) -> list[float]:
        """RSS of each qcluster process that holds a model (the workers)."""
        assert self.cluster is not None
        sizes = []
        for pid in _descendants(self.cluster.pid):
            rss = _rss_mib(pid)
            maps = Path(f"/proc/{pid}/maps")
            try:
                holds_model = "onnxruntime" in maps.read_text()
            except OSError:
                continue
            if holds_model and rss:
                sizes.append(rss)
        return sizes

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        except ProcessLookupError:
            pass


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for child in children.get(current, []):
            found.append(child)
            todo.append(child)
    return found


def proc_mib(pid: int, field: str, table: str = "status") -> float:
    """A ``kB`` field of /proc/<pid>/<table> (``VmRSS``, ``VmHWM``; ``Pss`` in smaps_rollup)."""
    try:
        for line in Path(f"/proc/{pid}/{table}").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _rss_mib(pid: int) -> float:
    return proc_mib(pid, "VmRSS")


class Client:
    def __init__(self, base: str, key: str):
        self.base = base
        self.http = requests.Session()
        self.http.headers["x-api-key"] = key

    def submit(self, data: bytes, model: str) -> str:
        response = self.http.post(
            f"{self.base}/paid/image/remove/background",
            files={"file": ("photo.jpg", data, "image/jpeg")},
            data={"model": model},
            timeout=60,
        )
        if response.status_code != 202:
            raise RuntimeError(f"submit: {response.status_code} {response.text[:300]}")
        return response.json()["task_id"]

    def status(self, task_id: str) -> dict:
        return self.http.get(f"{self.base}/api/get/{task_id}", timeout=30).json()

    def wait_and_download(
        self, task_id: str, timeout: float = 300, interval: float = CLIENT_POLL_SECONDS
    ) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            payload = self.status(task_id)
            if payload["status"] == "completed":
                filename = payload["result"]["image_filename"]
                response = self.http.get(f"{self.base}/output/{filename}", timeout=60)
                response.raise_for_status()
                return response.content
            if payload["status"] == "failed":
                raise RuntimeError(f"job {task_id} failed: {payload}")
            time.sleep(interval)
        raise RuntimeError(f"job {task_id} did not complete within {timeout}s")

    def remove(self, data: bytes, model: str) -> bytes:
        return self.wait_and_download(self.submit(data, model))


def run_many(client: Client, images: list[bytes], model: str, concurrency: int) -> float:
    """Submits every image at once, then downloads every result; seconds for all.

    Jobs finish roughly in the order they were queued, so one client waits
    for each in turn: 40 clients polling at once would measure the web
    server's polling load, not the service's throughput.
    """
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        task_ids = list(pool.map(lambda data: client.submit(data, model), images))
    for task_id in task_ids:
        client.wait_and_download(task_id, interval=BATCH_POLL_SECONDS)
    return time.perf_counter() - started
