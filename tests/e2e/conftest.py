"""Browser fixtures shared by the Playwright tests: Debian's chromium driven
by Playwright's sync API, one fresh context per test, a customer who logs in."""

import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from accounts.services import add_member
from tests.conftest import ROOT, free_port, subprocess_env, wait_for

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # the test makes between page actions are still plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 860}, accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def customer(account):
    add_member(account=account, username="alice", password=PASSWORD)
    return account


def log_in(page, live_server, username: str, path: str = "/"):
    page.goto(f"{live_server.url}{path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


@contextmanager
def serve_process(
    tmp_path, *, path: str = "/healthz", headers: dict | None = None, **extra_env: str
):
    """`make serve` on a free port, against the test database, once ``path``
    answers 200; yields (its process, its URL, its log) and stops the whole
    process group at the end if the test has not."""
    port = free_port()
    env = subprocess_env(
        STATIC_ROOT=str(tmp_path / "static"),
        HOST="127.0.0.1",
        PORT=str(port),
        **extra_env,
    )
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("wb") as log:
        # -o venv: the test's virtualenv is in place; do not reinstall it.
        process = subprocess.Popen(
            ["make", "--no-print-directory", "-o", "venv", "serve"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def up():
        assert process.poll() is None, log_path.read_text()
        try:
            return requests.get(f"{url}{path}", headers=headers, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout=120, message=f"make serve never answered {path}")
        yield process, url, log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # a request the test left hanging
            process.wait(timeout=30)


@contextmanager
def make_serve(tmp_path, **extra_env: str):
    """`make serve` (``serve_process``); yields its URL and log, and checks
    at the end that the log has no traceback and no 500."""
    with serve_process(tmp_path, **extra_env) as (_process, url, log_path):
        yield url, log_path
    assert_clean_log(log_path)


def assert_clean_log(log_path) -> None:
    """A server's log with no traceback and no 500."""
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log and '" 500 ' not in log, log[-3000:]


def timed(call) -> tuple[float, requests.Response]:
    """``call()``'s answer and the seconds it took."""
    started = time.monotonic()
    response = call()
    return time.monotonic() - started, response
