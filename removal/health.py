"""Readiness checks for load balancers and orchestrators.

Two probes, two questions (docs/deploy.md, "Probes"):

- liveness, ``/healthz``: is this process alive? It checks nothing else,
  so an outage elsewhere never gets a web server restarted;
- readiness, ``/readyz``: should this machine get requests? It is not
  ready while it is stopping (SIGTERM received: ``begin_draining``) or the
  default model's weights are missing here, at once; and when a shared
  service (the database, the broker, the bucket) has failed every check for
  READYZ_SHARED_GRACE_SECONDS. A shared service fails on every machine at
  once: reporting a blip at once would take every web server out of the
  load balancer together, turning a second's hiccup into an outage. Within
  the grace the check shows ``ok: false`` while /readyz still answers 200.

Each check is quick, bounded by short timeouts, and never raises: a probe
that hangs or errors is worse than one that answers "not ready" and says why.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages
from django.db import connections

from removal import registry

logger = logging.getLogger(__name__)

# Seconds any one network check may take; orchestrators' probes time out in
# a few seconds and must not be left waiting on a black-holed host.
CHECK_TIMEOUT = 2


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


def check_database() -> CheckResult:
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return _failed("database", exc)
    return CheckResult(True, connection.vendor)


def check_broker() -> CheckResult:
    """Redis when REDIS_URL is set; otherwise the queue is a database table."""
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=CHECK_TIMEOUT,
            socket_timeout=CHECK_TIMEOUT,
        )
        try:
            client.ping()
        except Exception as exc:
            return _failed("broker", exc)
        finally:
            client.close()
        return CheckResult(True, "redis")
    from django_q.models import OrmQ

    try:
        OrmQ.objects.exists()
    except Exception as exc:
        return _failed("broker", exc)
    return CheckResult(True, "orm")


def check_storage() -> CheckResult:
    storage = storages["default"]
    if isinstance(storage, FileSystemStorage):
        return _check_folder(Path(storage.location))
    from storages.backends.s3 import S3Storage

    if isinstance(storage, S3Storage):
        return _check_bucket(storage)
    return CheckResult(True, f"{type(storage).__name__} (not checked)")


def check_models() -> CheckResult:
    available = [name for name in registry.MODELS if registry.is_available(name)]
    default = settings.REMOVAL_DEFAULT_MODEL
    if default not in available:
        return CheckResult(
            False,
            f"the default model {default!r} has no weights on this machine; "
            "run manage.py install_models",
        )
    return CheckResult(True, ", ".join(available))


CHECKS: dict[str, Callable[[], CheckResult]] = {
    "database": check_database,
    "broker": check_broker,
    "storage": check_storage,
    "models": check_models,
}
# Services every machine shares: their failures get READYZ_SHARED_GRACE_SECONDS.
SHARED = frozenset({"database", "broker", "storage"})

_draining = threading.Event()
# When each shared check began failing without a success since (this process).
_failing_since: dict[str, float] = {}
_failing_lock = threading.Lock()


def begin_draining() -> None:
    """This process is stopping: not ready from now on (gunicorn's SIGTERM)."""
    _draining.set()


def readiness() -> tuple[bool, dict[str, CheckResult]]:
    """Runs every check; ready unless one counts as failing (see the module)."""
    results = {name: check() for name, check in CHECKS.items()}
    ready = True
    now = time.monotonic()
    for name, result in list(results.items()):
        if result.ok:
            with _failing_lock:
                _failing_since.pop(name, None)
            continue
        if name not in SHARED:
            ready = False
            continue
        with _failing_lock:
            failing_for = now - _failing_since.setdefault(name, now)
        grace = settings.READYZ_SHARED_GRACE_SECONDS
        if failing_for >= grace:
            ready = False
        else:
            results[name] = CheckResult(
                False, f"{result.detail}; failing for {failing_for:.0f} s of a {grace} s grace"
            )
    if _draining.is_set():
        ready = False
        results["draining"] = CheckResult(False, "this server is stopping")
    return ready, results


def _check_folder(folder: Path) -> CheckResult:
    try:
        # FileSystemStorage creates its folder on the first save; do the same.
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _failed("storage", exc)
    if not os.access(folder, os.W_OK):
        logger.warning("Readiness check storage failed: %s is not writable", folder)
        return CheckResult(False, "the media folder is not writable; see the server log")
    return CheckResult(True, "filesystem")


def _check_bucket(storage) -> CheckResult:
    """HEAD the bucket with a client of our own: short timeouts, no retries."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=storage.endpoint_url,
        region_name=storage.region_name,
        aws_access_key_id=storage.access_key,
        aws_secret_access_key=storage.secret_key,
        aws_session_token=storage.security_token,
        use_ssl=storage.use_ssl,
        verify=storage.verify,
        config=storage.client_config.merge(
            Config(
                connect_timeout=CHECK_TIMEOUT,
                read_timeout=CHECK_TIMEOUT,
                retries={"max_attempts": 1, "mode": "standard"},
            )
        ),
    )
    try:
        client.head_bucket(Bucket=storage.bucket_name)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return CheckResult(False, f"bucket {storage.bucket_name!r} answered HTTP {status}")
    except Exception as exc:
        return _failed("storage", exc)
    finally:
        client.close()
    return CheckResult(True, f"s3 bucket {storage.bucket_name}")


def _failed(name: str, exc: Exception) -> CheckResult:
    # The answer may be public: name the kind of failure, log the details
    # (host names, addresses) for the operator.
    logger.warning("Readiness check %s failed: %r", name, exc)
    return CheckResult(False, f"unreachable ({type(exc).__name__}); see the server log")
