"""Side by side with `rembg s` (rembg 2.0.86's own HTTP server), issue 14's goals.

The peer is installed by the benchmark itself from PyPI into its own
virtualenv (bench/out/rembg-venv, ignored by git), pointed at our weights
(U2NET_HOME) and started on a free loopback port. Both systems get the same
images, in alternation, and are timed as a client sees them:

* ``rembg s``: ``POST /api/remove`` (multipart ``file``, ``model``), the PNG
  in the answer;
* ours, the documented way: ``POST /paid/image/remove/background``, then
  ``GET /api/get/<id>?wait=30``, then the download; and the synchronous
  remove.bg door ``POST /v1.0/removebg`` (size=full, format=png).

Peak RSS is sampled every 50 ms for the peer's process tree and ours
(gunicorn + qcluster). The stage split of our time comes from the job's
own timestamps (created, started, completed) and the client's clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PEER_VERSION = "2.0.86"
PEER_VENV = ROOT / "bench" / "out" / "rembg-venv"
WAIT_SECONDS = 30


def ensure_peer_venv(log) -> Path:
    """rembg[cpu,cli]==2.0.86 in its own virtualenv; returns its ``rembg`` script."""
    script = PEER_VENV / "bin" / "rembg"
    marker = PEER_VENV / f".rembg-{PEER_VERSION}"
    if script.is_file() and marker.is_file():
        return script
    log(f"  installing rembg[cpu,cli]=={PEER_VERSION} into {PEER_VENV} (once)")
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run(
        [
            str(PEER_VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"rembg[cpu,cli]=={PEER_VERSION}",
        ],
        check=True,
    )
    # The first import compiles every module of rembg and its dependencies:
    # minutes on a busy 2-core machine, which the server's start must not pay.
    subprocess.run([str(script), "--help"], check=True, capture_output=True)
    marker.touch()
    return script


class Peer:
    """`rembg s` on a loopback port, stopped on exit."""

    def __init__(self, workdir: Path, port: int, log):
        self.workdir, self.port, self.log = workdir, port, log
        self.base = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.http = requests.Session()

    def start(self, models: tuple[str, ...]) -> None:
        script = ensure_peer_venv(self.log)
        env = {
            **os.environ,
            "U2NET_HOME": str(ROOT / "var" / "models"),
            "BROWSER": "true",  # its start-up opens a browser otherwise
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", ""),
        }
        if not env["OMP_NUM_THREADS"]:
            env.pop("OMP_NUM_THREADS")
        log = (self.workdir / "rembg-s.log").open("wb")
        self.process = subprocess.Popen(
            [str(script), "s", "--host", "127.0.0.1", "--port", str(self.port), "--no-ui"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                # Any answer will do (/api/remove without a URL is a 4xx).
                if self.http.get(f"{self.base}/api/remove", timeout=10).status_code < 500:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            raise RuntimeError("rembg s did not start; see rembg-s.log")
        # Its sessions load on first use: one request per model, untimed.
        for model in models:
            self.remove(_tiny_jpeg(), model)

    def remove(self, data: bytes, model: str, http: requests.Session | None = None) -> bytes:
        response = (http or self.http).post(
            f"{self.base}/api/remove",
            files={"file": ("photo.jpg", data, "image/jpeg")},
            data={"model": model},
            timeout=300,
        )
        response.raise_for_status()
        return response.content

    def pids(self) -> list[int]:
        from bench.service import _descendants

        return [self.process.pid, *_descendants(self.process.pid)] if self.process else []

    def stop(self) -> None:
        if self.process is not None:
            from bench.service import _stop

            _stop(self.process)
            self.process = None


def _tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 60, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


class Ours:
    """Our service as a client uses it: the long poll, or the synchronous door."""

    def __init__(self, base: str, key: str, db_path: Path):
        self.base, self.key, self.db_path = base, key, db_path
        self.http = self.session()

    def session(self) -> requests.Session:
        http = requests.Session()
        http.headers["x-api-key"] = self.key
        return http

    def remove_waiting(
        self, data: bytes, model: str, http: requests.Session | None = None
    ) -> tuple[bytes, dict]:
        """POST, GET ?wait=, download; the client's clock at each step."""
        http = http or self.http
        marks = {"start": time.time()}
        response = http.post(
            f"{self.base}/paid/image/remove/background",
            files={"file": ("photo.jpg", data, "image/jpeg")},
            data={"model": model},
            timeout=60,
        )
        if response.status_code != 202:
            raise RuntimeError(f"submit: {response.status_code} {response.text[:300]}")
        task_id = response.json()["task_id"]
        marks["submitted"] = time.time()
        deadline = time.monotonic() + 300
        while True:
            payload = http.get(
                f"{self.base}/api/get/{task_id}", params={"wait": WAIT_SECONDS}, timeout=60
            ).json()
            if payload["status"] in ("completed", "failed") or time.monotonic() > deadline:
                break
        marks["answered"] = time.time()
        if payload["status"] != "completed":
            raise RuntimeError(f"job {task_id}: {payload}")
        download = http.get(f"{self.base}/output/{payload['result']['image_filename']}", timeout=60)
        download.raise_for_status()
        marks["downloaded"] = time.time()
        marks["task_id"] = task_id
        return download.content, marks

    def remove_sync(self, data: bytes, model: str, http: requests.Session | None = None) -> bytes:
        response = (http or self.http).post(
            f"{self.base}/v1.0/removebg",
            files={"image_file": ("photo.jpg", data, "image/jpeg")},
            data={"model": model, "size": "full", "format": "png"},
            headers={"X-Api-Key": self.key},
            timeout=300,
        )
        if response.status_code != 200:
            raise RuntimeError(f"removebg: {response.status_code} {response.text[:300]}")
        return response.content

    def job_times(self, task_id: str) -> dict:
        """The job's own timestamps (UTC seconds) from the service's SQLite database."""
        query = (
            "SELECT created_at, started_at, completed_at, elapsed_seconds, stage_seconds "
            "FROM removal_removaljob WHERE id = ?"
        )
        with sqlite3.connect(self.db_path, timeout=30) as db:
            # Django stores a UUID as 32 hex digits on SQLite.
            row = db.execute(query, (task_id.replace("-", ""),)).fetchone()
            if row is None:
                row = db.execute(query, (task_id,)).fetchone()

        def seconds(value: str) -> float:
            # Django stores UTC without an offset on SQLite.
            return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()

        created, started, completed, elapsed, stages = row
        return {
            "created": seconds(created),
            "started": seconds(started),
            "completed": seconds(completed),
            "elapsed": float(elapsed),
            "stages": json.loads(stages) if stages else {},
        }


def pss_mib(pid: int) -> float:
    """Proportional set size: shared pages (forked workers, libraries) counted once overall."""
    from bench.service import proc_mib

    return proc_mib(pid, "Pss", "smaps_rollup")


class RssSampler:
    """Peak RSS (MiB) of a changing set of processes, without disturbing them.

    The kernel keeps each process's own peak (``VmHWM``), so the sampler
    only looks every second for new processes and reads that figure: no
    50 ms polling of /proc and no page-table walks (``smaps``) while the
    requests are being timed, both of which measured 10-20 ms per request
    on 2 cores. The peak is the sum of the per-process peaks: exact for a
    single process (rembg s), an upper bound for ours (gunicorn and the
    qcluster processes do not peak at the same moment). The summed PSS,
    which counts pages that forked processes share once, is read once, at
    the end.
    """

    def __init__(self, pids_of) -> None:
        self.pids_of = pids_of
        self.peaks: dict[int, float] = {}
        self.pss_at_end = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak(self) -> float:
        return sum(self.peaks.values())

    def _sample(self) -> None:
        for pid in self.pids_of():
            self.peaks[pid] = max(self.peaks.get(pid, 0.0), hwm_mib(pid))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(1.0)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.pss_at_end = sum(pss_mib(pid) for pid in self.pids_of())


def hwm_mib(pid: int) -> float:
    """The process's peak resident set size so far (``VmHWM``)."""
    from bench.service import proc_mib

    return proc_mib(pid, "VmHWM")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def single_requests(
    peer: Peer,
    ours: Ours,
    photos: dict[str, bytes],
    models: tuple[str, ...],
    runs: int,
    log,
) -> list[dict]:
    """Each size and model: peer, ours waiting, ours sync, alternated; medians."""
    from bench.common import agreement

    rows = []
    for model in models:
        for image, data in photos.items():
            times = {"peer": [], "wait": [], "sync": []}
            stages: list[dict] = []
            # Untimed first round: sessions, caches, connections.
            peer_png = peer.remove(data, model)
            ours_png, _ = ours.remove_waiting(data, model)
            ours.remove_sync(data, model)
            for run in range(runs):
                # Alternate who goes first, so a load spike hits both.
                order = ("peer", "wait", "sync") if run % 2 == 0 else ("sync", "wait", "peer")
                for who in order:
                    started = time.perf_counter()
                    if who == "peer":
                        peer_png = peer.remove(data, model)
                    elif who == "wait":
                        ours_png, marks = ours.remove_waiting(data, model)
                        stages.append({**marks, **ours.job_times(marks["task_id"])})
                    else:
                        ours.remove_sync(data, model)
                    times[who].append(time.perf_counter() - started)
            iou, mad = agreement(peer_png, ours_png)
            row = {
                "model": model,
                "image": image,
                "peer": median(times["peer"]),
                "wait": median(times["wait"]),
                "sync": median(times["sync"]),
                "peer_bytes": len(peer_png),
                "ours_bytes": len(ours_png),
                "iou": iou,
                "mad": mad,
                "stages": stage_split(stages),
                # Every request's, not only the median: the slowest hand-off too.
                "handoff_max": max((s["answered"] - s["completed"] for s in stages), default=0),
            }
            rows.append(row)
            log(
                f"  {model:7s} {image:7s} rembg s {row['peer']:6.3f}s  ours ?wait= "
                f"{row['wait']:6.3f}s ({row['wait'] / row['peer']:.2f}x)  sync "
                f"{row['sync']:6.3f}s ({row['sync'] / row['peer']:.2f}x)  PNG "
                f"{row['ours_bytes'] / row['peer_bytes']:.3f}x  IoU {iou:.4f}  MAD {mad:.3f}"
            )
    return rows


STAGES = (
    ("upload", "POST until the 202 (upload, checks, charge, enqueue)"),
    ("queue", "created until a worker claimed it (broker pick-up)"),
    ("read", "the worker reads the upload back from storage"),
    ("decode", "the image decoded (and turned upright)"),
    ("model", "the model's input, the model run, the mask at full size"),
    ("composite", "the cut-out: the mask as alpha on the photo"),
    ("encode", "the PNG written in memory"),
    ("write", "the PNG saved to storage"),
    ("records", "the rest of the worker's time: claim, model lookup, completion write"),
    ("handoff", "completed until the ?wait= answer reached the client"),
    ("download", "the result's download"),
)
# Our names for the job's own stage_seconds (removal.services.process_job).
_JOB_STAGES = {
    "read": "read_input",
    "decode": "decode",
    "model": "model",
    "composite": "composite",
    "encode": "encode",
    "write": "write_output",
}


def stage_split(samples: list[dict]) -> dict[str, float]:
    """Median seconds per stage of our waiting client's requests."""
    if not samples:
        return {}
    split: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    for s in samples:
        split["upload"].append(s["submitted"] - s["start"])
        # The row is written at the end of the POST; the POST's own time is upload.
        split["queue"].append(s["started"] - s["created"])
        work = s["completed"] - s["started"]
        for ours, theirs in _JOB_STAGES.items():
            split[ours].append(s["stages"].get(theirs, 0.0))
        split["records"].append(work - sum(s["stages"].get(t, 0.0) for t in _JOB_STAGES.values()))
        split["handoff"].append(s["answered"] - s["completed"])
        split["download"].append(s["downloaded"] - s["answered"])
    return {name: median(values) for name, values in split.items()}


# ``rembg s`` as users run it takes every request at once (FastAPI runs each
# in a thread of its own); the same server behind a gate of one request per
# core is how an operator would cap it. Both are measured.
CORES = os.cpu_count() or 1
THROUGHPUT_SYSTEMS = ("ours", "peer", "peer_capped")


def reset_peaks(pids: list[int]) -> None:
    """Restarts each process's peak RSS (``VmHWM``) from its current size, so a
    phase's peak is its own (Linux: ``5`` to ``/proc/<pid>/clear_refs``)."""
    for pid in pids:
        # A process that ended meanwhile has nothing to reset.
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def throughput(
    peer: Peer, ours: Ours, ours_pids, images: list[bytes], model: str, clients: int, log
) -> dict:
    """Images per minute with ``clients`` threads each sending one whole request at a time.

    Three systems: ours, ``rembg s`` as users run it, and ``rembg s`` with at
    most CORES requests in flight (the client threads wait at a gate before
    sending, as they would behind a proxy capped to the cores). Two rounds, the
    order reversed in the second so that neither side always runs first (or
    on a warmer machine); per system the images of both rounds over their
    seconds, each round's rate, and the peak RSS of its processes while it ran.
    """
    pids_of = {"ours": ours_pids, "peer": peer.pids, "peer_capped": peer.pids}
    runs: dict[str, list[dict]] = {who: [] for who in THROUGHPUT_SYSTEMS}
    for round_index in range(2):
        order = THROUGHPUT_SYSTEMS if round_index == 0 else THROUGHPUT_SYSTEMS[::-1]
        for who in order:
            sessions = threading.local()
            gate = threading.BoundedSemaphore(CORES if who == "peer_capped" else clients)

            def one(data: bytes, who=who, sessions=sessions, gate=gate) -> None:
                if not hasattr(sessions, "http"):
                    sessions.http = ours.session() if who == "ours" else requests.Session()
                with gate:
                    if who == "ours":
                        ours.remove_waiting(data, model, http=sessions.http)
                    else:
                        peer.remove(data, model, http=sessions.http)

            reset_peaks(pids_of[who]())
            with RssSampler(pids_of[who]) as rss:
                started = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    list(pool.map(one, images))
                seconds = time.perf_counter() - started
            runs[who].append({"seconds": seconds, "peak_mib": rss.peak})
            log(
                f"  round {round_index + 1}, {who}: {len(images)} images in {seconds:.1f} s, "
                f"{len(images) / seconds * 60:.1f}/min, peak RSS {rss.peak:.0f} MiB"
            )
    results: dict = {"cap": CORES, "clients": clients, "order": list(THROUGHPUT_SYSTEMS)}
    for who, done in runs.items():
        total = sum(run["seconds"] for run in done)
        results[who] = {
            "seconds": total,
            "per_min": len(images) * len(done) / total * 60,
            "rounds_per_min": [len(images) / run["seconds"] * 60 for run in done],
            "peak_mib": max(run["peak_mib"] for run in done),
        }
    return results
