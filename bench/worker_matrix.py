"""Which Q_WORKERS x ORT_INTRA_OP_THREADS suits this machine? (`make bench-workers`)

For each combination: a fresh service (gunicorn + qcluster on a throwaway
SQLite database), then the median latency of one 0.3 MP and one 12 MP u2net
job at a time and the throughput of N 1 MP u2net jobs queued at once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import make_photo  # noqa: E402
from bench.service import Client, Service, run_many  # noqa: E402

# (Q_WORKERS, ORT_INTRA_OP_THREADS (0: ONNX Runtime's choice), ORT_ALLOW_SPINNING)
CONFIGS = ((1, 0, 1), (1, 0, 0), (1, 1, 0), (2, 1, 0), (2, 0, 0), (2, 0, 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    large = make_photo("astronaut", (3464, 3464))
    medium = make_photo("astronaut", (1024, 1024))
    small = make_photo("coffee", (672, 448))
    print(
        "| Q_WORKERS | ORT_INTRA_OP_THREADS | ORT_ALLOW_SPINNING | 0.3 MP latency | 12 MP latency "
        "| 1 MP images/min |"
    )
    print("|---|---|---|---|---|---|")
    for workers, threads, spinning in CONFIGS:
        service = Service(
            Path(tempfile.mkdtemp(prefix="revid-matrix-")),
            {
                "Q_WORKERS": str(workers),
                "ORT_INTRA_OP_THREADS": str(threads),
                "WARM_MODELS": "u2net",
            },
        )
        try:
            client = Client(service.base, service.start())
            client.remove(medium, "u2net")
            latencies: dict[str, list[float]] = {"small": [], "large": []}
            for _ in range(args.runs):
                for name, data in (("small", small), ("large", large)):
                    started = time.perf_counter()
                    client.remove(data, "u2net")
                    latencies[name].append(time.perf_counter() - started)
            seconds = run_many(client, [medium] * args.jobs, "u2net", concurrency=8)
        finally:
            service.stop()
        print(
            f"| {workers} | {threads or 'default'} | {spinning} "
            f"| {statistics.median(latencies['small']):.2f} s "
            f"| {statistics.median(latencies['large']):.2f} s "
            f"| {args.jobs / seconds * 60:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
