"""`make bench`'s waiters rows: 10, 100 and 1,000 clients waiting at once.

For `make run`'s server (the Procfile's ``web`` line: one process) and
`make serve`'s (``WEB_CONCURRENCY`` processes), each on a throwaway SQLite
data folder with no removal worker, so every job stays pending and every
waiting client really waits. For N waiters (three in four ``GET
/api/get/<id>?wait=30`` long polls on N/10 jobs, one in four synchronous
``POST /v1.0/removebg`` calls, all over loopback from one asyncio client,
tests/e2e/load_client.py):

- ``/healthz`` and another account's ``POST /paid/image/remove/background``,
  p50 and p99, while the N wait (targets: 50 ms and 200 ms);
- the server's threads and resident memory, and so the memory a waiter costs;
- how long the server takes to drop a tenth of them that hang up
  (``revid_waiting_clients`` on /metrics);
- the hand-off: from a job's end (``fail_job`` called in a separate
  process: its commit and announcement, as the worker's, included) to its
  waiting clients' answers, for all N, and for one waiter alone (median of
  20).

``--root DIR`` runs another checkout's servers (e.g. the commit before the
ASGI server, to compare the single hand-off: ``--only-handoff``). The
machine's load shows in every number: they are indicative.

Alone: ``.venv/bin/python bench/bench_waiters.py [--counts 10,100] [--no-docs]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_options import insert_before_notes  # noqa: E402
from tests.e2e.load_client import (  # noqa: E402
    Call,
    LoopThread,
    multipart,
    percentile,
    process_tree,
    rss_and_threads,
)

PYTHON = str(ROOT / ".venv" / "bin" / "python")
TOKEN = uuid.uuid4().hex
HEALTH_TARGET, SUBMIT_TARGET = 0.050, 0.200
ENDER = """
import sys, time
from removal.models import RemovalJob
from removal.services import fail_job
print("ready", flush=True)
for line in sys.stdin:
    job = RemovalJob.objects.get(pk=line.strip())
    started = time.monotonic()  # the hand-off includes the end's own commit
    fail_job(job=job, error="Ended by the benchmark")
    print(line.strip(), started, flush=True)
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One of the two servers on a throwaway data folder, plus a job ender."""

    def __init__(self, root: Path, kind: str, workdir: Path):
        self.root, self.kind = root, kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data = workdir / f"{kind}-data"
        (data / "metrics").mkdir(parents=True, exist_ok=True)
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
            "DATA_DIR": str(data),
            "U2NET_HOME": str(ROOT / "var" / "models"),
            "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
            "DJANGO_DEBUG": "1" if kind == "run" else "0",
            "STATIC_ROOT": str(workdir / "static"),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            "REMOVAL_RATE_LIMIT": "",
            "REMOVEBG_QUEUE_WAIT_SECONDS": "600",
            # One client address (loopback) holds them all here.
            "WAIT_MAX_PER_KEY": "0",
            "WAIT_MAX_PER_ADDRESS": "0",
            "METRICS_TOKEN": TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": str(data / "metrics"),
        }
        self.log = (workdir / f"{kind}.log").open("wb")
        self.process: subprocess.Popen | None = None
        self.ender: subprocess.Popen | None = None

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def start(self) -> tuple[str, str]:
        self.manage("migrate", "--noinput")
        keys = tuple(
            self.manage("create_account", name, "--credits", "100000000").strip().splitlines()[-1]
            for name in ("waiters", "other")
        )
        if self.kind == "run":
            web = next(
                line.split(":", 1)[1].strip()
                for line in (self.root / "Procfile").read_text().splitlines()
                if line.startswith("web:")
            )
            command = ["bash", "-c", web]
        else:
            command = ["make", "--no-print-directory", "-o", "venv", "serve"]
        self.process = subprocess.Popen(
            command,
            cwd=self.root,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ender = subprocess.Popen(
            [PYTHON, "manage.py", "shell", "-c", ENDER],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for line in self.ender.stdout:  # after what `shell` prints first
            if line.strip() == "ready":
                break
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return keys
            except requests.RequestException:
                time.sleep(0.3)
        raise RuntimeError(f"the {self.kind} server never answered")

    def end(self, job_ids: list[str]) -> dict[str, float]:
        """Fails the jobs in a separate process; when each end was committed and announced."""
        for job_id in job_ids:
            self.ender.stdin.write(job_id + "\n")
        self.ender.stdin.flush()
        ended = {}
        while len(ended) < len(job_ids):
            line = self.ender.stdout.readline()
            if not line:
                raise RuntimeError("the process that ends jobs died")
            words = line.split()
            if len(words) == 2:
                ended[words[0]] = float(words[1])
        return ended

    def waiting(self) -> float:
        text = requests.get(
            f"{self.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ).text
        for line in text.splitlines():
            if line.startswith("revid_waiting_clients"):
                return float(line.split()[-1])
        return 0.0

    def pids(self) -> list[int]:
        return process_tree(self.process.pid)

    def stop(self) -> None:
        if self.ender is not None:
            self.ender.stdin.close()
            self.ender.wait(timeout=30)
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


@dataclass
class Row:
    server: str
    waiters: int
    held: bool
    health: tuple[float, float] = (0, 0)
    submit: tuple[float, float] = (0, 0)
    threads: tuple[int, int] = (0, 0)
    kib_per_waiter: float = 0
    dropped_ms: float = 0
    handoff: tuple[float, float] = (0, 0)


def submit_job(server: Server, key: str, image: bytes) -> str:
    response = requests.post(
        f"{server.url}/paid/image/remove/background",
        headers={"x-api-key": key},
        files={"file": ("p.png", image, "image/png")},
        data={"model": "u2netp"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    return response.json()["task_id"]


def timed(call, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.monotonic()
        response = call()
        samples.append(time.monotonic() - started)
        assert response.status_code < 300, response.text
    return samples


def p50_p99(samples: list[float]) -> tuple[float, float]:
    return percentile(samples, 0.5), percentile(samples, 0.99)


def measure(server: Server, keys: tuple[str, str], count: int, image: bytes) -> Row:
    waiter_key, other_key = keys
    long_polls = count * 3 // 4
    synchronous = count - long_polls
    jobs = [submit_job(server, waiter_key, image) for _ in range(max(1, count // 10))]
    body, content_type = multipart(
        {"size": "full", "format": "png"}, {"image_file": ("p.png", image, "image/png")}
    )
    pids = server.pids()
    idle_rss, idle_threads = rss_and_threads(pids)
    clients = LoopThread()
    row = Row(server.kind, count, held=False)
    try:
        polls = [
            Call("127.0.0.1", server.port, "GET", f"/api/get/{jobs[i % len(jobs)]}?wait=30")
            for i in range(long_polls)
        ]
        calls = polls + [
            Call(
                "127.0.0.1",
                server.port,
                "POST",
                "/v1.0/removebg",
                headers={"X-Api-Key": waiter_key, "Content-Type": content_type},
                body=body,
            )
            for _ in range(synchronous)
        ]
        futures = [clients.start(call.answer(timeout=600)) for call in calls]
        deadline = time.monotonic() + 25 + count / 20
        while time.monotonic() < deadline and server.waiting() < count:
            time.sleep(0.2)
        row.held = server.waiting() >= count
        if not row.held:
            return row
        row.health = p50_p99(timed(lambda: requests.get(f"{server.url}/healthz", timeout=60), 300))
        row.submit = p50_p99(timed(lambda: requests.post(
            f"{server.url}/paid/image/remove/background",
            headers={"x-api-key": other_key},
            files={"file": ("p.png", image, "image/png")},
            data={"model": "u2netp"},
            timeout=60,
        ), 60))  # fmt: skip
        rss, threads = rss_and_threads(server.pids())
        row.threads = (idle_threads, threads)
        row.kib_per_waiter = (rss - idle_rss) / count / 1024
        hang_ups = max(1, long_polls // 10)
        for call in polls[:hang_ups]:
            clients.call(call.hang_up)
        hung_up = time.monotonic()
        while server.waiting() > count - hang_ups and time.monotonic() < hung_up + 30:
            time.sleep(0.02)
        row.dropped_ms = (time.monotonic() - hung_up) * 1000
        job_of = {i: jobs[i % len(jobs)] for i in range(hang_ups, long_polls)}
        sync_jobs = sync_job_ids(server)
        ended = server.end(jobs + sync_jobs)
        handoffs = []
        for index in range(hang_ups, count):
            answer = futures[index].result(timeout=600)
            job_id = job_of.get(index) or answer.headers.get("x-task-id")
            handoffs.append(answer.answered_at - ended[job_id])
        row.handoff = p50_p99(handoffs)
    finally:
        clients.close()
    return row


def sync_job_ids(server: Server) -> list[str]:
    """The pending jobs of the synchronous calls (read in the server's database)."""
    script = (
        "from removal.models import RemovalJob\n"
        "print('jobs:', *(j.id for j in RemovalJob.objects.filter("
        "status='pending', origin='removebg')))"
    )
    lines = server.manage("shell", "-c", script).splitlines()
    return next(line for line in lines if line.startswith("jobs:")).split()[1:]


def single_handoff(server: Server, key: str, image: bytes, runs: int = 20) -> list[float]:
    """One waiter alone, ``runs`` times: its job's end to its answer."""
    clients = LoopThread()
    samples = []
    try:
        for _ in range(runs):
            job = submit_job(server, key, image)
            call = Call("127.0.0.1", server.port, "GET", f"/api/get/{job}?wait=30")
            future = clients.start(call.answer(timeout=60))
            deadline = time.monotonic() + 10
            while server.waiting() < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            ended = server.end([job])[job]
            samples.append(future.result(timeout=60).answered_at - ended)
    finally:
        clients.close()
    return samples


def markdown(rows: list[Row], single: dict[str, list[float]], note: str) -> str:
    ms = lambda pair: f"{pair[0] * 1000:.0f} / {pair[1] * 1000:.0f}"  # noqa: E731
    lines = [
        "| server | waiters | `/healthz` p50 / p99 ms | other account's submit p50 / p99 ms "
        "| threads idle → waiting | memory per waiter | hang-ups dropped in | "
        "hand-off p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        server = f"`make {row.server}`"
        if not row.held:
            lines.append(f"| {server} | {row.waiters} | not held | | | | | |")
            continue
        lines.append(
            f"| {server} | {row.waiters} | {ms(row.health)} | {ms(row.submit)} | "
            f"{row.threads[0]} → {row.threads[1]} | {row.kib_per_waiter:.0f} KiB | "
            f"{row.dropped_ms:.0f} ms | {ms(row.handoff)} |"
        )
    lines.append("")
    for name, samples in single.items():
        lines.append(
            f"One waiter alone, {name}: hand-off median {statistics.median(samples) * 1000:.1f} ms,"
            f" max {max(samples) * 1000:.1f} ms over {len(samples)}."
        )
    return (
        "## Waiting clients\n\n"
        "`bench/bench_waiters.py`: N clients wait at once (3/4 `?wait=30` long polls, 1/4 "
        "synchronous `/v1.0/removebg`), no worker running, all over loopback; targets while they "
        f"wait: `/healthz` p99 ≤ {HEALTH_TARGET * 1000:.0f} ms, another account's submit p99 ≤ "
        f"{SUBMIT_TARGET * 1000:.0f} ms. The hand-off is from a job's end (`fail_job` called "
        "in another process; its commit and announcement included) to each waiting client's "
        "answer. "
        f"{note}\n\n" + "\n".join(lines) + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="10,100,1000")
    parser.add_argument("--servers", default="run,serve")
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose servers to run")
    parser.add_argument("--only-handoff", action="store_true", help="one waiter's hand-off only")
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    from tests.images import solid_png

    image = solid_png(32, 24)
    counts = [int(count) for count in args.counts.split(",") if count]
    rows, single = [], {}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-waiters-") as tmp:
        for kind in args.servers.split(","):
            server = Server(Path(args.root), kind, Path(tmp))
            try:
                keys = server.start()
                single[f"`make {kind}`"] = single_handoff(server, keys[0], image)
                print(f"make {kind}: one waiter's hand-off median "
                      f"{statistics.median(single[f'`make {kind}`']) * 1000:.1f} ms")  # fmt: skip
                if args.only_handoff:
                    continue
                # Warm-up, not reported: first requests fill caches and the heap.
                measure(server, keys, 40, image)
                for count in counts:
                    row = measure(server, keys, count, image)
                    rows.append(row)
                    print(json.dumps(row.__dict__))
            finally:
                server.stop()
    busy = load >= os.cpu_count() / 2
    note = f"Measured on this machine at a load average of {load:.1f} ({os.cpu_count()} cores, " + (
        "other work running): the numbers are indicative." if busy else "nothing else running)."
    )
    text = markdown(rows, single, note)
    print(text)
    if not args.no_docs and not args.only_handoff:
        report = Path(args.docs) / "benchmarks.md"
        if report.exists():
            insert_before_notes(report, text)
        else:
            report.write_text("# Benchmarks\n\n" + text)
        print(f"Wrote the waiters rows into {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
