import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections as databases
from django.test import Client
from rest_framework.test import APIClient

from accounts.services import add_member, create_api_key
from billing.services import open_account

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _u2net_home_restored(monkeypatch):
    """A session points rembg at its models folder through U2NET_HOME
    (imaging.sessions); a test with a folder of its own (the stand-in
    models) must not leave it pointing there for the tests after it."""
    monkeypatch.setenv("U2NET_HOME", os.environ.get("U2NET_HOME", str(settings.U2NET_HOME)))


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path_factory):
    """Each test writes uploads and outputs to its own folder."""
    settings.MEDIA_ROOT = str(tmp_path_factory.mktemp("media"))
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def _stop_wait_listeners():
    """A request that waited (?wait=) started a listener with a connection of
    its own, and its sweep a thread with a database connection; stop them
    with the test, before the test database is flushed or dropped
    (PostgreSQL refuses while a connection is open)."""
    yield
    from removal import waiting

    waiting.stop_listeners()


# What ``account`` (and ``other_account``) start with.
ACCOUNT_CREDITS = 1000


@pytest.fixture
def account(db):
    return open_account(name="acme", credits=ACCOUNT_CREDITS)


@pytest.fixture
def other_account(db):
    return open_account(name="outsider", credits=ACCOUNT_CREDITS)


@pytest.fixture
def api_key(account):
    """The plaintext key of ``account`` (the database only has its hash)."""
    _, key = create_api_key(account=account, name="test")
    return key


@pytest.fixture
def api_client(api_key):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    return client


@pytest.fixture
def anon_client():
    return APIClient()


CUSTOMER_PASSWORD = "correct-horse-battery"


@pytest.fixture
def alice(account):
    """A user of ``account`` (alice, alice@example.com) who logs in to the web pages."""
    user = add_member(account=account, username="alice", password=CUSTOMER_PASSWORD).user
    user.email = "alice@example.com"
    user.save(update_fields=["email"])
    return user


@pytest.fixture
def customer_client(alice, client):
    """The test client, logged in as ``alice``."""
    client.force_login(alice)
    return client


@pytest.fixture
def csrf_client(alice):
    """``alice`` logged in, in a client that enforces CSRF like a browser
    (its csrftoken cookie set by a first page)."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/")
    return client


def run_with_settings(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python -c script`` with only ``env`` (and the basics) in its environment."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "revid.settings",
            "DATA_DIR": str(ROOT / "var"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def django_start_error(env: dict[str, str]) -> str:
    """What ``django.setup()`` prints to stderr when it refuses to start under ``env``."""
    result = run_with_settings("import django; django.setup()", {"DJANGO_DEBUG": "1", **env})
    assert result.returncode != 0, "django.setup() accepted the settings"
    return result.stderr


def database_url_for_subprocess() -> str:
    """The URL of the test database this session created, for child processes."""
    db = databases["default"].settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{db['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for_subprocess(),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        U2NET_HOME=str(settings.U2NET_HOME),
        SECRET_KEY=settings.SECRET_KEY,
        DJANGO_DEBUG="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class WorkerProcess:
    """A real ``manage.py qcluster`` in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                # django-q2's graceful stop can take many seconds; a test
                # worker has nothing worth waiting for by now.
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()


@pytest.fixture
def start_worker(transactional_db, tmp_path):
    """Starts real qcluster processes on the test database; stops them after."""
    workers: list[WorkerProcess] = []

    def start(**extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(
            subprocess_env(**extra_env), tmp_path / f"qcluster-{len(workers)}.log"
        )
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(predicate, *, timeout: float, interval: float = 0.2, message: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout}s")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    import requests

    try:
        requests.get(url, timeout=1)
    except requests.RequestException:
        return False
    return True


@contextlib.contextmanager
def server_process(argv: list[str], *, name: str, log_dir: Path):
    """``python argv`` in its own process group, on a free loopback port (``{port}``
    in argv), until its URL answers; yields the URL and stops it afterwards."""
    port = free_port()
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *(arg.format(port=port) for arg in argv)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), timeout=30, message=f"{name} never answered at {url}")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """An S3-compatible server (moto's) on a free loopback port, in its own process."""
    argv = ["-m", "moto.server", "-H", "127.0.0.1", "-p", "{port}"]
    with server_process(argv, name="moto", log_dir=tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def s3_env(s3_server) -> dict[str, str]:
    """A fresh private bucket, as the environment variables that select it."""
    env = {
        "AWS_STORAGE_BUCKET_NAME": f"revid-test-{uuid.uuid4().hex[:12]}",
        "AWS_S3_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "test-access-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret-key",
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_S3_ADDRESSING_STYLE": "path",
    }
    s3_client(env).create_bucket(Bucket=env["AWS_STORAGE_BUCKET_NAME"])
    return env


@pytest.fixture
def s3_storage_settings(settings, s3_env) -> dict[str, str]:
    """This process (and its live_server) stores files in the test bucket,
    configured by the same code that reads a worker's environment."""
    from revid.settings import s3_storage

    settings.STORAGES = {**settings.STORAGES, "default": s3_storage(s3_env)}
    return s3_env


def s3_client(env: dict[str, str]):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_S3_REGION_NAME"],
    )


def bucket_keys(env: dict[str, str], prefix: str = "") -> set[str]:
    client = s3_client(env)
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=env["AWS_STORAGE_BUCKET_NAME"], Prefix=prefix
    ):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


# Test runs on one machine share its Redis server: each run claims a
# database of its own among these (the queue and the emptying between tests
# stay inside it), so two suites at once do not take each other's jobs.
REDIS_TEST_DATABASES = range(6, 16)
REDIS_CLAIM_KEY = "revid-test-run"


@pytest.fixture(scope="session")
def redis_url():
    """A Redis database for this test run, once the server answers a PING.

    TEST_REDIS_URL, when set, is used as it is. Otherwise the first free
    database of REDIS_TEST_DATABASES on 127.0.0.1:6379 is claimed for the
    run (a key that expires, should the run be killed). `make test` starts
    a local redis-server when one is installed; on a machine with none, only
    the tests that need Redis skip, and say why.
    """
    import redis

    configured = os.environ.get("TEST_REDIS_URL")
    candidates = (
        [configured]
        if configured
        else [f"redis://127.0.0.1:6379/{db}" for db in REDIS_TEST_DATABASES]
    )
    token = uuid.uuid4().hex
    for url in candidates:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            client.ping()
            claimed = configured or client.set(REDIS_CLAIM_KEY, token, nx=True, ex=6 * 3600)
        except redis.RedisError as exc:
            client.close()
            pytest.skip(
                f"needs Redis, and none answers at {url} ({exc}): install redis-server "
                "(`make test` then starts it) or set TEST_REDIS_URL"
            )
        if not claimed:
            client.close()
            continue
        try:
            yield url
        finally:
            if not configured and client.get(REDIS_CLAIM_KEY) == token.encode():
                client.delete(REDIS_CLAIM_KEY)
            client.close()
        return
    # Not a skip: the Redis tests would vanish from the run unnoticed.
    pytest.fail(
        f"every Redis test database ({REDIS_TEST_DATABASES.start}-"
        f"{REDIS_TEST_DATABASES.stop - 1}) holds the key {REDIS_CLAIM_KEY!r} of another "
        "test run: wait for those runs, or delete the keys of runs that were killed"
    )


def empty_redis_database(client) -> None:
    """Every key of the run's database but its claim."""
    for key in client.scan_iter(count=1000):
        if key != REDIS_CLAIM_KEY.encode():
            client.unlink(key)


@pytest.fixture
def redis_broker(redis_url, settings, monkeypatch):
    """django-q2 in this process on Redis, in the run's database emptied first.

    Worker processes get the same database as REDIS_URL.
    """
    import redis
    from django_q.conf import Conf

    url = redis_url
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    empty_redis_database(client)
    settings.REDIS_URL = url
    # django-q2 reads Q_CLUSTER once, at import; point its broker choice at
    # Redis (and away from the ORM broker class the embedded default names).
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "BROKER_CLASS", None)
    monkeypatch.setattr(Conf, "REDIS", url)
    yield url
    empty_redis_database(client)
    client.close()


@pytest.fixture(scope="session")
def u2netp():
    """The real u2netp session (the fast model), loaded once for the run."""
    from removal import registry

    if not registry.is_available("u2netp"):
        pytest.fail("u2netp weights are missing: run `make models`")
    return registry.get_session("u2netp")


@pytest.fixture
def inline_worker(transactional_db, monkeypatch):
    """Accepted jobs run at once, in this process, through the real services and model.

    Only the queue hop is skipped (the job runs when its transaction
    commits), so a synchronous door answers without a qcluster process.
    """
    from removal import services

    monkeypatch.setattr(
        services,
        "enqueue_job",
        lambda *, job_id, request_id=None: services.process_job(job_id=job_id),
    )


class LoopbackFiles:
    """A real HTTP server on 127.0.0.1 serving bytes at chosen paths."""

    def __init__(self):
        import http.server
        import threading

        self.files: dict[str, tuple[int, str, bytes]] = {}
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                status, content_type, body = files.get(self.path, (404, "text/plain", b"nope"))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, content_type: str = "image/jpeg", status: int = 200):
        self.files[path] = (status, content_type, body)
        return f"{self.url}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def allow_loopback(settings):
    """The safe fetcher may reach 127.0.0.1, where the tests' servers live
    (and no other internal address)."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]


@pytest.fixture
def loopback_files(allow_loopback):
    """A file server on loopback that the safe fetcher may reach (and only it)."""
    server = LoopbackFiles()
    yield server
    server.close()


@pytest.fixture
def connections(monkeypatch):
    """Every (host, port) a socket connects to during the test (the connects still happen)."""
    seen: list[tuple] = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        seen.append(tuple(address[:2]))
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


class FakeDNS:
    """getaddrinfo with our answers for some names; other hosts resolve as usual."""

    def __init__(self, real):
        self._real = real
        self._answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def answer(self, name: str, *answers: list[str]) -> None:
        """Successive lookups of ``name`` get successive answers (the last one repeats)."""
        self._answers[name] = list(answers)

    def __call__(self, host, port, *args, **kwargs):
        if host not in self._answers:
            return self._real(host, port, *args, **kwargs)
        self.lookups.append(host)
        queue = self._answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
            if ":" in ip
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in addresses
        ]


@pytest.fixture
def fake_dns(monkeypatch):
    """Names with the addresses a test gives them (``fake_dns.answer``); others as usual."""
    dns = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    return dns


STRIPE_TEST_SECRET_KEY = "sk_test_revid"
STRIPE_TEST_WEBHOOK_SECRET = "whsec_test_revid"


@pytest.fixture(scope="session")
def stripe_server(tmp_path_factory):
    """localstripe with Checkout Sessions (tests/billing/stripe_server.py) on a free port."""
    argv = ["-m", "tests.billing.stripe_server", "--port", "{port}"]
    log_dir = tmp_path_factory.mktemp("localstripe")
    with server_process(argv, name="localstripe", log_dir=log_dir) as url:
        yield url


@pytest.fixture
def stripe_settings(settings, stripe_server) -> str:
    """Payments on, with the Stripe library pointed at the local server."""
    settings.STRIPE_SECRET_KEY = STRIPE_TEST_SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_TEST_WEBHOOK_SECRET
    settings.STRIPE_API_BASE = stripe_server
    return stripe_server
