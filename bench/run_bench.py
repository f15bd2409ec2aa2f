"""`make bench`: is the service faster than calling rembg, with the same masks?

One run, the same images, three ways:

(a) ``rembg.remove()`` called directly (one ``new_session`` per model);
(b) our ``imaging.pipeline.remove_background`` with that same session;
(c) the whole service: a real gunicorn and a real ``manage.py qcluster`` on a
    throwaway SQLite database; POST, poll, download over HTTP.

Then the synchronous remove.bg endpoint against the async API
(bench/bench_sync.py). Plus (d) throughput with 40 jobs queued at once against a serial loop of
(a), (e) the RSS of the worker processes after 10 and after 200 jobs, and
(f) mask parity on small and thin subjects: scikit-image photos placed in
12 MP frames at under 5 % of the frame (the test suite's, tests/images.py),
where a shortcut in the resize to the model's input shows first.
(g) each output option at 1 and 12 MP against rembg's closest call
(``bench/bench_options.py``; ``--no-options`` skips it); (h)
side by side with `rembg s`, rembg's own HTTP server, installed by the
benchmark into bench/out/rembg-venv (bench/peer.py): single requests as a
user waits, throughput with 8 clients, peak RSS, PNG bytes, our stage split;
and (i) the opt-in engines of ``MODEL_ENGINE`` (``bench/bench_engines.py``;
``--no-engines`` skips it): speed and mask drift, and bf16 and mixed
precision as services against `rembg s`.
``--quick`` runs (h) alone on small images with few runs (a few minutes).
It prints a table with each target PASS/FAIL and writes docs/benchmarks.md
and docs/benchmarks.png. A benchmark, not a test: it never fails a build.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import record  # noqa: E402
from bench.bench_sync import measure_sync, sync_report_lines, sync_targets  # noqa: E402
from bench.chart import draw_chart  # noqa: E402
from tests.images import SMALL_SUBJECTS, small_subject_jpeg  # noqa: E402

PYTHON = sys.executable
MODELS = ("u2net", "u2netp")
# name, scikit-image photo, size: made by LANCZOS-resizing, saved as JPEG q90.
IMAGES = (
    ("0.3 MP", "coffee", (672, 448)),
    ("1 MP", "astronaut", (1024, 1024)),
    ("12 MP", "astronaut", (3464, 3464)),
)
# How often the latency client asks for status: often enough that polling
# adds little to the measured latency, rarely enough that its requests do
# not steal much CPU from the worker on a 2-core machine.
CLIENT_POLL_SECONDS = 0.05
# Many jobs at once are awaited in submission order at this pace.
BATCH_POLL_SECONDS = 0.1


def make_photo(photo: str, size: tuple[int, int]) -> bytes:
    import skimage.data

    img = Image.fromarray(getattr(skimage.data, photo)()).convert("RGB")
    img = img.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def alpha_of(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    img.load()
    return np.asarray(img.convert("RGBA"))[..., 3]


def agreement(reference: bytes, candidate: bytes) -> tuple[float, float]:
    """(IoU of alpha > 127, mean |alpha difference| in 0..255) against the reference."""
    ref, got = alpha_of(reference), alpha_of(candidate)
    if ref.shape != got.shape:
        return 0.0, 255.0
    ref_fg, got_fg = ref > 127, got > 127
    union = np.logical_or(ref_fg, got_fg).sum()
    iou = 1.0 if union == 0 else float(np.logical_and(ref_fg, got_fg).sum() / union)
    return iou, float(np.abs(ref.astype(np.int16) - got.astype(np.int16)).mean())


@dataclass
class Series:
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def spread(self) -> str:
        return f"{min(self.seconds):.3f}–{max(self.seconds):.3f}"


@dataclass
class Row:
    model: str
    image: str
    pixels: int
    rembg: Series = field(default_factory=Series)
    pipeline: Series = field(default_factory=Series)
    service: Series = field(default_factory=Series)
    pipeline_agreement: tuple[float, float] = (0.0, 255.0)
    service_agreement: tuple[float, float] = (0.0, 255.0)


# --- (a) and (b): in this process ---------------------------------------------


def measure_in_process(rows: list[Row], photos: dict[str, bytes], runs: int) -> dict:
    from rembg import new_session, remove

    from imaging import pipeline

    references: dict[tuple[str, str], bytes] = {}
    for model in MODELS:
        session = new_session(model, providers=["CPUExecutionProvider"])
        # Both paths run once untimed: the first run allocates ORT's arena.
        remove(photos["0.3 MP"], session=session)
        pipeline.remove_background(photos["0.3 MP"], session, max_pixels=10**9)
        for row in (r for r in rows if r.model == model):
            data = photos[row.image]
            ours = b""
            # Interleaved, so load from anything else on the machine hits both.
            for _ in range(runs):
                started = time.perf_counter()
                reference = remove(data, session=session)
                row.rembg.seconds.append(time.perf_counter() - started)
                started = time.perf_counter()
                ours = pipeline.remove_background(data, session, max_pixels=10**9).data
                row.pipeline.seconds.append(time.perf_counter() - started)
            references[(model, row.image)] = reference
            row.pipeline_agreement = agreement(reference, ours)
            print(
                f"  {model:7s} {row.image:7s} rembg {row.rembg.median:6.3f}s  "
                f"pipeline {row.pipeline.median:6.3f}s  "
                f"IoU {row.pipeline_agreement[0]:.4f}  MAD {row.pipeline_agreement[1]:.3f}",
                flush=True,
            )
    return references


def measure_small_subjects() -> list[dict]:
    """(f): our mask against ``rembg.remove()``'s on each small or thin subject, per model."""
    from rembg import new_session, remove

    from imaging import pipeline

    results = []
    for model in MODELS:
        session = new_session(model, providers=["CPUExecutionProvider"])
        for label, *_ in SMALL_SUBJECTS:
            data = small_subject_jpeg(label)
            reference = remove(data, session=session)
            ours = pipeline.remove_background(data, session, max_pixels=10**9).data
            iou, mad = agreement(reference, ours)
            subject = float((alpha_of(reference) > 127).mean())
            results.append(
                {"model": model, "image": label, "subject": subject, "iou": iou, "mad": mad}
            )
            print(
                f"  {model:7s} {label:15s} subject {subject * 100:4.1f} % of the frame  "
                f"IoU {iou:.4f}  MAD {mad:.3f}",
                flush=True,
            )
    return results


def parity_targets(parity: list[dict]) -> list[Target]:
    worst_iou = min(r["iou"] for r in parity)
    worst_mad = max(r["mad"] for r in parity)
    return [
        Target(
            "Masks, small and thin subjects at 12 MP: IoU ≥ 0.99",
            f"min {worst_iou:.4f}",
            worst_iou >= 0.99,
        ),
        Target(
            "Masks, small and thin subjects at 12 MP: mean abs Δalpha ≤ 1/255",
            f"max {worst_mad:.3f}/255",
            worst_mad <= 1.0,
        ),
    ]


def parity_lines(parity: list[dict]) -> list[str]:
    return [
        "| model | image (4000×3000) | subject's share of the frame | mask IoU | mean abs Δalpha |",
        "|---|---|---|---|---|",
        *[
            f"| {r['model']} | {r['image']} | {r['subject'] * 100:.1f} % | {r['iou']:.4f} "
            f"| {r['mad']:.3f} |"
            for r in parity
        ],
    ]


def serial_rembg_loop(model: str, images: list[bytes]) -> float:
    from rembg import new_session, remove

    session = new_session(model, providers=["CPUExecutionProvider"])
    remove(images[0], session=session)
    started = time.perf_counter()
    for data in images:
        remove(data, session=session)
    return time.perf_counter() - started


# --- (c), (d), (e): the service over HTTP -----------------------------------


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


# --- (h) side by side with `rembg s` ----------------------------------------

# (label, photo, size) for (g); the full run adds 4 MP to the benchmark's three.
PEER_IMAGES = (
    ("0.3 MP", "coffee", (672, 448)),
    ("1 MP", "astronaut", (1024, 1024)),
    ("4 MP", "coffee", (2448, 1632)),
    ("12 MP", "astronaut", (3464, 3464)),
)
PEER_QUICK_IMAGES = PEER_IMAGES[:2]


def measure_side_by_side(service: Service, key: str, quick: bool, runs: int, jobs: int) -> dict:
    from bench import peer as peers

    images = PEER_QUICK_IMAGES if quick else PEER_IMAGES
    photos = {name: make_photo(photo, size) for name, photo, size in images}
    rival = peers.Peer(service.workdir, free_port(), log=_log)
    ours = peers.Ours(service.base, key, service.workdir / "data" / "db.sqlite3")
    ours_pids = service.all_pids
    try:
        print("(h) side by side with `rembg s`", flush=True)
        rival.start(MODELS)
        with (
            peers.RssSampler(ours_pids) as ours_rss,
            peers.RssSampler(rival.pids) as peer_rss,
        ):
            single = peers.single_requests(rival, ours, photos, MODELS, runs, log=_log)
        # The mixed queue: 0.3, 1 and 12 MP photos in turn (quick: 0.3 and 1 MP).
        mix = [photos[images[i % len(images)][0]] for i in range(jobs)]
        if not quick:
            mix = [photos[("0.3 MP", "1 MP", "12 MP")[i % 3]] for i in range(jobs)]
        print(
            f"  throughput: {jobs} u2net photos, 8 client threads; rembg s as run and capped "
            f"to {peers.CORES} in flight; two rounds, the second in reverse order",
            flush=True,
        )
        rate = peers.throughput(rival, ours, ours_pids, mix, "u2net", clients=8, log=_log)
        memory = {
            # Single requests and throughput alike; the capped peer's on its own.
            "ours": max(ours_rss.peak, rate["ours"]["peak_mib"]),
            "peer": max(peer_rss.peak, rate["peer"]["peak_mib"]),
            "peer_capped": rate["peer_capped"]["peak_mib"],
            "ours_pss": ours_rss.pss_at_end,
            "peer_pss": peer_rss.pss_at_end,
        }
        _log(
            f"  peak RSS: ours {memory['ours']:.0f} MiB, rembg s {memory['peer']:.0f} MiB "
            f"(capped: {memory['peer_capped']:.0f} MiB); PSS after the single requests: ours "
            f"{memory['ours_pss']:.0f} MiB, rembg s {memory['peer_pss']:.0f} MiB"
        )
    finally:
        rival.stop()
    return {
        "single": single,
        "throughput": rate,
        "memory": memory,
        "jobs": jobs,
        "mix": "0.3 / 1 MP" if quick else "0.3 / 1 / 12 MP",
    }


def _log(line: str) -> None:
    print(line, flush=True)


def peer_targets(side: dict) -> list[Target]:
    rows = side["single"]
    worst_wait = max(r["wait"] / r["peer"] for r in rows)
    worst_sync = max(r["sync"] / r["peer"] for r in rows)
    handoff_median = max(r["stages"].get("handoff", 0.0) for r in rows)
    handoff_max = max(r.get("handoff_max", 0.0) for r in rows)
    worst_bytes = max(r["ours_bytes"] / r["peer_bytes"] for r in rows)
    worst_iou = min(r["iou"] for r in rows)
    worst_mad = max(r["mad"] for r in rows)
    rate = side["throughput"]
    cap = rate["cap"]
    targets = [
        Target(
            "vs rembg s: every single request, ?wait= ≤ 0.9 ×",
            f"max {worst_wait:.2f} ×",
            worst_wait <= 0.9,
        ),
        Target(
            "vs rembg s: every single request, /v1.0/removebg ≤ 0.9 ×",
            f"max {worst_sync:.2f} ×",
            worst_sync <= 0.9,
        ),
        Target(
            "Job completed → ?wait= client holds the answer ≤ 20 ms, every request",
            f"median ≤ {handoff_median * 1000:.0f} ms, max {handoff_max * 1000:.0f} ms",
            handoff_max <= 0.020,
        ),
    ]
    for who, label in (("peer", "as run"), ("peer_capped", f"capped to {cap} in flight")):
        ratio = rate["ours"]["per_min"] / rate[who]["per_min"]
        memory = side["memory"]["ours"] / side["memory"][who]
        targets += [
            Target(
                f"vs rembg s ({label}): throughput, {side['jobs']} mixed ({side['mix']}) ≥ 1.5 ×",
                f"{ratio:.2f} ×",
                ratio >= 1.5,
            ),
            Target(f"vs rembg s ({label}): peak RSS ≤ 0.5 ×", f"{memory:.2f} ×", memory <= 0.5),
        ]
    return targets + [
        Target("vs rembg s: PNG bytes ≤ 1.05 ×", f"max {worst_bytes:.3f} ×", worst_bytes <= 1.05),
        Target("vs rembg s: masks IoU ≥ 0.99", f"min {worst_iou:.4f}", worst_iou >= 0.99),
        Target("vs rembg s: mean abs Δalpha ≤ 1/255", f"max {worst_mad:.3f}/255", worst_mad <= 1.0),
    ]


def peer_lines(side: dict) -> list[str]:
    from bench.peer import STAGES

    lines = [
        "| model | image | rembg s | ours, POST + ?wait= + download | ours, /v1.0/removebg "
        "| ?wait= / peer | sync / peer | PNG bytes ours / peer | mask IoU | mean abs Δalpha |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in side["single"]:
        lines.append(
            f"| {r['model']} | {r['image']} | {r['peer']:.3f} s | {r['wait']:.3f} s "
            f"| {r['sync']:.3f} s | {r['wait'] / r['peer']:.2f} | {r['sync'] / r['peer']:.2f} "
            f"| {r['ours_bytes'] / r['peer_bytes']:.3f} | {r['iou']:.4f} | {r['mad']:.3f} |"
        )
    lines += [
        "",
        "Where our ?wait= time goes (medians, ms):",
        "",
        "| model | image | " + " | ".join(name for name, _ in STAGES) + " |",
        "|---|---|" + "---|" * len(STAGES),
    ]
    for r in side["single"]:
        lines.append(
            f"| {r['model']} | {r['image']} | "
            + " | ".join(f"{r['stages'].get(name, 0) * 1000:.0f}" for name, _ in STAGES)
            + " |"
        )
    handoff_max = max(r.get("handoff_max", 0.0) for r in side["single"])
    lines += [
        "",
        f"The handoff column is each cell's median; the slowest single hand-off of all was "
        f"{handoff_max * 1000:.0f} ms.",
        "",
        *[f"- {name}: {meaning}" for name, meaning in STAGES],
    ]
    rate, memory = side["throughput"], side["memory"]
    cap = rate["cap"]
    names = {
        "ours": "ours",
        "peer": "rembg s, as run",
        "peer_capped": f"rembg s, capped to {cap} in flight",
    }
    lines += [
        "",
        f"Throughput and memory, {side['jobs']} u2net photos ({side['mix']}), "
        f"{rate['clients']} client threads each sending one whole request at a time. `rembg s` "
        f"is measured twice: as users run it (it takes all {rate['clients']} requests at once "
        f"and runs them side by side on {cap} cores, so its oversubscription is part of what is "
        f"measured), and capped to {cap} requests in flight (the client threads wait at a gate, "
        "as behind a proxy limited to the cores). Two rounds, the second in reverse order "
        f"({' → '.join(names[who] for who in rate['order'])}, then back), so that no side "
        "always runs first; "
        "images/min is both rounds' images over both rounds' seconds (each round in brackets); "
        "peak RSS is the sum of each process's own peak while that system ran (ours: gunicorn "
        "and every qcluster process; the single requests above included).",
        "",
        "| system | images/min (round 1, round 2) | ours / it | peak RSS | ours / it |",
        "|---|---|---|---|---|",
    ]
    for who, name in names.items():
        rounds = ", ".join(f"{value:.1f}" for value in rate[who]["rounds_per_min"])
        speed = rate["ours"]["per_min"] / rate[who]["per_min"]
        size = memory["ours"] / memory[who]
        lines.append(
            f"| {name} | {rate[who]['per_min']:.1f} ({rounds}) | {speed:.2f} × "
            f"| {memory[who]:.0f} MiB | {size:.2f} × |"
        )
    lines += [
        "",
        f"Summed PSS after the single requests, shared pages counted once: ours "
        f"{memory['ours_pss']:.0f} MiB, rembg s {memory['peer_pss']:.0f} MiB.",
    ]
    return lines


# --- Report -------------------------------------------------------------------


@dataclass
class Target:
    name: str
    measured: str
    passed: bool


def evaluate(rows: list[Row], throughput: dict, memory: dict, parity: list[dict]) -> list[Target]:
    targets = []
    for row in rows:
        if row.image == "12 MP" and row.model == "u2net":
            ratio_c = row.service.median / row.rembg.median
            ratio_b = row.pipeline.median / row.rembg.median
            targets.append(
                Target("12 MP u2net: service ≤ 0.5 × rembg", f"{ratio_c:.2f} ×", ratio_c <= 0.5)
            )
            targets.append(
                Target("12 MP u2net: pipeline ≤ 0.4 × rembg", f"{ratio_b:.2f} ×", ratio_b <= 0.4)
            )
        if row.image == "0.3 MP":
            extra = (row.service.median - row.rembg.median) * 1000
            targets.append(
                Target(
                    f"0.3 MP {row.model}: service ≤ rembg + 150 ms",
                    f"{extra:+.0f} ms",
                    extra <= 150,
                )
            )
    worst_iou = min(min(r.pipeline_agreement[0], r.service_agreement[0]) for r in rows)
    worst_mad = max(max(r.pipeline_agreement[1], r.service_agreement[1]) for r in rows)
    targets.append(
        Target("Masks: IoU ≥ 0.99 on every image", f"min {worst_iou:.4f}", worst_iou >= 0.99)
    )
    targets.append(
        Target(
            "Masks: mean abs Δalpha ≤ 1/255 on every image",
            f"max {worst_mad:.3f}/255",
            worst_mad <= 1.0,
        )
    )
    targets += parity_targets(parity)
    mixed = throughput["runs"][0]
    ratio = mixed["service_per_min"] / mixed["rembg_per_min"]
    targets.append(
        Target(
            f"Throughput, {throughput['jobs']} queued ({mixed['images']}) ≥ 1.0 × serial rembg",
            f"{ratio:.2f} ×",
            ratio >= 1.0,
        )
    )
    growth = memory["after_200"] / memory["after_10"] - 1
    targets.append(
        Target(
            "Worker RSS after 200 jobs within 10 % of after 10",
            f"{growth * 100:+.1f} %",
            abs(growth) <= 0.10,
        )
    )
    return targets


def table_lines(rows: list[Row]) -> list[str]:
    lines = [
        "| model | image | (a) rembg.remove() | (b) pipeline | (c) service e2e "
        "| (b)/(a) median (min) | (c)/(a) median (min) "
        "| mask IoU (b) / (c) | mean abs Δalpha (b) / (c) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.model} | {row.image} | {row.rembg.median:.3f} s ({row.rembg.spread()}) "
            f"| {row.pipeline.median:.3f} s ({row.pipeline.spread()}) "
            f"| {row.service.median:.3f} s ({row.service.spread()}) "
            f"| {row.pipeline.median / row.rembg.median:.2f} "
            f"({min(row.pipeline.seconds) / min(row.rembg.seconds):.2f}) "
            f"| {row.service.median / row.rembg.median:.2f} "
            f"({min(row.service.seconds) / min(row.rembg.seconds):.2f}) "
            f"| {row.pipeline_agreement[0]:.4f} / {row.service_agreement[0]:.4f} "
            f"| {row.pipeline_agreement[1]:.3f} / {row.service_agreement[1]:.3f} |"
        )
    return lines


def write_report(
    path: Path,
    rows: list[Row],
    targets: list[Target],
    throughput: dict,
    memory: dict,
    parity: list[dict],
    runs: int,
    chart_name: str,
    settings_used: dict[str, str],
    differing: list[dict[str, str]],
    notes: str,
    side: dict,
    sections: list[str] | None = None,
) -> None:
    cpu = platform.processor() or platform.machine()
    growth = memory["after_200"] / memory["after_10"] - 1
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run_bench.py`; the notes at the end come from "
        "`bench/notes.md`); do not edit by hand.",
        "",
        f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPU cores "
        f"({cpu}), Python {platform.python_version()}; {runs} timed runs per cell "
        "(median, with min–max in brackets). Service settings: "
        + ", ".join(f"`{k}={v}`" for k, v in settings_used.items())
        + ". Set by the benchmark, unlike the defaults: "
        + record.settings_markdown(differing)
        + ". The raw numbers of this run: [benchmarks.json](benchmarks.json).",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *[f"| {t.name} | {t.measured} | {'PASS' if t.passed else 'FAIL'} |" for t in targets],
        "",
        "## Latency per image",
        "",
        "(a) `rembg.remove(data, session=new_session(model))`; (b) "
        "`imaging.pipeline.remove_background` with the same session; (c) the service: POST, "
        f"poll every {CLIENT_POLL_SECONDS * 1000:.0f} ms, download over HTTP (gunicorn + "
        "qcluster, SQLite, ORM broker). Mask agreement is against (a)'s output.",
        "",
        *table_lines(rows),
        "",
        f"![latency chart]({chart_name})",
        "",
        *(sections or []),
        f"## Throughput ({throughput['jobs']} {throughput['model']} jobs queued at once)",
        "",
        "Submitted together (8 client threads), then awaited in order; against a serial loop "
        "of `rembg.remove()` on the same images in this process. The target is judged on the "
        "mixed queue; the 1 MP-only queue is shown because it is the narrowest case: at 1 MP "
        "rembg's own overhead beyond the model is small.",
        "",
        "| queue | service | serial rembg.remove() | ratio |",
        "|---|---|---|---|",
        *[
            f"| {run['images']} | {run['service_per_min']:.1f} images/min "
            f"({run['service_seconds']:.1f} s) | {run['rembg_per_min']:.1f} images/min "
            f"({run['rembg_seconds']:.1f} s) "
            f"| {run['service_per_min'] / run['rembg_per_min']:.2f} × |"
            for run in throughput["runs"]
        ],
        "",
        "## Side by side with `rembg s`",
        "",
        "rembg 2.0.86's own server (`rembg s`, installed by the benchmark from PyPI into "
        "bench/out/rembg-venv, our weights), same photos, alternating systems, medians of "
        f"{runs}. Ours is timed as a client waits: `POST` then `GET /api/get/<id>?wait=30` "
        "then the download, and the synchronous `POST /v1.0/removebg` (size=full, format=png). "
        "PNG bytes and masks are compared with rembg s's own answer.",
        "",
        *peer_lines(side),
        "",
        "## Masks on small and thin subjects",
        "",
        "scikit-image photos resized and pasted into 4000×3000 frames (plain or heavily blurred "
        "backgrounds), JPEG q90; the subject's share is of rembg's mask (alpha > 127). (b) "
        "against (a), one run each.",
        "",
        *parity_lines(parity),
        "",
        "## Worker memory",
        "",
        f"RSS of the qcluster worker process(es) holding a model, {memory['model']} on the "
        f"{memory['image']} photo: after 10 jobs {memory['after_10']:.0f} MiB, after 200 jobs "
        f"{memory['after_200']:.0f} MiB ({growth * 100:+.1f} %).",
        "",
    ]
    if notes:
        lines += ["## Notes", "", notes, ""]
    path.write_text("\n".join(lines))


def quick_side_by_side(*, runs: int, jobs: int, began: float) -> int:
    """``--quick``: (h) alone, small images, few runs; prints, writes nothing."""
    workdir = Path(tempfile.mkdtemp(prefix="revid-bench-"))
    service = Service(workdir, {"WARM_MODELS": ",".join(MODELS)})
    differing = record.settings_differing(service.overrides)
    print("Settings that differ from the defaults:", *record.settings_lines(differing), sep="\n")
    try:
        key = service.start()
        side = measure_side_by_side(service, key, quick=True, runs=runs, jobs=jobs)
    finally:
        service.stop()
    print()
    print("\n".join(peer_lines(side)))
    print()
    targets = peer_targets(side)
    width = max(len(t.name) for t in targets)
    for target in targets:
        print(
            f"{target.name:<{width}}  {target.measured:>14}  {'PASS' if target.passed else 'FAIL'}"
        )
    print(f"\nQuick run ({runs} runs, 0.3 and 1 MP, {jobs} jobs): {time.monotonic() - began:.0f} s")
    saved = record.save(
        {"quick": True, "runs": runs, "settings": differing, "side": side, "targets": targets},
        name="results-quick.json",
    )
    print(f"Raw numbers: {saved}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per cell (default 7)")
    parser.add_argument("--jobs", type=int, default=40, help="jobs queued at once for (d)")
    parser.add_argument("--memory-jobs", type=int, default=200, help="jobs for (e)")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="where to write the report")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument(
        "--parity-only", action="store_true", help="only (f), mask parity on small subjects"
    )
    parser.add_argument(
        "--no-options",
        action="store_true",
        help="skip (g), each output option at 1 and 12 MP against rembg (a few minutes)",
    )
    parser.add_argument(
        "--no-engines",
        action="store_true",
        help="skip (i), the opt-in MODEL_ENGINE engines against onnxruntime (a few minutes)",
    )
    parser.add_argument("--options-runs", type=int, default=3, help="timed runs at 1 MP for (g)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only (h), side by side with rembg s, at 0.3 and 1 MP, 3 runs, 8 jobs; no docs",
    )
    args = parser.parse_args()

    if not (ROOT / "var" / "models" / "u2net.onnx").is_file():
        print("Model weights missing: run `make setup` first.", file=sys.stderr)
        return 2
    os.environ["U2NET_HOME"] = str(ROOT / "var" / "models")
    began = time.monotonic()
    if args.parity_only:
        print("(f) masks on small and thin subjects, 12 MP", flush=True)
        targets = parity_targets(measure_small_subjects())
        for target in targets:
            print(f"{target.name}  {target.measured}  {'PASS' if target.passed else 'FAIL'}")
        return 0
    if args.quick:
        return quick_side_by_side(runs=min(args.runs, 3), jobs=min(args.jobs, 8), began=began)
    photos = {name: make_photo(photo, size) for name, photo, size in IMAGES}
    rows = [Row(model, name, size[0] * size[1]) for model in MODELS for name, _, size in IMAGES]

    print(f"(a)+(b) rembg.remove() vs pipeline, {args.runs} runs each", flush=True)
    references = measure_in_process(rows, photos, args.runs)
    print("(f) masks on small and thin subjects, 12 MP", flush=True)
    parity = measure_small_subjects()

    workdir = Path(tempfile.mkdtemp(prefix="revid-bench-"))
    service_env = {"WARM_MODELS": ",".join(MODELS)}
    service = Service(workdir, service_env)
    differing = record.settings_differing(service.overrides)
    print("Settings that differ from the defaults:", *record.settings_lines(differing), sep="\n")
    try:
        key = service.start()
        client = Client(service.base, key)
        print("(c) service end to end", flush=True)
        for model in MODELS:
            for row in (r for r in rows if r.model == model):
                output = client.remove(photos[row.image], model)  # untimed, as above
                for _ in range(args.runs):
                    started = time.perf_counter()
                    output = client.remove(photos[row.image], model)
                    row.service.seconds.append(time.perf_counter() - started)
                row.service_agreement = agreement(references[(model, row.image)], output)
                print(
                    f"  {model:7s} {row.image:7s} service {row.service.median:6.3f}s  "
                    f"IoU {row.service_agreement[0]:.4f}  MAD {row.service_agreement[1]:.3f}",
                    flush=True,
                )

        print("sync /v1.0/removebg vs async", flush=True)
        sync_rows = measure_sync(client.base, key, photos, models=MODELS, runs=args.runs)

        throughput_model = "u2net"
        # The benchmark's photos in turn (0.3, 1, 12 MP, ...): a mixed queue.
        names = [IMAGES[i % len(IMAGES)][0] for i in range(args.jobs)]
        print(f"(d) throughput: {args.jobs} u2net jobs queued at once", flush=True)
        throughput = {"jobs": args.jobs, "model": throughput_model, "runs": []}
        for label, batch_names in (
            ("mixed 0.3 / 1 / 12 MP", names),
            ("1 MP only", ["1 MP"] * args.jobs),
        ):
            batch = [photos[name] for name in batch_names]
            service_seconds = run_many(client, batch, throughput_model, concurrency=8)
            rembg_seconds = serial_rembg_loop(throughput_model, batch)
            throughput["runs"].append(
                {
                    "images": label,
                    "service_per_min": args.jobs / service_seconds * 60,
                    "rembg_per_min": args.jobs / rembg_seconds * 60,
                    "service_seconds": service_seconds,
                    "rembg_seconds": rembg_seconds,
                }
            )
            print(
                f"  {label}: service {args.jobs / service_seconds * 60:.1f}/min, "
                f"serial rembg {args.jobs / rembg_seconds * 60:.1f}/min",
                flush=True,
            )

        side = measure_side_by_side(service, key, quick=False, runs=args.runs, jobs=args.jobs)

        memory_model, memory_image = "u2netp", "0.3 MP"
        print(f"(e) worker RSS over {args.memory_jobs} {memory_model} jobs", flush=True)
        service.stop_cluster()
        service.env["WARM_MODELS"] = memory_model
        service.start_cluster()
        small = photos[memory_image]
        run_many(client, [small] * 10, memory_model, concurrency=4)
        after_10 = sum(service.worker_rss_mib())
        run_many(client, [small] * (args.memory_jobs - 10), memory_model, concurrency=4)
        after_200 = sum(service.worker_rss_mib())
        memory = {
            "model": memory_model,
            "image": memory_image,
            "after_10": after_10,
            "after_200": after_200,
        }
        print(f"  after 10: {after_10:.0f} MiB, after {args.memory_jobs}: {after_200:.0f} MiB")
        settings_used = json.loads(
            service.manage(
                "shell",
                "-c",
                "import json; from django.conf import settings as s; print(json.dumps({k: "
                "str(getattr(s, k)) for k in ('Q_WORKERS', 'ORT_INTRA_OP_THREADS', "
                "'ORT_ALLOW_SPINNING', 'Q_POLL_MS')}))",
            )
            .strip()
            .splitlines()[-1]
        )
        settings_used["WARM_MODELS"] = ",".join(MODELS)
    finally:
        service.stop()

    option_rows = []
    if not args.no_options:
        # After the service has stopped, so it has the CPUs to itself.
        from bench import bench_options

        print("(g) output options against rembg's closest call", flush=True)
        option_rows = bench_options.run(
            runs=args.options_runs, log=lambda line: print(line, flush=True)
        )

    engines_result, engine_service_rows = None, []
    if not args.no_engines:
        from bench import bench_engines

        print("(i) opt-in engines (MODEL_ENGINE)", flush=True)
        engine_photos = {name: make_photo(photo, size) for name, photo, size in PEER_IMAGES}
        engines_result = bench_engines.measure(engine_photos, MODELS, args.runs, log=_log)
        engine_service_rows = bench_engines.side_by_side(engine_photos, MODELS, args.runs, log=_log)

    targets = evaluate(rows, throughput, memory, parity) + peer_targets(side)
    targets += [Target(*target) for target in sync_targets(sync_rows)]
    print()
    print("\n".join(table_lines(rows)))
    print()
    print("\n".join(sync_report_lines(sync_rows)))
    print()
    print("\n".join(peer_lines(side)))
    print()
    width = max(len(t.name) for t in targets)
    for target in targets:
        print(
            f"{target.name:<{width}}  {target.measured:>14}  {'PASS' if target.passed else 'FAIL'}"
        )
    print(f"\nTotal {time.monotonic() - began:.0f} s")

    if not args.no_docs:
        docs = Path(args.docs)
        docs.mkdir(parents=True, exist_ok=True)
        draw_chart(rows, docs / "benchmarks.png")
        notes_file = ROOT / "bench" / "notes.md"
        notes = notes_file.read_text().strip() if notes_file.is_file() else ""
        write_report(
            docs / "benchmarks.md",
            rows,
            targets,
            throughput,
            memory,
            parity,
            args.runs,
            "benchmarks.png",
            settings_used,
            differing,
            notes,
            side,
            sync_report_lines(sync_rows),
        )
        if option_rows:
            bench_options.add_to_report(docs / "benchmarks.md", option_rows)
        if engines_result is not None:
            from bench.bench_options import insert_before_notes

            insert_before_notes(
                docs / "benchmarks.md",
                bench_engines.report_section(engines_result, engine_service_rows),
            )
        print(f"Wrote {docs / 'benchmarks.md'} and {docs / 'benchmarks.png'}")
    saved = record.save(
        {
            "runs": args.runs,
            "settings_used": settings_used,
            "settings": differing,
            "targets": targets,
            "latency": rows,
            "sync": sync_rows,
            "throughput": throughput,
            "memory": memory,
            "parity": parity,
            "side_by_side": side,
            "options": option_rows,
            "engines": engines_result,
            "engines_as_a_service": engine_service_rows,
        },
        docs=None if args.no_docs else Path(args.docs),
    )
    print(f"Raw numbers: {saved}" + ("" if args.no_docs else f" and {args.docs}/benchmarks.json"))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
