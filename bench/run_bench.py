"""`make bench`: is the service faster than calling rembg, with the same masks?

One run, the same images, three ways:

(a) ``rembg.remove()`` called directly (one ``new_session`` per model);
(b) our ``imaging.pipeline.remove_background`` with that same session;
(c) the whole service: a real gunicorn (uvicorn worker, revid.asgi) and a
    real ``manage.py qcluster`` on a throwaway SQLite database; POST, poll,
    download over HTTP.

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
and (i) the engines of ``MODEL_ENGINE`` (``bench/bench_engines.py``;
``--no-engines`` skips it): speed and mask drift against rembg's own
engine, and ONNX Runtime and bf16 as services against `rembg s`; (j) edges on photos with known
answers (``bench/bench_edges.py``; ``--no-edges`` skips it): colour in the
soft band and the alpha's error against the truth, ours against rembg's
default, its ``decontaminate=True`` and alpha matting, and what edge
cleaning costs a 12 MP job.
``--quick`` runs (h) alone on small images with few runs (a few minutes).
It prints a table with each target PASS/FAIL and writes docs/benchmarks.md
and docs/benchmarks.png. A benchmark, not a test: it never fails a build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import record  # noqa: E402
from bench.bench_sync import measure_sync, sync_report_lines, sync_targets  # noqa: E402
from bench.chart import draw_chart  # noqa: E402
from bench.common import (  # noqa: E402
    IMAGES,
    MODELS,
    Row,
    Target,
    agreement,
    alpha_of,
    make_photo,
)
from bench.report import evaluate, parity_targets, table_lines, write_report  # noqa: E402
from bench.service import Client, Service, run_many  # noqa: E402
from bench.side_by_side import (  # noqa: E402
    PEER_IMAGES,
    _log,
    measure_side_by_side,
    peer_lines,
    peer_targets,
)
from tests.images import SMALL_SUBJECTS, small_subject_jpeg  # noqa: E402

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


def serial_rembg_loop(model: str, images: list[bytes]) -> float:
    from rembg import new_session, remove

    session = new_session(model, providers=["CPUExecutionProvider"])
    remove(images[0], session=session)
    started = time.perf_counter()
    for data in images:
        remove(data, session=session)
    return time.perf_counter() - started


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
        help="skip (i), the MODEL_ENGINE engines against onnxruntime (a few minutes)",
    )
    parser.add_argument(
        "--no-edges",
        action="store_true",
        help="skip (j), edges on photos with known answers (about 10 minutes)",
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

        print("(i) engines (MODEL_ENGINE)", flush=True)
        engine_photos = {name: make_photo(photo, size) for name, photo, size in PEER_IMAGES}
        engines_result = bench_engines.measure(engine_photos, MODELS, args.runs, log=_log)
        engine_service_rows = bench_engines.side_by_side(engine_photos, MODELS, args.runs, log=_log)

    edge_results = None
    if not args.no_edges:
        from bench import bench_edges

        print("(j) edges with known answers", flush=True)
        edge_results = bench_edges.run(log=_log)

    targets = evaluate(rows, throughput, memory, parity) + peer_targets(side)
    targets += [Target(*target) for target in sync_targets(sync_rows)]
    if edge_results is not None:
        targets += [Target(*target) for target in bench_edges.targets(edge_results)]
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
        if edge_results is not None:
            from bench.bench_options import insert_before_notes

            insert_before_notes(docs / "benchmarks.md", bench_edges.report_section(edge_results))
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
            "edges": edge_results,
        },
        docs=None if args.no_docs else Path(args.docs),
    )
    print(f"Raw numbers: {saved}" + ("" if args.no_docs else f" and {args.docs}/benchmarks.json"))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
