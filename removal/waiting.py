"""Waiting for a job's end on the event loop: no thread, no connection per waiter.

The worker calls ``announce_job_finished`` once a job reached completed or
failed and that is committed; an async view awaits ``wait_then_reload``,
which returns the job as soon as it has ended, or after its timeout.
``GET /api/get/<id>?wait=N``, the web page's status endpoint and
remove.bg's synchronous ``POST /v1.0/removebg`` are built on it.

Backends (``WAIT_BACKEND``; ``auto`` picks the first that applies):

- ``redis`` when ``REDIS_URL`` is set: the worker PUBLISHes the job id on
  ``WAIT_CHANNEL``; the web process listens with ``redis.asyncio``.
- ``postgres`` when the database is PostgreSQL: the worker runs
  ``pg_notify(WAIT_CHANNEL, id)`` on its own Django connection (inside a
  transaction PostgreSQL delivers it only at commit, so a waiter is never
  woken before the new status is visible); the web process LISTENs on
  psycopg's ``AsyncConnection``.
- ``poll`` otherwise (SQLite, where web and worker share a file): one
  query per web process every ``WAIT_POLL_MS`` (primary keys, ``id IN
  (...) AND status IN (completed, failed)``) finds which of the jobs its
  requests wait for have ended; announcing rings the web processes'
  doorbells on this machine (``LOCAL_WAKE``, ``revid.doorbell``), which
  look at once. With the doorbell the poll is only the net for a lost
  ring: its interval stretches with the number of jobs waited for, and on
  SQLite (every ringer on this machine) to LOCAL_WAKE_FALLBACK_MS.

Many waiters in one web process:

- ONE listener per event loop (one per web process under the ASGI server)
  and backend: a task holding one connection of its own, never one of a
  request's. It turns each announced job into an ``asyncio.Event`` set for
  that job's waiters. A waiter is an Event in a dict: a few hundred bytes,
  no thread (``revid.serving.release_request_thread`` ends the request's
  thread before it waits) and no database connection.
- A sweep beside it, one query for every waited job of the process, finds
  jobs whose announcement was lost (every ``WAIT_RECHECK_SECONDS``), or all
  ends while the listener is reconnecting (every ``FALLBACK_POLL_SECONDS``),
  and once right after it (re)subscribed. For ``poll`` the sweep is the
  listener. Its queries run on one thread of the process, not the loop.
- No lost wake-ups: a waiter registers its Event, then reads the job, then
  waits. An announcement after the registration sets the Event; one sent
  earlier followed a commit, so the read already sees the end.
- A client that hangs up cancels its request (Django's ASGI handler), and
  the waiter is removed at once (``finally``), its limit slot freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import uuid

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from removal import wait_listeners
from removal.models import RemovalJob
from removal.wait_listeners import (
    FINISHED,
    LISTENER_NAME,
    Listener,
    PollListener,
    PostgresListener,
    RedisListener,
)
from revid import serving
from revid.doorbell import ring_all
from revid.errors import ApplicationError
from revid.observability import WAITING_CLIENTS

logger = logging.getLogger(__name__)

# How long the first waiter gives a (re)starting listener to subscribe
# before it relies on the sweep.
LISTENER_START_WAIT = 2.0


class InvalidWait(ApplicationError):
    code = "invalid_wait"


def parse_wait(value: str | None) -> float | None:
    """The ``wait`` query parameter in seconds, or None when absent.

    0 < wait <= WAIT_MAX_SECONDS; anything else is a 400, not a silent cap.
    """
    if value is None:
        return None
    limit = settings.WAIT_MAX_SECONDS
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= limit):
        raise InvalidWait(
            f"wait must be a number of seconds greater than 0 and at most {limit:g}, "
            f"got {str(value)[:20]!r}."
        )
    return seconds


def backend_name() -> str:
    """The backend this process uses: "redis", "postgres" or "poll"."""
    choice = settings.WAIT_BACKEND
    if choice != "auto":
        return choice
    if settings.REDIS_URL:
        return "redis"
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql" and (
        settings.WAIT_DATABASE_URL or not settings.DB_TRANSACTION_POOLER
    ):
        # Through a transaction pooler LISTEN hears nothing: only with a
        # direct connection of its own.
        return "postgres"
    return "poll"


def announce_job_finished(*, job_id: uuid.UUID | str) -> None:
    """Wakes every web process's waiters of this job. Call it after commit.

    Never raises: a lost announcement only delays a waiter until the next
    sweep, it must not fail the worker's job.
    """
    name = backend_name()
    payload = str(job_id)
    try:
        if name == "redis":
            _redis_client(settings.REDIS_URL).publish(settings.WAIT_CHANNEL, payload)
        elif name == "postgres":
            with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [settings.WAIT_CHANNEL, payload])
        elif settings.LOCAL_WAKE:
            # poll: web processes on this machine look at once (revid.doorbell).
            ring_all(settings.WAIT_WAKE_DIR)
    except Exception:
        logger.warning("Could not announce the end of job %s", payload, exc_info=True)


async def wait_then_reload(job: RemovalJob, *, timeout: float | None, until_shutdown=True):
    """The job as it stands once it has ended, or after ``timeout`` seconds.

    The one way a door waits: ``?wait=`` on the API and the web page, and
    remove.bg's synchronous answer (which adds its own deadlines around it,
    and keeps waiting while the server stops: ``until_shutdown=False``).
    """
    if timeout and not job.is_finished:
        with WAITING_CLIENTS.track_inprogress():
            await wait_for_job(job_id=job.id, timeout=timeout, until_shutdown=until_shutdown)
        fresh = await _fresh_copy(str(job.id))
        for field in job._meta.concrete_fields:
            setattr(job, field.attname, getattr(fresh, field.attname))
    return job


_reads: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Future] = {}


async def _fresh_copy(job_id: str) -> RemovalJob:
    """The job as the database has it now, read once for all of its waiters
    that ask together (a job's end wakes them all at once), on the sweep's
    threads and their kept connections: no thread or connection per waiter."""
    loop = asyncio.get_running_loop()
    key = (loop, job_id)
    read = _reads.get(key)
    if read is None:
        read = _reads[key] = asyncio.ensure_future(wait_listeners.on_db_thread(_read_job, job_id))
        read.add_done_callback(lambda _: _reads.pop(key, None))
    return await asyncio.shield(read)


def _read_job(job_id: str) -> RemovalJob:
    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
    return RemovalJob.objects.get(pk=job_id)


async def wait_for_job(
    *, job_id: uuid.UUID | str, timeout: float, until_shutdown: bool = True
) -> bool:
    """True once the job is completed or failed; False after ``timeout`` seconds
    (or, with ``until_shutdown``, as soon as the server begins to stop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    key = str(uuid.UUID(str(job_id)))
    listener = _listener(backend_name())
    # Register before reading the job: an announcement from here on sets
    # the event, and one sent earlier followed a commit the read will see.
    waiter = listener.add(key)
    try:
        # From here on this request needs neither its thread nor a connection:
        # both go now, before anything here can take long (a listener that
        # starts, a busy database), so that a burst of waiters never holds
        # a connection each. The one read below is on the sweep's threads.
        await serving.release_request_thread()
        await listener.ensure_started(timeout=min(LISTENER_START_WAIT, timeout))
        if await wait_listeners.on_db_thread(_is_finished, key):
            return True
        shutdown = serving.shutdown_event()
        while not waiter.finished:
            remaining = deadline - loop.time()
            if remaining <= 0 or (until_shutdown and shutdown.is_set()):
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await waiter.event.wait()
            waiter.event.clear()
        return True
    finally:
        listener.remove(waiter)


def _is_finished(job_id: str) -> bool:
    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
    return RemovalJob.objects.filter(pk=job_id, status__in=FINISHED).exists()


# --- this process's listeners ------------------------------------------------

_listeners: dict[asyncio.AbstractEventLoop, dict[tuple, Listener]] = {}
_redis_clients: dict[str, object] = {}


def _listener(name: str) -> Listener:
    """This loop's listener for the current settings (one per backend)."""
    loop = asyncio.get_running_loop()
    channel = settings.WAIT_CHANNEL
    if name == "poll":
        key = (name, settings.WAIT_POLL_MS, str(settings.WAIT_WAKE_DIR))
    elif name == "redis":
        key = (name, settings.REDIS_URL, channel)
    else:
        params = _listen_connection_params()
        key = (name, repr(sorted(params.items())), channel)
    if loop not in _listeners:
        for old in [old for old in _listeners if old.is_closed()]:
            del _listeners[old]
        _listeners[loop] = {}
    listeners = _listeners[loop]
    listener = listeners.get(key)
    if listener is None:
        if name == "poll":
            listener = PollListener(settings.WAIT_POLL_MS / 1000)
        elif name == "redis":
            listener = RedisListener(channel, settings.REDIS_URL)
        else:
            listener = PostgresListener(channel, params)
        listeners[key] = listener
    return listener


def _listen_connection_params() -> dict:
    """psycopg parameters of the LISTEN connection: WAIT_DATABASE_URL's when
    set (a direct connection beside a pooler), else the database's own."""
    connection = connections[DEFAULT_DB_ALIAS]
    if settings.WAIT_DATABASE_URL:
        import dj_database_url

        settings_dict = {
            **connection.settings_dict,
            **dj_database_url.parse(settings.WAIT_DATABASE_URL),
        }
        params = type(connection)(settings_dict, DEFAULT_DB_ALIAS).get_connection_params()
    else:
        params = connection.get_connection_params()
    # Django's cursor class and adapters are not needed on this connection.
    for option in ("cursor_factory", "context", "prepare_threshold", "pool"):
        params.pop(option, None)
    params.setdefault("application_name", LISTENER_NAME)
    params.setdefault("connect_timeout", 5)
    params.setdefault("keepalives", 1)
    return params


def wake_for_shutdown() -> None:
    """Wakes every waiter of this loop so the long polls answer (revid.serving)."""
    loop = asyncio.get_running_loop()
    for listener in _listeners.get(loop, {}).values():
        listener.wake_all()


serving.on_shutdown(wake_for_shutdown)


async def stop_listeners_of_this_loop() -> None:
    """Stops this loop's listeners and closes their connections (server shutdown)."""
    listeners = _listeners.pop(asyncio.get_running_loop(), {})
    for listener in listeners.values():
        await listener.stop()
    await wait_listeners.close_db_thread_connections()


def stop_listeners() -> None:
    """Forgets every listener and closes the sweep thread's connections (tests:
    before their database or channel goes away). Call it from sync code."""
    for loop, listeners in list(_listeners.items()):
        if loop.is_closed() or not loop.is_running():
            continue
        for listener in listeners.values():
            asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(timeout=10)
    _listeners.clear()
    wait_listeners.stop_db_thread()


def _forget_after_fork() -> None:
    """A forked child has none of its parent's threads and must not share
    its connections: it makes its own when it first needs them."""
    _listeners.clear()
    _redis_clients.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _redis_client(url: str):
    client = _redis_clients.get(url)
    if client is None:
        import redis

        client = _redis_clients.setdefault(
            url, redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        )
    return client
