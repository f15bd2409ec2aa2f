"""The production web server: gunicorn's uvicorn worker serving revid.asgi
with debug off, static files from collectstatic served (compressed) by
whitenoise, as `make serve` runs it."""

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests

from accounts.services import create_api_key
from billing.services import open_account
from tests.conftest import ROOT, free_port, subprocess_env, wait_for

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def production_env(transactional_db, tmp_path) -> dict[str, str]:
    return subprocess_env(STATIC_ROOT=str(tmp_path / "static"), DJANGO_DEBUG="0")


@contextmanager
def running_gunicorn(env: dict[str, str], tmp_path, *, workers: int = 1):
    """gunicorn as `make serve` runs it, on a free port; yields its URL."""
    collect = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collect.returncode == 0, collect.stderr
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "revid.asgi:application"]
            + ["--worker-class", "revid.server.Worker", "--bind", f"127.0.0.1:{port}"]
            + ["--workers", str(workers), "--access-logfile", "-"],
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
            return requests.get(f"{url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout=60, message="gunicorn never answered")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def gunicorn(production_env, tmp_path):
    with running_gunicorn(production_env, tmp_path) as url:
        yield url


def test_gunicorn_serves_collected_static_files_compressed_through_whitenoise(
    gunicorn, production_env
):
    # collectstatic with debug off stored compressed copies beside the files.
    static_root = production_env["STATIC_ROOT"]
    assert os.path.isfile(os.path.join(static_root, "admin", "css", "base.css.gz"))

    response = requests.get(
        f"{gunicorn}/static/admin/css/base.css", headers={"Accept-Encoding": "gzip"}, timeout=10
    )
    assert response.status_code == 200
    assert response.headers["Server"] == "uvicorn"
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"].startswith("text/css")
    assert b"body" in response.content  # requests decompressed real CSS

    missing = requests.get(f"{gunicorn}/static/admin/css/no-such-file.css", timeout=10)
    assert missing.status_code == 404


def test_gunicorn_serves_the_api_and_probes_with_debug_off(gunicorn):
    ready = requests.get(f"{gunicorn}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"

    models = requests.get(f"{gunicorn}/api/models", timeout=10)
    assert models.status_code == 200
    assert {model["name"] for model in models.json()["models"]} >= {"u2net", "u2netp"}

    # Debug is off: an unknown API path is the JSON 404, not Django's debug page.
    missing = requests.get(f"{gunicorn}/api/nothing-here", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["success"] is False


def test_make_serve_refuses_to_start_without_a_secret_key(production_env):
    env = {key: value for key, value in production_env.items() if key != "SECRET_KEY"}
    result = subprocess.run(
        ["make", "--no-print-directory", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "set SECRET_KEY" in result.stderr


def test_the_rate_limit_is_shared_by_every_web_process(production_env, tmp_path):
    """Two gunicorn workers are two processes: they must count against one limit."""
    limit, attempts = 10, 60
    _, key = create_api_key(account=open_account(name="busy", credits=0), name="k")
    env = {**production_env, "REMOVAL_RATE_LIMIT": f"{limit}/hour"}
    with running_gunicorn(env, tmp_path, workers=2) as url:

        def submit(_):
            # No body: an allowed request is a 400 (no file), a refused one a
            # 429; either way the limit is checked first and nothing is charged.
            return requests.post(
                f"{url}/paid/image/remove/background", headers={"x-api-key": key}, timeout=30
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(submit, range(attempts)))
    assert statuses.count(429) == attempts - limit, statuses
    assert set(statuses) == {400, 429}


def _chunks(data: bytes, size: int = 256 * 1024):
    """A generator body: requests sends it chunked, without Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_gunicorn_accepts_a_chunked_upload_and_refuses_a_chunked_21_mb_one(
    gunicorn, account, api_key
):
    from tests.doors.test_uploads import BOUNDARY, multipart
    from tests.images import photo_bytes

    url = f"{gunicorn}/paid/image/remove/background"
    headers = {
        "x-api-key": api_key,
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    accepted = requests.post(
        url, data=_chunks(multipart(photo_bytes())), headers=headers, timeout=60
    )
    assert accepted.request.headers.get("Transfer-Encoding") == "chunked"
    assert accepted.status_code == 202, accepted.text

    too_big = multipart(b"\x89PNG\r\n\x1a\n" + b"\0" * (21 * 1024 * 1024))
    refused = requests.post(url, data=_chunks(too_big), headers=headers, timeout=60)
    assert refused.status_code == 413, refused.text
    assert refused.json()["code"] == "file_too_large"
    account.refresh_from_db()
    assert account.credit_balance == 1000 - 25


def test_the_server_refuses_a_30_mb_upload_from_its_length_and_charges_nothing(
    gunicorn, account, api_key
):
    """The ASGI handler reads no byte of a body whose Content-Length is over the
    limit (revid/asgi.py): the view still checks the key first, then answers 413."""
    data = b"\x89PNG\r\n\x1a\n" + b"\0" * (30 * 1024 * 1024)
    unknown = requests.post(
        f"{gunicorn}/paid/image/remove/background",
        headers={"x-api-key": "wrong"},
        files={"file": ("big.png", data, "image/png")},
        timeout=60,
    )
    assert unknown.status_code == 401
    response = requests.post(
        f"{gunicorn}/paid/image/remove/background",
        headers={"x-api-key": api_key},
        files={"file": ("big.png", data, "image/png")},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json() == {
        "success": False,
        "error": "File too large: 30.0 MB; the limit is 20.0 MB.",
        "code": "file_too_large",
    }
    account.refresh_from_db()
    assert account.credit_balance == 1000
