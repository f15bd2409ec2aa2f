"""Every command README.md and docs/*.md show works as printed.

The commands are read from the Markdown itself: fenced ``sh`` blocks, and
inline code that starts with ``.venv/bin/``, ``curl `` or ``make ``. Each one
either runs here, verbatim, in a plain environment (no SECRET_KEY, no
DJANGO_DEBUG: only what a new user's shell has, plus a DATA_DIR of the test's
own so nothing touches var/), or is listed in EXEMPT or MAKE_TARGETS with the
reason it cannot run in a test and what covers it instead. A command added
to the docs fails ``test_every_command_..._is_run_here_or_exempt`` until it
is one or the other.

Only placeholders a reader must replace anyway are substituted: the API key,
the photo's path, the example task id and the address of `make run`'s
server (here the test's live server).
"""

import json
import os
import pty
import re
import select
import shlex
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
INLINE_PREFIXES = (".venv/bin/", "curl ", "make ")
COMMAND_TIMEOUT = 300

# Commands that run in the tests below, by (file, first line).
RUN = {
    ("README.md", "curl -X POST \\"): "test_the_readme_curl_examples_remove_a_background",
    (
        "README.md",
        "curl 'http://127.0.0.1:8000/api/get/30063660-c7f2-49dd-935f-ab48d69e3f51?wait=30'",
    ): ("test_the_readme_curl_examples_remove_a_background"),
    ("README.md", '.venv/bin/python -c "import skimage.data, PIL.Image; '): (
        "test_the_readme_curl_examples_remove_a_background"
    ),
    ("README.md", '.venv/bin/python manage.py create_account "Acme" --credits 500'): (
        "test_the_account_commands_work_in_a_plain_shell"
    ),
    ("README.md", ".venv/bin/python manage.py migrate --noinput"): (
        "test_the_account_commands_work_in_a_plain_shell"
    ),
    ("deploy.md", "make venv && .venv/bin/python manage.py migrate --noinput"): (
        "test_the_account_commands_work_in_a_plain_shell"
    ),
    ("deploy.md", ".venv/bin/python manage.py create_account acme --credits 1000"): (
        "test_the_account_commands_work_in_a_plain_shell"
    ),
}

# Commands that cannot run in a test, by (file, first line), and why.
EXEMPT = {
    ("README.md", ".venv/bin/python manage.py install_models [names...]"): (
        "`[names...]` is a placeholder; `make models` runs it before every make run and make test"
    ),
    ("deploy.md", "export SECRET_KEY='a long random string, THE SAME on every web and worker"): (
        "sets a production machine's environment; every value is a placeholder"
    ),
    ("deploy.md", "curl -H 'Host: api.example.com' http://web-1:8000/readyz"): (
        "a host of the reader's own deployment; tests/removal/test_health.py tests /readyz"
    ),
    ("README.md", ".venv/bin/python manage.py options_table --write"): (
        "rewrites README.md's options table; tests/doors/test_option_table.py checks the table "
        "in README.md is the one it writes"
    ),
    ("architecture.md", ".venv/bin/python manage.py options_table --write"): (
        "rewrites README.md's options table; tests/doors/test_option_table.py checks the table "
        "in README.md is the one it writes"
    ),
    ("README.md", "curl -s http://127.0.0.1:8000/metrics | grep '^revid_'"): (
        "needs make run's server; tests/doors/test_metrics.py scrapes /metrics the same way, "
        "from loopback with DJANGO_DEBUG on"
    ),
    ("README.md", "curl -X POST http://127.0.0.1:8000/paid/image/remove/background/batch \\"): (
        "shoe.jpg and bag.jpg are the reader's own files; tests/doors/test_batches.py sends "
        "the same multipart fields (files, model, format) through HTTP"
    ),
    ("api-contract.md", "curl -X POST \\"): (
        "the contract's example against the original hosted service; the README's copy of the "
        "same request runs against a live server in this file"
    ),
}

# `make` commands, by target: every target a doc runs must be listed here.
MAKE_TARGETS = {
    "run": "serves until stopped: tests/e2e/test_make_run.py runs it and stops it",
    "test": "is this suite",
    "setup": "runs before every make run and make test",
    "venv": "runs before every make run and make test (and here, before migrate)",
    "models": "runs before every make run and make test; downloads weights on a new machine",
    "serve": (
        "a production server that runs until stopped; tests/e2e/test_production_server.py "
        "runs gunicorn as it does and checks its refusal without SECRET_KEY"
    ),
    "worker": "runs qcluster until stopped, as every end-to-end test does (start_worker)",
    "webhook-worker": (
        "runs the webhook qcluster until stopped, as tests/e2e/test_webhooks_e2e.py does"
    ),
    "bench": "a benchmark of several minutes that rewrites docs/benchmarks.md",
    "bench-workers": "a benchmark of several minutes",
    "format": "rewrites the source files",
    "lint": "runs ruff and lint-imports, as the first steps of make test do",
    "lock": "rewrites requirements.txt",
    "screenshots": (
        "rewrites docs/screenshots; its browser test runs in tests/e2e/test_browser.py"
    ),
}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of each fenced code block."""
    return re.findall(r"^```([^\n`]*)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def documented_commands() -> list[tuple[str, str]]:
    """(file name, command text) for every command the docs show."""
    commands = []
    for path in DOCS:
        text = path.read_text()
        for info, body in fenced_blocks(text):
            if info.strip() in SHELL_LANGUAGES:
                commands.append((path.name, body))
        prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
        for span in re.findall(r"`([^`\n]+)`", prose):
            if span.startswith(INLINE_PREFIXES):
                commands.append((path.name, span))
    return commands


def first_line(command: str) -> str:
    return command.strip().splitlines()[0].strip()


def make_targets(command: str) -> set[str] | None:
    """The targets of a command made only of `make` invocations, else None."""
    targets: set[str] = set()
    for line in command.strip().splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        for part in filter(None, (p.strip() for p in line.split("&&"))):
            words = shlex.split(part.replace("<cores>", "N"))
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words.pop(0)
            if not words or words[0] != "make":
                return None
            targets |= {w for w in words[1:] if "=" not in w and not w.startswith("-")}
    return targets


def command(file_name: str, first: str) -> str:
    """The documented command of ``file_name`` that starts with ``first``."""
    for name, text in documented_commands():
        if name == file_name and first_line(text).startswith(first):
            return text
    raise AssertionError(f"{file_name} no longer shows a command starting {first!r}")


def plain_environment(**extra: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "USER", "TMPDIR")
    return {key: os.environ[key] for key in keep if key in os.environ} | {"TERM": "dumb"} | extra


def run_shell(text: str, *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", "-e", "-c", text],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert result.returncode == 0, f"{text}\nfailed:\n{result.stdout}\n{result.stderr}"
    return result


def run_in_a_terminal(
    text: str, *, env: dict[str, str], answers: list[tuple[str, str]]
) -> tuple[int, str]:
    """Runs ``text`` with a terminal (createsuperuser asks its questions only
    there), answering each prompt in ``answers`` in turn."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the shell
        os.chdir(ROOT)
        os.execve("/bin/bash", ["bash", "-e", "-c", text], env)
    output = ""
    pending = list(answers)
    answered_up_to = 0
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the shell exited and closed the terminal
                break
            if not chunk:
                break
            output += chunk.decode(errors="replace")
        if pending and pending[0][0] in output[answered_up_to:]:
            prompt, answer = pending.pop(0)
            answered_up_to = output.index(prompt, answered_up_to) + len(prompt)
            os.write(fd, answer.encode() + b"\n")
    else:
        os.kill(pid, 9)
        raise AssertionError(f"{text}\ndid not finish:\n{output}")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output


@pytest.fixture(scope="module")
def dotenv():
    """The set-up's .env (make run and make test write it first)."""
    subprocess.run(["make", "--no-print-directory", ".env"], cwd=ROOT, check=True, timeout=60)
    assert (ROOT / ".env").exists()


def listed(name: str, text: str, entries: dict[tuple[str, str], str]) -> bool:
    return any(name == file and first_line(text).startswith(first) for file, first in entries)


def test_every_command_the_readme_and_docs_show_is_run_here_or_exempt():
    shown = documented_commands()
    unclassified = []
    for name, text in shown:
        if listed(name, text, RUN) or listed(name, text, EXEMPT):
            continue
        targets = make_targets(text)
        if targets and targets <= MAKE_TARGETS.keys():
            continue
        unclassified.append((name, first_line(text)))
    assert unclassified == [], "run these in tests/test_readme.py or exempt them, with a reason"
    for entry in (*RUN, *EXEMPT):
        assert any(listed(name, text, {entry: ""}) for name, text in shown), f"stale: {entry}"


def test_the_account_commands_work_in_a_plain_shell(dotenv, tmp_path):
    env = plain_environment(DATA_DIR=str(tmp_path))
    # The database first: the README's production line (here the .env gives
    # the SECRET_KEY a production machine sets), then deploy.md's.
    run_shell(command("README.md", ".venv/bin/python manage.py migrate"), cwd=ROOT, env=env)
    run_shell(command("deploy.md", "make venv && .venv/bin/python manage.py"), cwd=ROOT, env=env)

    password = "a-long-Unusual-passphrase-42"
    code, output = run_in_a_terminal(
        command("README.md", '.venv/bin/python manage.py create_account "Acme"'),
        env=env,
        answers=[
            ("Username", "admin"),
            ("Email address", "admin@example.com"),
            ("Password:", password),
            ("Password (again)", password),
        ],
    )
    assert code == 0, output
    assert "Created account 'Acme' with 500 credits." in output
    assert "Acme: balance 750" in output
    assert "Superuser created successfully." in output

    checklist = run_shell(
        command("deploy.md", ".venv/bin/python manage.py create_account acme"), cwd=ROOT, env=env
    )
    key = checklist.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[A-Za-z0-9]+\.[A-Za-z0-9]+", key), checklist.stdout

    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        balances = dict(db.execute("SELECT name, credit_balance FROM accounts_account"))
        admins = db.execute("SELECT username FROM auth_user WHERE is_superuser").fetchall()
    assert balances == {"Acme": 750, "acme": 1000}
    assert admins == [("admin",)]


def make_run_server(text: str, live_server) -> str:
    return text.replace("http://127.0.0.1:8000", live_server.url)


@pytest.mark.e2e
@pytest.mark.model
def test_the_readme_curl_examples_remove_a_background(
    dotenv, live_server, start_worker, api_key, tmp_path
):
    start_worker()
    # The README's "no photo at hand?" line, in a folder of its own.
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    run_shell(
        command("README.md", '.venv/bin/python -c "import skimage.data'),
        cwd=tmp_path,
        env=plain_environment(),
    )
    photo = tmp_path / "astronaut.jpg"
    assert Image.open(photo).size == (512, 512)

    submit = make_run_server(command("README.md", "curl -X POST"), live_server)
    submit = submit.replace("YOUR_API_KEY", api_key).replace("/path/to/image.jpg", str(photo))
    accepted = json.loads(run_shell(submit, cwd=tmp_path, env=plain_environment()).stdout)
    assert accepted["success"] is True
    assert accepted["status"] == "pending"
    task_id = accepted["task_id"]
    # The README's status call waits (?wait=30) until the job ends.
    poll = make_run_server(
        command("README.md", "curl 'http://127.0.0.1:8000/api/get/"), live_server
    )
    poll = poll.replace("30063660-c7f2-49dd-935f-ab48d69e3f51", task_id)
    status = run_shell(poll, cwd=tmp_path, env=plain_environment()).stdout
    assert json.loads(status)["status"] == "completed"
    cutout = Image.open(tmp_path / "cutout.png")
    assert (cutout.format, cutout.mode, cutout.size) == ("PNG", "RGBA", (512, 512))
