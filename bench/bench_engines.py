"""(i) The engines (``MODEL_ENGINE``): how much faster, how far the masks move.

In this process, for each engine, model and photo: the pipeline's median
time and its mask against ``rembg.remove()`` on ONNX Runtime (rembg's own
engine, the reference), plus the small and thin 12 MP subjects of (f),
where a less precise model shows first. Then the engines other than the
default (OpenVINO fp32, which (h) runs), each as a service side by side
with `rembg s` (bench/peer.py), as a user waits.

``python bench/bench_engines.py`` runs the in-process part alone and prints it.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENGINE_NAMES = ("onnxruntime", "openvino", "openvino-bf16")
# Run as a service against `rembg s`, each in turn (rembg s started once);
# the default engine's service is (h).
SERVICE_ENGINES = ("onnxruntime", "openvino-bf16")


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "revid.settings")
    os.environ.setdefault("U2NET_HOME", str(ROOT / "var" / "models"))
    import django

    django.setup()


def _session(engine: str, model: str):
    from django.conf import settings

    from imaging import sessions
    from removal import registry

    settings.MODEL_ENGINE = engine
    return sessions._new_session(model, registry.engine_config())


def measure(photos: dict[str, bytes], models: tuple[str, ...], runs: int, log) -> dict:
    """Pipeline time and mask agreement per engine, model and photo; small subjects too."""
    from rembg import new_session, remove

    from bench.common import agreement
    from imaging import pipeline
    from tests.images import SMALL_SUBJECTS, small_subject_jpeg

    _setup_django()
    rows, subjects = [], []
    for model in models:
        reference_session = new_session(model, providers=["CPUExecutionProvider"])
        sessions = {engine: _session(engine, model) for engine in ENGINE_NAMES}
        for session in sessions.values():  # first runs allocate and compile
            pipeline.remove_background(photos[next(iter(photos))], session, max_pixels=10**9)
        for image, data in photos.items():
            reference = remove(data, session=reference_session)
            times: dict[str, list[float]] = {engine: [] for engine in ENGINE_NAMES}
            outputs: dict[str, bytes] = {}
            for run in range(runs):  # alternated, so load hits every engine alike
                order = ENGINE_NAMES if run % 2 == 0 else ENGINE_NAMES[::-1]
                for engine in order:
                    started = time.perf_counter()
                    outputs[engine] = pipeline.remove_background(
                        data, sessions[engine], max_pixels=10**9
                    ).data
                    times[engine].append(time.perf_counter() - started)
            for engine in ENGINE_NAMES:
                iou, mad = agreement(reference, outputs[engine])
                row = {
                    "engine": engine,
                    "model": model,
                    "image": image,
                    "seconds": statistics.median(times[engine]),
                    "iou": iou,
                    "mad": mad,
                }
                rows.append(row)
                log(
                    f"  {engine:13s} {model:7s} {image:7s} {row['seconds']:6.3f}s  "
                    f"IoU {iou:.4f}  MAD {mad:.3f}"
                )
        for label, *_ in SMALL_SUBJECTS:
            data = small_subject_jpeg(label)
            reference = remove(data, session=reference_session)
            for engine in ENGINE_NAMES:
                ours = pipeline.remove_background(data, sessions[engine], max_pixels=10**9).data
                iou, mad = agreement(reference, ours)
                subjects.append(
                    {"engine": engine, "model": model, "image": label, "iou": iou, "mad": mad}
                )
        for engine in ENGINE_NAMES:
            mine = [s for s in subjects if s["engine"] == engine and s["model"] == model]
            log(
                f"  {engine:13s} {model:7s} small/thin subjects: "
                f"min IoU {min(s['iou'] for s in mine):.4f}  "
                f"max MAD {max(s['mad'] for s in mine):.3f}"
            )
    return {"rows": rows, "subjects": subjects}


def side_by_side(photos: dict[str, bytes], models: tuple[str, ...], runs: int, log) -> list:
    """Each of ``SERVICE_ENGINES`` as a service against `rembg s`: single requests, as in (h)."""
    from bench import peer as peers
    from bench.service import Service, free_port

    workdir = Path(tempfile.mkdtemp(prefix="revid-bench-engine-"))
    rival = peers.Peer(workdir, free_port(), log=log)
    rows: list[dict] = []
    try:
        rival.start(models)
        for engine in SERVICE_ENGINES:
            log(f"  MODEL_ENGINE={engine} as a service vs rembg s")
            folder = workdir / engine
            folder.mkdir()
            service = Service(folder, {"WARM_MODELS": ",".join(models), "MODEL_ENGINE": engine})
            try:
                key = service.start()
                ours = peers.Ours(service.base, key, folder / "data" / "db.sqlite3")
                found = peers.single_requests(rival, ours, photos, models, runs, log=log)
            finally:
                service.stop()
            rows += [{**row, "engine": engine} for row in found]
    finally:
        rival.stop()
    return rows


def report_section(result: dict, service_rows: list) -> str:
    """Markdown for docs/benchmarks.md."""
    rows = result["rows"]
    baseline = {
        (r["model"], r["image"]): r["seconds"] for r in rows if r["engine"] == "onnxruntime"
    }
    lines = [
        "## Engines (`MODEL_ENGINE`)",
        "",
        "The pipeline in this process on each engine (medians, alternated), and its mask "
        "against `rembg.remove()` on ONNX Runtime, rembg's own engine (`bench/bench_engines.py`). "
        "OpenVINO in fp32 (`openvino`) is the default; `onnxruntime` is one setting away and "
        "`openvino-bf16` opt-in. A row whose mask misses the parity goal (IoU ≥ 0.99, mean "
        "|Δalpha| ≤ 1/255) is why an engine is not the default.",
        "",
        "| engine | model | image | pipeline | / onnxruntime | mask IoU | mean abs Δalpha |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["seconds"] / baseline[(r["model"], r["image"])]
        lines.append(
            f"| {r['engine']} | {r['model']} | {r['image']} | {r['seconds']:.3f} s | "
            f"{ratio:.2f} | {r['iou']:.4f} | {r['mad']:.3f} |"
        )
    lines += [
        "",
        "Small and thin subjects in 12 MP frames (the photos of (f)), worst of each:",
        "",
        "| engine | model | min mask IoU | max mean abs Δalpha | worst image |",
        "|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for s in result["subjects"]:
        groups.setdefault((s["engine"], s["model"]), []).append(s)
    for (engine, model), found in groups.items():
        worst = min(found, key=lambda s: s["iou"])
        lines.append(
            f"| {engine} | {model} | {worst['iou']:.4f} | "
            f"{max(s['mad'] for s in found):.3f} | {worst['image']} |"
        )
    if service_rows:
        lines += [
            "",
            "Each engine other than the default as a service, side by side with `rembg s` "
            "(single requests as in (h), medians; one `rembg s`, each engine's service in "
            "turn). `rembg s` runs fp32 (ONNX Runtime): the bf16 ratios compare our bf16 with "
            "its fp32, and the last two columns are the mask drift that speed costs (against "
            "its fp32 answer):",
            "",
            "| engine | model | image | rembg s (fp32) | ours, POST + ?wait= + download "
            "| ours, /v1.0/removebg | ?wait= / peer | sync / peer | mask IoU vs rembg s "
            "| mean abs Δalpha vs rembg s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in service_rows:
            lines.append(
                f"| {r.get('engine', SERVICE_ENGINES[0])} | {r['model']} | {r['image']} | "
                f"{r['peer']:.3f} s | {r['wait']:.3f} s | "
                f"{r['sync']:.3f} s | {r['wait'] / r['peer']:.2f} | {r['sync'] / r['peer']:.2f} "
                f"| {r['iou']:.4f} | {r['mad']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    from bench.common import MODELS, make_photo
    from bench.side_by_side import PEER_IMAGES

    photos = {name: make_photo(photo, size) for name, photo, size in PEER_IMAGES}
    result = measure(photos, MODELS, runs=3, log=lambda line: print(line, flush=True))
    print(report_section(result, []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
