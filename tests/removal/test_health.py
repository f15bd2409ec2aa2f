"""/healthz and /readyz: what a load balancer or an orchestrator asks."""

import pytest
from django.test import Client


@pytest.fixture
def client():
    return Client(HTTP_HOST="localhost")


@pytest.fixture(autouse=True)
def _fresh_probe_state():
    """Each test starts with no failure remembered and not draining."""
    from removal import health

    health._failing_since.clear()
    health._draining.clear()
    yield
    health._failing_since.clear()
    health._draining.clear()


@pytest.fixture
def no_grace(settings):
    """A shared service's failure counts at once."""
    settings.READYZ_SHARED_GRACE_SECONDS = 0


def test_healthz_answers_ok_without_touching_the_database(client):
    # No django_db mark: pytest-django refuses any query here. Liveness must
    # not depend on the database, or an outage restarts every web server.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.weights
@pytest.mark.django_db
def test_readyz_is_ready_on_the_embedded_default(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "broker", "storage", "models"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["broker"]["detail"] == "orm"
    assert body["checks"]["storage"]["detail"] == "filesystem"
    assert "u2net" in body["checks"]["models"]["detail"]


@pytest.mark.weights
@pytest.mark.django_db
def test_readyz_is_ready_on_redis_and_s3(client, redis_broker, s3_storage_settings):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    checks = response.json()["checks"]
    assert checks["broker"] == {"ok": True, "detail": "redis"}
    bucket = s3_storage_settings["AWS_STORAGE_BUCKET_NAME"]
    assert checks["storage"] == {"ok": True, "detail": f"s3 bucket {bucket}"}


@pytest.mark.django_db
def test_readyz_answers_503_when_the_broker_is_unreachable(client, settings, no_grace):
    from tests.conftest import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["broker"]["ok"] is False
    assert "ConnectionError" in body["checks"]["broker"]["detail"]
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_readyz_answers_503_when_the_bucket_does_not_exist(client, settings, s3_env, no_grace):
    from revid.settings import s3_storage

    missing = {**s3_env, "AWS_STORAGE_BUCKET_NAME": "revid-no-such-bucket"}
    settings.STORAGES = {**settings.STORAGES, "default": s3_storage(missing)}
    response = client.get("/readyz")
    assert response.status_code == 503
    storage = response.json()["checks"]["storage"]
    assert storage == {"ok": False, "detail": "bucket 'revid-no-such-bucket' answered HTTP 404"}


@pytest.mark.django_db
def test_readyz_answers_503_when_the_default_model_has_no_weights(client, settings, tmp_path):
    settings.U2NET_HOME = tmp_path  # an empty models folder
    response = client.get("/readyz")
    assert response.status_code == 503
    models = response.json()["checks"]["models"]
    assert models["ok"] is False
    assert "install_models" in models["detail"]


@pytest.mark.weights
def test_readyz_answers_503_when_the_database_is_unreachable(client, transactional_db, no_grace):
    from django.db import connections

    from tests.conftest import free_port

    connection = connections["default"]
    saved = connection.settings_dict.copy()
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent/folder/db.sqlite3"
    else:
        connection.settings_dict["PORT"] = str(free_port())  # nothing listens there
    try:
        response = client.get("/readyz")
    finally:
        connection.close()
        connection.settings_dict.update(saved)
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is False
    assert checks["database"]["detail"].startswith("unreachable (")
    assert checks["models"]["ok"] is True


def test_probes_are_not_redirected_to_https(client, settings):
    # Probes reach each machine over plain http even when the public
    # site redirects everything to https.
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/models").status_code == 301


class Clock:
    """removal.health's monotonic clock, moved by the test."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    from removal import health

    clock = Clock()
    monkeypatch.setattr(health.time, "monotonic", clock)
    return clock


@pytest.mark.weights
@pytest.mark.django_db
def test_a_shared_service_blip_shorter_than_the_grace_keeps_the_machine_ready(
    client, settings, clock
):
    from tests.conftest import free_port

    settings.READYZ_SHARED_GRACE_SECONDS = 30
    working, broken = settings.REDIS_URL, f"redis://127.0.0.1:{free_port()}/0"
    settings.REDIS_URL = broken
    first = client.get("/readyz")
    # Failing, and shown failing, but every web machine sees the same blip:
    # none leaves the load balancer for it yet.
    assert first.status_code == 200, first.json()
    broker = first.json()["checks"]["broker"]
    assert broker["ok"] is False
    assert "failing for 0 s of a 30 s grace" in broker["detail"]

    clock.now += 29
    assert client.get("/readyz").status_code == 200
    clock.now += 1
    late = client.get("/readyz")
    assert late.status_code == 503
    assert late.json()["checks"]["broker"]["ok"] is False

    # One success forgets the failure: the next blip gets the whole grace again.
    settings.REDIS_URL = working
    assert client.get("/readyz").status_code == 200
    settings.REDIS_URL = broken
    clock.now += 10
    assert client.get("/readyz").status_code == 200
    clock.now += 29
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_missing_weights_on_this_machine_fail_readiness_at_once_whatever_the_grace(
    client, settings, tmp_path
):
    settings.READYZ_SHARED_GRACE_SECONDS = 3600
    settings.U2NET_HOME = tmp_path
    assert client.get("/readyz").status_code == 503


@pytest.mark.weights
@pytest.mark.django_db
def test_a_stopping_server_is_not_ready_from_its_sigterm_on(client):
    from removal import health

    assert client.get("/readyz").status_code == 200
    health.begin_draining()  # what revid/gunicorn_conf.py does on SIGTERM
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["draining"] == {
        "ok": False,
        "detail": "this server is stopping",
    }
    assert client.get("/healthz").status_code == 200  # still alive while it drains
