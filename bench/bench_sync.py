"""The synchronous remove.bg door against the async API, and its hand-off.

For each model and photo, interleaved, the same image both ways:

- sync: ``POST /v1.0/removebg`` (``size=full``, ``format=png``), answered
  with the image once the job ends;
- async: ``POST /paid/image/remove/background``, then
  ``GET /api/get/<id>?wait=30`` until it ends, then the download.

The hand-off is the time from the job's completion (``completed_at``, read
afterwards from ``GET /api/get/<id>``) to the client holding the answer:
the image for sync, the final status answer for async (its download comes
after). Target: the sync answer within 100 ms of the job's completion.

`make bench` runs it inside its report (bench/run_bench.py); alone,
``.venv/bin/python bench/bench_sync.py --runs 3`` starts its own service.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ("0.3 MP", "12 MP")
HANDOFF_TARGET_SECONDS = 0.100
WAIT_SECONDS = 30


@dataclass
class SyncRow:
    model: str
    image: str
    sync: list[float] = field(default_factory=list)
    async_: list[float] = field(default_factory=list)
    sync_handoff: list[float] = field(default_factory=list)
    async_handoff: list[float] = field(default_factory=list)


def _completed_at(http: requests.Session, base: str, task_id: str) -> float:
    """The job's completed_at (UTC, microseconds) as a Unix time."""
    payload = http.get(f"{base}/api/get/{task_id}", timeout=30).json()
    stamp = datetime.strptime(payload["completed_at"], "%Y-%m-%dT%H:%M:%S.%f")
    return stamp.replace(tzinfo=UTC).timestamp()


def run_sync(http: requests.Session, base: str, data: bytes, model: str) -> tuple[float, float]:
    """(seconds, hand-off seconds) of one synchronous call."""
    started = time.perf_counter()
    response = http.post(
        f"{base}/v1.0/removebg",
        files={"image_file": ("photo.jpg", data, "image/jpeg")},
        data={"size": "full", "format": "png", "model": model},
        timeout=300,
    )
    held_at = time.time()
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"/v1.0/removebg: {response.status_code} {response.text[:300]}")
    return seconds, held_at - _completed_at(http, base, response.headers["X-Task-Id"])


def run_async(http: requests.Session, base: str, data: bytes, model: str) -> tuple[float, float]:
    """(seconds to the downloaded image, hand-off seconds to the final status)."""
    started = time.perf_counter()
    response = http.post(
        f"{base}/paid/image/remove/background",
        files={"file": ("photo.jpg", data, "image/jpeg")},
        data={"model": model},
        timeout=60,
    )
    if response.status_code != 202:
        raise RuntimeError(f"submit: {response.status_code} {response.text[:300]}")
    task_id = response.json()["task_id"]
    deadline = time.monotonic() + 300
    while True:
        payload = http.get(f"{base}/api/get/{task_id}?wait={WAIT_SECONDS}", timeout=60).json()
        held_at = time.time()
        if payload["status"] == "completed":
            break
        if payload["status"] == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"job {task_id}: {payload}")
    download = http.get(f"{base}/output/{payload['result']['image_filename']}", timeout=60)
    download.raise_for_status()
    seconds = time.perf_counter() - started
    completed_at = datetime.strptime(payload["completed_at"], "%Y-%m-%dT%H:%M:%S.%f")
    return seconds, held_at - completed_at.replace(tzinfo=UTC).timestamp()


def measure_sync(
    base: str, key: str, photos: dict[str, bytes], *, models, runs: int
) -> list[SyncRow]:
    """Interleaved sync and async runs (one untimed pair first) per model and photo."""
    http = requests.Session()
    http.headers["X-Api-Key"] = key
    rows = []
    for model in models:
        for image in IMAGES:
            row = SyncRow(model, image)
            data = photos[image]
            run_sync(http, base, data, model)
            run_async(http, base, data, model)
            for _ in range(runs):
                seconds, handoff = run_sync(http, base, data, model)
                row.sync.append(seconds)
                row.sync_handoff.append(handoff)
                seconds, handoff = run_async(http, base, data, model)
                row.async_.append(seconds)
                row.async_handoff.append(handoff)
            print(
                f"  {model:7s} {image:7s} sync {statistics.median(row.sync):6.3f}s  "
                f"async {statistics.median(row.async_):6.3f}s  hand-off sync "
                f"{statistics.median(row.sync_handoff) * 1000:.0f} ms "
                f"(max {max(row.sync_handoff) * 1000:.0f}), async "
                f"{statistics.median(row.async_handoff) * 1000:.0f} ms",
                flush=True,
            )
            rows.append(row)
    return rows


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms (max {max(values) * 1000:.0f})"


def sync_table_lines(rows: list[SyncRow]) -> list[str]:
    lines = [
        "| model | image | sync `/v1.0/removebg` | async POST + `?wait=` + download "
        "| sync / async | hand-off sync | hand-off async (status) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        sync, async_ = statistics.median(row.sync), statistics.median(row.async_)
        lines.append(
            f"| {row.model} | {row.image} "
            f"| {sync:.3f} s ({min(row.sync):.3f}–{max(row.sync):.3f}) "
            f"| {async_:.3f} s ({min(row.async_):.3f}–{max(row.async_):.3f}) "
            f"| {sync / async_:.2f} | {_ms(row.sync_handoff)} | {_ms(row.async_handoff)} |"
        )
    return lines


def sync_report_lines(rows: list[SyncRow]) -> list[str]:
    """The report's section (markdown lines)."""
    return [
        "## Synchronous remove.bg endpoint",
        "",
        "The same photo both ways, interleaved: sync is `POST /v1.0/removebg` (`size=full`, "
        "`format=png`) answered with the image; async is `POST /paid/image/remove/background`, "
        f"`GET /api/get/<id>?wait={WAIT_SECONDS}`, then the download. The hand-off is the time "
        "from the job's `completed_at` to the client holding the answer (sync: the image; "
        "async: the final status, before its download). Median (max).",
        "",
        *sync_table_lines(rows),
        "",
    ]


def sync_targets(rows: list[SyncRow]) -> list[tuple[str, str, bool]]:
    """(name, measured, passed): the sync answer within 100 ms of the job's completion."""
    handoffs = [value for row in rows for value in row.sync_handoff]
    median = statistics.median(handoffs)
    return [
        (
            f"Sync answer ≤ {HANDOFF_TARGET_SECONDS * 1000:.0f} ms after the job completed "
            "(median)",
            f"{median * 1000:.0f} ms (max {max(handoffs) * 1000:.0f})",
            median <= HANDOFF_TARGET_SECONDS,
        )
    ]


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench.common import IMAGES as PHOTOS
    from bench.common import MODELS, make_photo
    from bench.service import Service

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per cell (default 3)")
    parser.add_argument("--model", action="append", help="model(s) (default: the bench's)")
    args = parser.parse_args()
    models = tuple(args.model or MODELS)
    os.environ["U2NET_HOME"] = str(ROOT / "var" / "models")
    photos = {name: make_photo(photo, size) for name, photo, size in PHOTOS if name in IMAGES}
    workdir = Path(tempfile.mkdtemp(prefix="revid-bench-sync-"))
    service = Service(workdir, {"WARM_MODELS": ",".join(models)})
    try:
        key = service.start()
        print(f"sync vs async, {args.runs} runs each", flush=True)
        rows = measure_sync(service.base, key, photos, models=models, runs=args.runs)
    finally:
        service.stop()
    print("\n".join(sync_table_lines(rows)))
    for name, measured, passed in sync_targets(rows):
        print(f"{name}  {measured}  {'PASS' if passed else 'FAIL'}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
