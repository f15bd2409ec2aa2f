"""Logs and metrics for operators: a request id, JSON log lines, Prometheus.

- Every request gets an id (``X-Request-Id``: the client's, when it sends a
  sane one, else a new one), kept in a context variable so every log line
  of the request carries it, and handed to the worker with its job, so the
  job's lines carry it too.
- ``LOG_FORMAT=json`` writes one JSON object per line (python-json-logger);
  ``RequestLogMiddleware`` writes one line per request and the worker one
  per job. Keys, passwords and images are never logged: a request line
  names the API key by its public prefix only.
- Metrics that live in one process (job and stage durations, waiting
  clients) are prometheus-client metrics in multiprocess mode
  (``PROMETHEUS_MULTIPROC_DIR``), so web processes and workers on one
  machine add up; counts that live in the database (jobs by status, queue
  depth, credits, deliveries, payments) are read from it at scrape time
  (``doors.metrics``), right whatever process or machine wrote them.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from prometheus_client import Gauge, Histogram

logger = logging.getLogger("revid.requests")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")

# --- Request ids ---------------------------------------------------------------


def current_request_id() -> str:
    return _request_id.get()


def bind_request_id(value: str) -> contextvars.Token:
    """Makes ``value`` the id of what this context does (a request, a job)."""
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token) -> None:
    _request_id.reset(token)


def request_id_from(header: str | None) -> str:
    """The client's id when it looks like one, else a new one."""
    if header and _SANE_REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (empty outside a request or job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = current_request_id()
        return True


# Which door a path belongs to, for logs and metrics.
_DOORS = (
    ("/paid/", "api"),
    ("/api/", "api"),
    ("/output/", "api"),
    ("/v1.0/", "removebg"),
    ("/admin/", "admin"),
    ("/metrics", "metrics"),
)


def door_of(path: str) -> str:
    for prefix, door in _DOORS:
        if path.startswith(prefix):
            return door
    return "web"


class RequestLogMiddleware:
    """One log line per request: method, path, status, duration, request id,
    door and the API key's public prefix (never the key itself). Sync and
    async: under the ASGI server it must not put a waiting request on a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        token = bind_request_id(request_id_from(request.headers.get("X-Request-Id")))
        started = time.perf_counter()
        try:
            return self._log(request, self.get_response(request), started)
        finally:
            reset_request_id(token)

    async def __acall__(self, request):
        token = bind_request_id(request_id_from(request.headers.get("X-Request-Id")))
        started = time.perf_counter()
        try:
            return self._log(request, await self.get_response(request), started)
        finally:
            reset_request_id(token)

    def _log(self, request, response, started: float):
        response["X-Request-Id"] = current_request_id()
        logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "event": "request",
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "door": door_of(request.path),
                "key_prefix": getattr(request, "api_key_prefix", ""),
            },
        )
        return response


# --- Metrics kept in processes (prometheus-client, multiprocess mode) ------------

# Seconds from 10 ms to 2 minutes: a 0.3 MP job to a 12 MP one with matting.
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

JOB_SECONDS = Histogram(
    "revid_job_seconds",
    "Seconds a job took in the worker, from claim to stored result, by how it ended.",
    ["model", "door", "status"],
    buckets=_BUCKETS,
)
JOB_STAGE_SECONDS = Histogram(
    "revid_job_stage_seconds",
    "Seconds each stage of a completed job took (read, decode, model, composite, ...).",
    ["stage"],
    buckets=_BUCKETS,
)
WAITING_CLIENTS = Gauge(
    "revid_waiting_clients",
    "Requests waiting for a job's end now (?wait= and /v1.0/removebg), all processes.",
    multiprocess_mode="livesum",
)


def observe_job(
    *, model: str, door: str, status: str, seconds: float, stages: dict[str, float]
) -> None:
    JOB_SECONDS.labels(model=model, door=door, status=status).observe(seconds)
    if status == "completed":
        for stage, stage_seconds in stages.items():
            JOB_STAGE_SECONDS.labels(stage=stage).observe(stage_seconds)
