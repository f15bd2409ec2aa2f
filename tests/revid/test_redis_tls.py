"""The guide's Redis URL works as printed: TLS and a password
(``rediss://:password@host:port/0``, with the CA that signed the server's
certificate), for the queue and for /readyz, against a real redis-server
that accepts nothing else."""

import os
import shutil
import signal
import subprocess

import pytest

from tests.conftest import free_port, wait_for

PASSWORD = "a-long-password-for-the-queue"

pytestmark = pytest.mark.skipif(
    not shutil.which("redis-server") or not shutil.which("openssl"),
    reason="needs redis-server (built with TLS, as Debian's is) and openssl",
)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """redis-server on a free loopback port, TLS only, with a password; yields (port, CA file)."""
    folder = tmp_path_factory.mktemp("redis-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    log = (folder / "redis.log").open("wb")
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port)]
        + ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
        + ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
        + ["--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={cert}"

    def answers():
        import redis

        assert process.poll() is None, (folder / "redis.log").read_text()
        try:
            return redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        except redis.RedisError:
            return False

    try:
        wait_for(answers, timeout=30, message="the TLS redis-server never answered")
        yield port, cert
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
        log.close()


def guide_url(port: int, cert, password: str = PASSWORD, scheme: str = "rediss") -> str:
    return f"{scheme}://:{password}@127.0.0.1:{port}/0?ssl_ca_certs={cert}"


@pytest.mark.django_db
def test_the_queue_and_readyz_work_over_tls_with_a_password(tls_redis, settings, monkeypatch):
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.signing import SignedPackage
    from django_q.tasks import async_task

    from removal import health

    port, cert = tls_redis
    url = guide_url(port, cert)
    settings.REDIS_URL = url
    assert health.check_broker() == health.CheckResult(True, "redis")

    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "BROKER_CLASS", None)
    monkeypatch.setattr(Conf, "REDIS", url)
    broker = get_broker()
    broker.purge_queue()
    async_task("removal.tasks.fail_stale_jobs", broker=broker)
    assert broker.queue_size() == 1
    (_, package), *_ = broker.dequeue()
    assert SignedPackage.loads(package)["func"] == "removal.tasks.fail_stale_jobs"


@pytest.mark.django_db
@pytest.mark.parametrize("mistake", ["wrong password", "no TLS"])
def test_readyz_says_so_when_the_password_or_tls_is_missing(tls_redis, settings, mistake, caplog):
    from removal import health

    port, cert = tls_redis
    if mistake == "wrong password":
        settings.REDIS_URL = guide_url(port, cert, password="not-the-password")
    else:
        settings.REDIS_URL = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    result = health.check_broker()
    assert result.ok is False
    assert result.detail.startswith("unreachable (")
