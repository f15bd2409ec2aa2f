"""Output options: what each one costs, against the closest rembg call.

For each option, at 1 MP and 12 MP, in one process with one model session:
``imaging.pipeline.remove_background(options=...)`` against ``rembg.remove``
with the nearest argument it has (``only_mask=True`` for channels=alpha,
``bgcolor=`` for bg_color, ``post_process_mask=True``, ``alpha_matting=True``);
options rembg has no argument for are set against a plain ``rembg.remove()``
(the call a rembg user would make before converting the PNG themselves):
a background image (a photo of the same size in another aspect, scaled to
cover), each shadow type, hard edges (semitransparency=false), AVIF.
Each row also says what the option adds to the default job of its size,
against a default job timed right before each of its runs.
The two calls are interleaved run by run, so other load on the machine hits
both. rembg's alpha matting at 12 MP runs in a child process with a time and
memory cap (it solves a 12-million-unknown system at full size), and the
row says when the cap stopped it.

A benchmark, not a test: it never fails a build. ``run(...)`` returns the
rows; ``main`` prints them as a Markdown table (``--markdown`` writes it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import make_photo  # noqa: E402
from imaging import options, parsers  # noqa: E402

IMAGES = (
    ("1 MP", "astronaut", (1024, 1024)),
    ("12 MP", "astronaut", (3464, 3464)),
)
WHITE = (255, 255, 255, 255)
# options.bg_image is the background's SHA-256; the bytes go alongside.
BACKGROUND_DIGEST = "0" * 64
# label, our OutputOptions fields, rembg.remove keyword arguments, rembg call shown
OPTIONS: tuple[tuple[str, dict, dict, str], ...] = (
    ("defaults (png)", {}, {}, "remove()"),
    ("channels=alpha", {"channels": "alpha"}, {"only_mask": True}, "remove(only_mask=True)"),
    ("bg_color=white", {"bg_color": WHITE}, {"bgcolor": WHITE}, "remove(bgcolor=white)"),
    (
        "post_process_mask",
        {"post_process_mask": True},
        {"post_process_mask": True},
        "remove(post_process_mask=True)",
    ),
    (
        "alpha_matting",
        {"alpha_matting": True},
        {"alpha_matting": True},
        "remove(alpha_matting=True)",
    ),
    ("format=jpg", {"format": "jpg"}, {}, "remove() (no JPEG output)"),
    ("format=webp", {"format": "webp"}, {}, "remove() (no WebP output)"),
    ("format=zip", {"format": "zip"}, {}, "remove() (no zip output)"),
    ("crop, margin 10%", {"crop": True, "crop_margin": "10%"}, {}, "remove() (no crop)"),
    ("size=preview", {"max_pixels": 250_000}, {}, "remove() (no resize)"),
    (
        "background image",
        {"bg_image": BACKGROUND_DIGEST},
        {},
        "remove() (no background image)",
    ),
    ("shadow_type=drop", {"shadow_type": "drop"}, {}, "remove() (no shadow)"),
    ("shadow_type=3D", {"shadow_type": "3D"}, {}, "remove() (no shadow)"),
    ("shadow_type=car", {"shadow_type": "car"}, {}, "remove() (no shadow)"),
    ("semitransparency=false", {"semitransparency": False}, {}, "remove() (no hard edges)"),
    ("format=avif", {"format": "avif"}, {}, "remove() (no AVIF output)"),
)
# rembg's full-size alpha matting at 12 MP, in a child process, stops here.
REMBG_MATTING_TIMEOUT_S = 240
REMBG_MATTING_MEMORY_BYTES = 8 * 1024**3


@dataclass
class Row:
    option: str
    image: str
    pixels: int
    rembg_call: str
    ours: list[float] = field(default_factory=list)
    rembg: list[float] = field(default_factory=list)
    rembg_note: str = ""  # why there is no rembg time
    # A default job timed right before each of this option's runs: "added"
    # compares the two medians, so load that comes and goes hits both alike.
    paired_defaults: list[float] = field(default_factory=list)
    # The same two in this process's CPU seconds (every thread), which other
    # load on a shared machine stretches far less than the wall clock.
    ours_cpu: list[float] = field(default_factory=list)
    paired_defaults_cpu: list[float] = field(default_factory=list)
    output_bytes: int = 0
    output_size: tuple[int, int] = (0, 0)

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def rembg_median(self) -> float | None:
        return statistics.median(self.rembg) if self.rembg else None

    added: float | None = None  # over the default job of the same image, as a fraction
    added_cpu: float | None = None  # the same, in CPU seconds

    @property
    def speedup(self) -> float | None:
        rembg = self.rembg_median
        return None if rembg is None else rembg / self.ours_median


def _options(fields: dict):

    values = dict(fields)
    if "crop_margin" in values:
        values["crop_margin"] = parsers.parse_crop_margin(values["crop_margin"])
    return options.OutputOptions(**values)


def _rembg_matting_child(data: bytes, model: str, memory: int, queue) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        from rembg import new_session, remove

        session = new_session(model, providers=["CPUExecutionProvider"])
        started = time.perf_counter()
        remove(data, session=session, alpha_matting=True)
        queue.put(("ok", time.perf_counter() - started))
    except MemoryError:
        queue.put(("error", f"out of memory at a {memory / 1024**3:.0f} GB cap"))
    except Exception as exc:  # report, never fail the benchmark
        queue.put(("error", f"{type(exc).__name__}: {str(exc)[:80]}"))


def rembg_matting_capped(data: bytes, model: str, *, timeout: float, memory: int):
    """(seconds, "") or (None, why it did not finish)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_rembg_matting_child, args=(data, model, memory, queue))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        return None, f"stopped after {timeout:.0f} s"
    if queue.empty():
        return None, f"child exited with code {child.exitcode}"
    status, value = queue.get()
    return (value, "") if status == "ok" else (None, value)


def run(
    *,
    model: str = "u2net",
    runs: int = 3,
    runs_12mp: int = 1,
    rembg_matting_timeout: float = REMBG_MATTING_TIMEOUT_S,
    rembg_matting_memory: int = REMBG_MATTING_MEMORY_BYTES,
    options: tuple = OPTIONS,
    images: tuple = IMAGES,
    log=print,
) -> list[Row]:
    """Times every option on every image; returns one Row per pair."""
    os.environ.setdefault("U2NET_HOME", str(ROOT / "var" / "models"))
    from rembg import new_session, remove

    from imaging import pipeline

    session = new_session(model, providers=["CPUExecutionProvider"])
    photos = {name: make_photo(photo, size) for name, photo, size in images}
    # The background: as many pixels as the photo, 4:3 (the photo is square).
    backgrounds = {
        name: make_photo("coffee", (round((w * h * 4 / 3) ** 0.5), round((w * h * 3 / 4) ** 0.5)))
        for name, _, (w, h) in images
    }
    # Untimed warm-up of both paths: ORT's arena, numba's JIT for pymatting.
    warm = make_photo("astronaut", (256, 256))
    remove(warm, session=session, alpha_matting=True)
    for _, fields, _, _ in options:
        pipeline.remove_background(
            warm,
            session,
            max_pixels=10**9,
            options=_options(fields),
            background=make_photo("coffee", (300, 200)) if "bg_image" in fields else None,
        )

    rows = []
    for name, _, size in images:
        data = photos[name]
        count = runs_12mp if size[0] * size[1] > 4_000_000 else runs
        for label, fields, rembg_kwargs, rembg_call in options:
            row = Row(label, name, size[0] * size[1], rembg_call)
            opts = _options(fields)
            background = backgrounds[name] if "bg_image" in fields else None
            capped = rembg_kwargs.get("alpha_matting") and size[0] * size[1] > 4_000_000
            for _ in range(count):
                if fields:
                    started, cpu = time.perf_counter(), time.process_time()
                    pipeline.remove_background(data, session, max_pixels=10**9)
                    row.paired_defaults.append(time.perf_counter() - started)
                    row.paired_defaults_cpu.append(time.process_time() - cpu)
                if not capped:
                    started = time.perf_counter()
                    remove(data, session=session, **rembg_kwargs)
                    row.rembg.append(time.perf_counter() - started)
                started, cpu = time.perf_counter(), time.process_time()
                cutout = pipeline.remove_background(
                    data, session, max_pixels=10**9, options=opts, background=background
                )
                row.ours.append(time.perf_counter() - started)
                row.ours_cpu.append(time.process_time() - cpu)
            if capped:
                seconds, row.rembg_note = rembg_matting_capped(
                    data, model, timeout=rembg_matting_timeout, memory=rembg_matting_memory
                )
                if seconds is not None:
                    row.rembg.append(seconds)
            row.output_bytes = len(cutout.data)
            row.output_size = (cutout.width, cutout.height)
            if fields:
                row.added = row.ours_median / statistics.median(row.paired_defaults) - 1
                row.added_cpu = (
                    statistics.median(row.ours_cpu) / statistics.median(row.paired_defaults_cpu) - 1
                )
            rows.append(row)
            log(format_line(row))
    return rows


def format_line(row: Row) -> str:
    rembg = f"{row.rembg_median:7.2f}s" if row.rembg_median is not None else row.rembg_note
    speedup = f"x{row.speedup:.1f}" if row.speedup is not None else ""
    added = (
        f" {row.added:+.0%} vs defaults ({row.added_cpu:+.0%} CPU)" if row.added is not None else ""
    )
    return (
        f"  {row.image:6s} {row.option:22s} ours {row.ours_median:6.2f}s{added}  "
        f"rembg {rembg}  {speedup}  ({row.output_bytes / 1e6:.2f} MB, "
        f"{row.output_size[0]}x{row.output_size[1]})"
    )


def markdown(rows: list[Row], *, model: str) -> str:
    lines = [
        f"Model {model}; median of the runs; seconds per call in one process "
        "(decode, model, options, encode).",
        "",
        "| image | option | ours (s) | vs defaults | vs defaults, CPU | closest rembg call | "
        "rembg (s) | rembg / ours | output |",
        "|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for row in rows:
        rembg = f"{row.rembg_median:.2f}" if row.rembg_median is not None else row.rembg_note
        speedup = f"{row.speedup:.1f}x" if row.speedup is not None else "—"
        added = f"{row.added:+.0%}" if row.added is not None else "—"
        added_cpu = f"{row.added_cpu:+.0%}" if row.added_cpu is not None else "—"
        lines.append(
            f"| {row.image} | {row.option} | {row.ours_median:.2f} | {added} | {added_cpu} | "
            f"`{row.rembg_call}` | "
            f"{rembg} | {speedup} | {row.output_size[0]}×{row.output_size[1]}, "
            f"{row.output_bytes / 1e6:.2f} MB |"
        )
    return "\n".join(lines) + "\n"


def add_to_report(path: Path, rows: list[Row], *, model: str = "u2net") -> None:
    """Puts the options table into ``make bench``'s report, before its notes."""
    section = (
        "## Output options\n\n"
        "Each option of the seed API, at 1 MP and 12 MP, against the closest `rembg.remove()` "
        "call (`bench/bench_options.py`; `make bench BENCH_ARGS=--no-options` skips it). "
        "The `defaults (png)` row is the path a request without options takes.\n\n"
        + markdown(rows, model=model)
        + "\n"
    )
    insert_before_notes(path, section)


def insert_before_notes(path: Path, section: str) -> None:
    """Puts a section into ``make bench``'s report: in place of the one with
    the same heading from an earlier run, else before its notes."""
    text = path.read_text()
    heading = "\n" + section.split("\n", 1)[0] + "\n"
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + len(heading))
        end = len(text) if end < 0 else end + 1
        path.write_text(text[: start + 1] + section.rstrip("\n") + "\n\n" + text[end:])
        return
    notes = text.find("\n## Notes\n")
    if notes < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        text = text[: notes + 1] + section + "\n" + text[notes + 1 :]
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="u2net")
    parser.add_argument("--runs", type=int, default=3, help="timed runs at 1 MP (default 3)")
    parser.add_argument("--runs-12mp", type=int, default=1, help="timed runs at 12 MP")
    parser.add_argument(
        "--rembg-matting-timeout",
        type=float,
        default=REMBG_MATTING_TIMEOUT_S,
        help="seconds rembg's 12 MP alpha matting may take",
    )
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="LABEL",
        help="time only the options whose label starts with one of these (defaults always)",
    )
    parser.add_argument(
        "--small",
        action="store_true",
        help="a quick check that it runs: one 0.25 MP photo, one run, no 12 MP",
    )
    args = parser.parse_args()
    if not (ROOT / "var" / "models" / f"{args.model}.onnx").is_file():
        print("Model weights missing: run `make setup` first.", file=sys.stderr)
        return 2
    began = time.monotonic()
    print(f"Output options vs rembg ({args.model})", flush=True)
    rows = run(
        model=args.model,
        runs=1 if args.small else args.runs,
        runs_12mp=args.runs_12mp,
        rembg_matting_timeout=args.rembg_matting_timeout,
        images=(("0.25 MP", "astronaut", (500, 500)),) if args.small else IMAGES,
        options=tuple(
            row
            for row in OPTIONS
            if not args.only or not row[1] or row[0].startswith(tuple(args.only))
        ),
        log=lambda line: print(line, flush=True),
    )
    table = markdown(rows, model=args.model)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    print(f"({time.monotonic() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
