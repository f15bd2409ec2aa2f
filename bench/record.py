"""What a benchmark run measured, and what it changed, kept where it can be checked.

Every figure of docs/benchmarks.md comes from one run; the run's raw numbers
go to bench/out/results.json (git-ignored, every run) and, when the report is
written, to docs/benchmarks.json beside it, so any figure can be traced to
its samples. The settings the benchmark's service runs with that differ from
revid/settings.py's defaults (it turns the submission rate limit off, for
one) are printed at the start and written into both.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"

# Why the benchmark's service sets each variable it sets (bench/run_bench.py's Service).
WHY = {
    "REMOVAL_RATE_LIMIT": "off: the benchmark sends hundreds of jobs a minute from one key",
    "DATA_DIR": "a throwaway folder: its own SQLite database and files",
    "U2NET_HOME": "the weights `make models` installed",
    "SECRET_KEY": "a throwaway key (value not shown)",
    "LOG_LEVEL": "quiet logs: one line per request would be timed too",
    "PYTHONUNBUFFERED": "logs written as they happen",
    "WARM_MODELS": "both benchmarked models loaded before the first job, as a worker would",
    "MODEL_ENGINE": "the opt-in engine measured as a service",
}

_READ = (
    "import json, os, sys\n"
    "import django\n"
    "django.setup()\n"
    "from django.conf import settings\n"
    "names = json.loads(sys.argv[1])\n"
    "print(json.dumps({n: [hasattr(settings, a), repr(getattr(settings, a)) if hasattr("
    "settings, a) else os.environ.get(n)] for n, a in names.items()}))\n"
)
# Variables read into a setting of another name.
SETTING_OF = {"DJANGO_DEBUG": "DEBUG"}


def _read_settings(names: list[str], env: dict[str, str]) -> dict[str, list]:
    result = subprocess.run(
        [sys.executable, "-c", _READ, json.dumps({n: SETTING_OF.get(n, n) for n in names})],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def settings_differing(
    overrides: dict[str, str], inherited: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """Each variable the benchmark sets for its service (``overrides``), and
    each setting it passes on from the shell (``inherited``, this process's
    environment), whose value there differs from the default: revid/settings.py
    with nothing set and no .env."""
    inherited = dict(os.environ) if inherited is None else inherited
    passed_on = {k for k in inherited if k.isupper() and k not in overrides}
    names = sorted(set(overrides) | passed_on)
    plain = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "revid.settings",
        "ENV_FILE": "",  # the defaults, not a development .env
        "SECRET_KEY": overrides.get("SECRET_KEY", "x" * 50),
    }
    service = {**plain, **{k: inherited[k] for k in passed_on}, **overrides}
    defaults, used = _read_settings(names, plain), _read_settings(names, service)
    differing = []
    for name in names:
        is_setting, value = used[name]
        if name in passed_on and not is_setting:
            continue  # PATH, HOME, ...: the shell's, not the service's settings
        if name == "SECRET_KEY":  # required in production: no default to differ from
            value, default = "(hidden)", "unset (required)"
        elif value != defaults[name][1]:
            default = defaults[name][1] or "unset"
        else:
            continue
        why = WHY.get(name, "" if name in overrides else "set in the shell that ran the benchmark")
        differing.append({"name": name, "value": value, "default": default, "why": why})
    return differing


def _describe(d: dict[str, str]) -> str:
    why = f": {d['why']}" if d["why"] else ""
    # Paths inside the checkout as the reader's own checkout would show them.
    value, default = (str(v).replace(str(ROOT), ".") for v in (d["value"], d["default"]))
    return f"{value} (default {default}{why})"


def settings_lines(differing: list[dict[str, str]]) -> list[str]:
    return [f"  {d['name']} = {_describe(d)}" for d in differing]


def settings_markdown(differing: list[dict[str, str]]) -> str:
    return "; ".join(f"`{d['name']}` {_describe(d)}" for d in differing)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "__dict__"):
        return vars(value)
    return str(value)


def save(results: dict[str, Any], *, name: str = "results.json", docs: Path | None = None) -> Path:
    """Writes the run's raw numbers to bench/out/<name> (and docs/benchmarks.json)."""
    record = {
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        **results,
    }
    text = json.dumps(record, default=_plain, indent=1, ensure_ascii=False)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(text)
    if docs is not None:
        (docs / "benchmarks.json").write_text(text)
    return path
