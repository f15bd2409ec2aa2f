"""Before and after a change to how the server runs: single requests and throughput.

Issue 24 moved the web server from gunicorn's threads (WSGI) to an event
loop (ASGI). This runs `make run`'s web and worker lines (its Procfile) from
two checkouts in turn, A B B A, on the same machine with the same client:

- single requests, one at a time: the seed API (POST, `?wait=`, download)
  at 0.3, 1 and 12 MP, and `/v1.0/removebg` at 1 MP;
- throughput: a mixed 0.3 / 1 / 12 MP queue sent by 8 client threads.

    python bench/bench_serving_ab.py --before /path/to/old/checkout [--after .]

A benchmark, not a test: it prints medians per checkout and the ratio
after / before, and (without --no-docs) writes them into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_options import insert_before_notes  # noqa: E402
from bench.bench_waiters import Server  # noqa: E402
from bench.common import IMAGES, make_photo  # noqa: E402
from bench.peer import Ours  # noqa: E402

MODEL = "u2net"
CLIENTS = 8


class WebAndWorker(Server):
    """``Server("run")`` (the Procfile's web line) plus the Procfile's worker line."""

    def __init__(self, root: Path, workdir: Path):
        super().__init__(root, "run", workdir)
        self.env.update(DJANGO_DEBUG="0", WARM_MODELS=MODEL)
        self.worker: subprocess.Popen | None = None

    def start(self) -> str:
        keys = super().start()
        worker = next(
            line.split(":", 1)[1].strip()
            for line in (self.root / "Procfile").read_text().splitlines()
            if line.startswith("worker:")
        )
        self.worker = subprocess.Popen(
            ["bash", "-c", worker],
            cwd=self.root,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return keys[0]

    def stop(self) -> None:
        if self.worker is not None:
            os.killpg(self.worker.pid, 15)
            try:
                self.worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, 9)
        super().stop()


def one_pass(root: Path, photos: dict[str, bytes], runs: int, jobs: int) -> dict[str, list[float]]:
    """Every measurement once against ``root``'s server: seconds per request, and per queue."""
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        server = WebAndWorker(root, Path(tmp))
        try:
            key = server.start()
            ours = Ours(server.url, key, Path(tmp) / "unused.sqlite3")
            ours.remove_waiting(photos["1 MP"], MODEL)  # warm-up, not counted
            for name, data in photos.items():
                for _ in range(runs):
                    started = time.perf_counter()
                    ours.remove_waiting(data, MODEL)
                    samples.setdefault(f"seed API, {name}", []).append(
                        time.perf_counter() - started
                    )
            for _ in range(runs):
                started = time.perf_counter()
                ours.remove_sync(photos["1 MP"], MODEL)
                samples.setdefault("/v1.0/removebg, 1 MP", []).append(time.perf_counter() - started)
            queue = [list(photos.values())[n % len(photos)] for n in range(jobs)]
            sessions: dict[int, requests.Session] = {}

            def send(data: bytes) -> None:
                http = sessions.setdefault(threading.get_ident(), ours.session())
                ours.remove_waiting(data, MODEL, http=http)

            started = time.perf_counter()
            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(send, queue))
            samples[f"throughput, {jobs} mixed jobs (s)"] = [time.perf_counter() - started]
        finally:
            server.stop()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the checkout before the change")
    parser.add_argument("--after", default=str(ROOT), help="the checkout after (default: this)")
    parser.add_argument("--runs", type=int, default=5, help="requests per cell per pass")
    parser.add_argument("--jobs", type=int, default=24, help="jobs in the throughput queue")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    roots = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    photos = {name: make_photo(photo, size) for name, photo, size in IMAGES}
    load = os.getloadavg()[0]
    results: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for which in ("before", "after", "after", "before"):
        print(f"pass: {which} ({roots[which]})", flush=True)
        for cell, values in one_pass(roots[which], photos, args.runs, args.jobs).items():
            results[which].setdefault(cell, []).extend(values)
            print(f"  {cell}: {statistics.median(values):.3f} s", flush=True)
    lines = [
        "| measurement | before s | after s | after / before |",
        "|---|---|---|---|",
    ]
    for cell, before in results["before"].items():
        b, a = statistics.median(before), statistics.median(results["after"][cell])
        lines.append(f"| {cell} | {b:.3f} | {a:.3f} | {a / b:.2f} |")
    section = (
        "## Before and after the ASGI server\n\n"
        "`bench/bench_serving_ab.py`: `make run`'s web and worker (each checkout's Procfile) "
        f"from two checkouts in turn (A B B A), model {MODEL}, medians of "
        f"{2 * args.runs} requests per cell one at a time, throughput with {CLIENTS} client "
        f"threads (median of two passes). Load average {load:.1f} at the start "
        f"({os.cpu_count()} cores). Before: `{_describe(roots['before'])}`; after: "
        f"`{_describe(roots['after'])}`.\n\n" + "\n".join(lines) + "\n"
    )
    print()
    print(section)
    if not args.no_docs:
        insert_before_notes(ROOT / "docs" / "benchmarks.md", section)
    return 0


def _describe(root: Path) -> str:
    try:
        return subprocess.run(
            ["git", "log", "-1", "--format=%h %s"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()[:60]
    except (OSError, subprocess.CalledProcessError):
        return str(root)


if __name__ == "__main__":
    sys.exit(main())
