"""Every command README.md and docs/*.md show works as printed.

The commands are read from the Markdown itself: fenced shell blocks, inline
code that is a command (a program and its arguments: ``.venv/bin/...``,
``curl ...``, ``make ...``, ``python ...``, ``manage.py ...``, ``pip ...``),
and fenced Python and JavaScript snippets. Each one either runs here,
verbatim, in a plain environment (no SECRET_KEY, no DJANGO_DEBUG: only what a
new user's shell has), or is exempt with the reason it cannot run in a test
and what covers it instead. A command added to the docs fails
``test_every_command_..._is_run_here_or_exempt`` until it is one or the other.

``make`` commands are classified by target: a command whose targets all run
here (``make setup``, ``make models``, ``make format``, ``make lock``...) is
run as printed in a scratch copy of the checkout, so that the targets that
rewrite files rewrite the copy's; one that serves until stopped or
benchmarks for minutes is exempt with that target's reason.

Only placeholders a reader must replace anyway are substituted: the API key,
the photo's path, the example task id, the account name, the webhook secret,
the address of `make run`'s server (here the test's live server) and the
request object a receiver's framework would hand the Python snippet.
"""

import json
import os
import pty
import re
import select
import shlex
import shutil
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.images import photo_bytes
from tests.readme_commands import EXEMPT, MAKE_TARGETS, RUN

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
SNIPPET_LANGUAGES = {"python", "py", "js", "javascript"}
# An inline span is a command when it is a program with arguments.
COMMAND = re.compile(
    r"(?:[A-Z_][A-Z0-9_]*=\S*\s+)*"
    r"(?:\.venv/bin/\S+|\./\S+|curl|make|python3?|pip3?|npm|manage\.py|gunicorn|honcho)\s+\S"
)
COMMAND_TIMEOUT = 300


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of each fenced code block."""
    return re.findall(r"^```([^\n`]*)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def documented_commands() -> list[tuple[str, str]]:
    """(file name, command text) for every command and snippet the docs show."""
    commands = []
    for path in DOCS:
        text = path.read_text()
        for info, body in fenced_blocks(text):
            if info.strip() in SHELL_LANGUAGES | SNIPPET_LANGUAGES:
                commands.append((path.name, body))
        prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
        for span in re.findall(r"`([^`\n]+)`", prose):
            if COMMAND.match(span):
                commands.append((path.name, span))
    return commands


def shell_lines(text: str) -> set[str]:
    """The lines of a command without comments or surplus spaces."""
    lines = (re.sub(r"(^|\s)#.*", "", line) for line in text.splitlines())
    return {" ".join(line.split()) for line in lines if line.strip()}


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


def classify(name: str, text: str, shown: list[tuple[str, str]]) -> str | None:
    """How a documented command is covered: "run: <test>", "make", "exempt: <why>",
    "shown: <command>" (a line of a block that is covered), or None."""
    first = first_line(text)
    for (file, start), test in RUN.items():
        if file == name and first.startswith(start):
            return f"run: {test}"
    for (file, start), reason in EXEMPT.items():
        if file == name and first.startswith(start):
            return f"exempt: {reason}"
    targets = make_targets(text)
    if targets and targets <= MAKE_TARGETS.keys():
        reasons = [MAKE_TARGETS[target] for target in sorted(targets) if MAKE_TARGETS[target]]
        return f"exempt: {reasons[0]}" if reasons else "make"
    if len(shell_lines(text)) == 1:
        for other_name, other in shown:
            if (
                other_name == name
                and other != text
                and shell_lines(text) <= shell_lines(other)
                and classify(other_name, other, []) is not None
            ):
                return f"shown: {first_line(other)}"
    return None


def test_every_command_the_readme_and_docs_show_is_run_here_or_exempt():
    shown = documented_commands()
    unclassified = [
        (name, first_line(text)) for name, text in shown if classify(name, text, shown) is None
    ]
    assert unclassified == [], "run these in tests/test_readme.py or exempt them, with a reason"
    for entry in (*RUN, *EXEMPT):
        assert any(
            name == entry[0] and first_line(text).startswith(entry[1]) for name, text in shown
        ), f"stale: {entry}"
    for test in set(RUN.values()):
        assert callable(globals().get(test)), f"RUN names a test this file lacks: {test}"
    for target in MAKE_TARGETS:
        assert re.search(rf"^{re.escape(target)}:", MAKEFILE, flags=re.MULTILINE), target


MAKEFILE = (ROOT / "Makefile").read_text()


def test_every_phony_make_target_has_a_rule():
    """A target named in .PHONY but without a rule does nothing, silently: a
    merge once dropped `chromium:`, and `make test` stopped installing it."""
    phony = re.search(r"^\.PHONY:(.*)$", MAKEFILE, flags=re.MULTILINE).group(1).split()
    missing = [
        name
        for name in phony
        if not re.search(rf"^{re.escape(name)}:(?!=)", MAKEFILE, flags=re.MULTILINE)
    ]
    assert not missing, f"named in .PHONY without a rule: {missing}"


def runnable_make_commands() -> list[str]:
    """Each make command the docs show whose targets all run here, once."""
    shown = documented_commands()
    found = []
    for name, text in shown:
        if classify(name, text, shown) == "make" and text.strip() not in found:
            found.append(text.strip())
    return found


def scratch_checkout(destination: Path) -> Path:
    """A copy of the checkout (tracked and untracked files, as they are now,
    their times kept so make sees what it would here), sharing the
    virtualenv and the model weights but nothing written by running."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to((ROOT / ".venv").resolve())
    (destination / "var").mkdir()
    (destination / "var" / "models").symlink_to((ROOT / "var" / "models").resolve())
    return destination


def test_the_make_commands_the_docs_show_work_as_printed_in_a_fresh_checkout(tmp_path):
    commands = runnable_make_commands()
    run_targets = set().union(*(make_targets(text) for text in commands))
    # The docs show these; a doc that stops showing one drops it from here.
    assert {"setup", "models", "format", "lock"} <= run_targets, commands
    checkout = scratch_checkout(tmp_path / "checkout")
    sources = {
        path: path.read_bytes() for path in checkout.rglob("*.py") if ".venv" not in path.parts
    }
    for text in commands:
        run_shell(text, cwd=checkout, env=plain_environment())

    # `make setup`: a development .env, the weights, a migrated database.
    dotenv_text = (checkout / ".env").read_text()
    assert "DJANGO_DEBUG=1" in dotenv_text and re.search(r"^SECRET_KEY=\S{40,}$", dotenv_text, re.M)
    with sqlite3.connect(checkout / "var" / "db.sqlite3") as db:
        applied = {app for (app,) in db.execute("SELECT DISTINCT app FROM django_migrations")}
    assert {"accounts", "billing", "removal", "webhooks"} <= applied
    # `make format`: the checkout was formatted already, so nothing changed.
    changed = [
        str(p.relative_to(checkout)) for p, data in sources.items() if p.read_bytes() != data
    ]
    assert changed == []

    # `make lock`: requirements.txt re-pinned from the virtualenv, every package still there.
    def pinned(path: Path) -> set[str]:
        names = re.findall(r"^([A-Za-z0-9_.-]+)==", path.read_text(), flags=re.MULTILINE)
        return {name.lower().replace("_", "-") for name in names}

    assert pinned(ROOT / "requirements.txt") <= pinned(checkout / "requirements.txt")


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


def run_python(program: str, *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``program`` run by the virtualenv's Python, as a reader's script would be."""
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", program],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


def test_the_webhook_secret_command_prints_what_the_python_snippet_verifies_with(dotenv, tmp_path):
    from webhooks.models import WebhookEvent
    from webhooks.services import signed_headers

    env = plain_environment(DATA_DIR=str(tmp_path))
    run_shell(command("README.md", ".venv/bin/python manage.py migrate"), cwd=ROOT, env=env)
    create = first_line(command("README.md", '.venv/bin/python manage.py create_account "Acme"'))
    run_shell(create, cwd=ROOT, env=env)
    # ACCOUNT and the optional [--rotate] are the synopsis' placeholders.
    synopsis = command("README.md", ".venv/bin/python manage.py webhook_secret")
    printed = synopsis.replace("ACCOUNT", "Acme").replace(" [--rotate]", "")
    rotate = synopsis.replace("ACCOUNT", "Acme").replace("[--rotate]", "--rotate")
    secret = run_shell(printed, cwd=ROOT, env=env).stdout.strip().splitlines()[-1]
    assert secret == run_shell(printed, cwd=ROOT, env=env).stdout.strip().splitlines()[-1]
    rotated = run_shell(rotate, cwd=ROOT, env=env).stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_") and rotated.startswith("whsec_") and rotated != secret

    # A body and headers as the service signs a delivery, after the rotation
    # (both secrets sign for a day); the snippet verifies them with the old one.
    body = json.dumps(
        {"type": "removal.completed", "timestamp": "2026-11-27T10:00:03.512906Z", "task_id": "t"},
        separators=(",", ":"),
    )
    event = WebhookEvent(id="msg_2Lh5readme", body=body)
    headers = signed_headers(event=event, secrets=[rotated, secret], at=datetime.now(UTC))
    snippet = command("README.md", "from standardwebhooks import Webhook")
    assert '"whsec_..."' in snippet
    snippet = snippet.replace('"whsec_..."', repr(secret))

    def receive(raw: bytes) -> subprocess.CompletedProcess:
        # What the receiver's framework hands it: the raw body and the headers.
        request = (
            "import json, types\n"
            f"request = types.SimpleNamespace(body={raw!r}, headers={headers!r})\n"
        )
        return run_python(request + snippet + "\nprint(json.dumps(event))\n", cwd=tmp_path, env=env)

    verified = receive(body.encode())
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout) == json.loads(body)
    forged = receive(body.replace("completed", "failed").encode())
    assert forged.returncode != 0
    assert "WebhookVerificationError" in forged.stderr


@pytest.mark.model
def test_the_remove_bg_api_snippet_removes_a_background(
    live_server, inline_worker, api_key, account, tmp_path
):
    from removal.models import RemovalJob

    snippet = command("README.md", "import remove_bg_api")
    assert "https://bg.example.com/v1.0" in snippet and "YOUR_API_KEY" in snippet
    snippet = snippet.replace("https://bg.example.com/v1.0", f"{live_server.url}/v1.0")
    snippet = snippet.replace("YOUR_API_KEY", api_key)
    (tmp_path / "photo.jpg").write_bytes(photo_bytes("astronaut"))
    result = run_python(
        snippet + '\nopen("cutout.png", "wb").write(png)\n', cwd=tmp_path, env=plain_environment()
    )
    assert result.returncode == 0, result.stderr
    cutout = Image.open(tmp_path / "cutout.png")
    # remove.bg's default size, "preview": at most 0.25 megapixels.
    assert (cutout.format, cutout.mode, cutout.size) == ("PNG", "RGBA", (500, 500))
    job = RemovalJob.objects.get(account=account)
    assert job.origin == RemovalJob.Origin.REMOVEBG
    assert job.status == RemovalJob.Status.COMPLETED
