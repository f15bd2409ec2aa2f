"""(h) of `make bench`: the service side by side with `rembg s`, rembg's own HTTP server."""

from __future__ import annotations

from bench.common import MODELS, Target, agreement, make_photo  # noqa: F401
from bench.service import Client, Service, free_port  # noqa: F401

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
