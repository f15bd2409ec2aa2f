"""`make bench`'s report: the targets, the table, docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from bench import record  # noqa: F401
from bench.common import CLIENT_POLL_SECONDS, IMAGES, MODELS, Row, Target  # noqa: F401
from bench.side_by_side import peer_lines  # noqa: F401


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
