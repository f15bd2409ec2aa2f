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
  ring, and its interval stretches with the number of jobs waited for.

Many waiters in one web process:

- ONE listener per event loop (one per web process under the ASGI server)
  and backend: a task holding one connection of its own, never one of a
  request's. It turns each announced job into an ``asyncio.Event`` set for
  that job's waiters. A waiter is an Event in a dict: a few hundred bytes,
  no thread (``revid.serving.release_request_thread`` ends the request's
  thread before it waits) and no database connection.
- A sweep beside it, one query for every waited job of the process, finds
  jobs whose announcement was lost (every ``RECHECK_SECONDS``), or all
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
import contextvars
import logging
import math
import os
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from removal.models import RemovalJob
from revid import serving
from revid.doorbell import Doorbell, ring_all
from revid.errors import ApplicationError
from revid.observability import WAITING_CLIENTS

logger = logging.getLogger(__name__)

# The sweep looks this often even when listening, in case a job ended
# without an announcement (or the announcement was lost).
RECHECK_SECONDS = 5.0
# While the listener is down, the sweep looks this often.
FALLBACK_POLL_SECONDS = 0.5
# How long the first waiter gives a (re)starting listener to subscribe
# before it relies on the sweep.
LISTENER_START_WAIT = 2.0
# The listener's own liveness check of an idle connection.
HEARTBEAT_SECONDS = 30.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 5.0
# How a listener's connection shows in pg_stat_activity and CLIENT LIST.
LISTENER_NAME = "revid-wait"
# Job ids per sweep query (SQLite's bound on query parameters).
_SWEEP_CHUNK = 500
# Threads (each with its own kept connection) for the sweep and for
# reloading the jobs of woken waiters.
DB_THREADS = 4
# With a doorbell, the poll is only the net for a lost ring: its interval
# stretches by one WAIT_POLL_MS per this many waited jobs (up to a second),
# so a thousand waiters do not cost a query every 25 ms.
_STRETCH_PER_JOBS = 50

_FINISHED = (RemovalJob.Status.COMPLETED, RemovalJob.Status.FAILED)


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
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
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
        read = _reads[key] = asyncio.ensure_future(_on_db_thread(_read_job, job_id))
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
        await listener.ensure_started(timeout=min(LISTENER_START_WAIT, timeout))
        if await sync_to_async(_is_finished)(key):
            return True
        # From here on this request needs neither its thread nor a connection.
        await serving.release_request_thread()
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
    return RemovalJob.objects.filter(pk=job_id, status__in=_FINISHED).exists()


def _finished_among(job_ids: list[str]) -> list[str]:
    """Which of ``job_ids`` have ended: one query per chunk, on the sweep's thread."""
    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
    ended = []
    for start in range(0, len(job_ids), _SWEEP_CHUNK):
        chunk = job_ids[start : start + _SWEEP_CHUNK]
        ended.extend(
            str(pk)
            for pk in RemovalJob.objects.filter(pk__in=chunk, status__in=_FINISHED).values_list(
                "pk", flat=True
            )
        )
    return ended


# --- waiters and listeners ---------------------------------------------------


class _Waiter:
    __slots__ = ("job_id", "event", "finished")

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.event = asyncio.Event()
        self.finished = False


class _Listener:
    """One task and one connection that turn announcements into Events,
    and a sweep that finds the ends no announcement brought."""

    name = ""

    def __init__(self, channel: str):
        self.channel = channel
        self._by_job: dict[str, set[_Waiter]] = {}
        self.listening = asyncio.Event()
        self._sweep_now = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # Waiters (all on the loop's thread: no lock).

    def add(self, job_id: str) -> _Waiter:
        waiter = _Waiter(job_id)
        self._by_job.setdefault(job_id, set()).add(waiter)
        return waiter

    def remove(self, waiter: _Waiter) -> None:
        waiters = self._by_job.get(waiter.job_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._by_job[waiter.job_id]

    def job_ids(self) -> list[str]:
        return list(self._by_job)

    def finish(self, job_id: str) -> None:
        for waiter in self._by_job.get(job_id, ()):
            waiter.finished = True
            waiter.event.set()

    def wake_all(self) -> None:
        for group in self._by_job.values():
            for waiter in group:
                waiter.event.set()

    def __len__(self) -> int:
        return sum(len(group) for group in self._by_job.values())

    # Tasks.

    def _start(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task:
        # A context of its own: not the request's (its request id, its
        # thread-sensitive context), which ends with the request.
        return asyncio.get_running_loop().create_task(
            coroutine, name=name, context=contextvars.Context()
        )

    async def ensure_started(self, *, timeout: float) -> bool:
        """Starts the tasks if this loop has none; True once listening."""
        if not self._tasks or any(task.done() for task in self._tasks):
            for task in self._tasks:
                task.cancel()
            self._tasks = [
                self._start(self._run(), f"revid-wait-{self.name}"),
                self._start(self._sweep(), f"revid-wait-sweep-{self.name}"),
            ]
        if self.listening.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.listening.wait()
        return self.listening.is_set()

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self.listening.clear()

    async def _run(self) -> None:
        delay = _BACKOFF_FIRST
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning(
                    "The %s wait listener lost its connection; the sweep looks every %gs "
                    "until it is back",
                    self.name,
                    FALLBACK_POLL_SECONDS,
                    exc_info=True,
                )
            was_listening = self.listening.is_set()
            self.listening.clear()
            self._sweep_now.set()
            if was_listening:
                delay = _BACKOFF_FIRST
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)

    async def _listen(self) -> None:
        """Connects, subscribes, calls ``self._subscribed()``, then dispatches
        announcements until the connection fails."""
        raise NotImplementedError

    def _subscribed(self) -> None:
        self.listening.set()
        # Announcements sent before the subscription are the sweep's.
        self._sweep_now.set()

    def _sweep_interval(self) -> float:
        return RECHECK_SECONDS if self.listening.is_set() else FALLBACK_POLL_SECONDS

    async def _sweep(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._sweep_interval()):
                    await self._sweep_now.wait()
            self._sweep_now.clear()
            await self._sweep_once()

    async def _sweep_once(self) -> None:
        job_ids = self.job_ids()
        if not job_ids:
            return
        try:
            ended = await _on_db_thread(_finished_among, job_ids)
        except Exception:
            logger.warning("The wait sweep could not read the jobs", exc_info=True)
            return
        for job_id in ended:
            self.finish(job_id)


class _PollListener(_Listener):
    """The sweep every WAIT_POLL_MS is the listener; a doorbell makes it look at once."""

    name = "poll"

    def __init__(self, interval: float):
        super().__init__(channel="")
        self.interval = interval
        # Rung by announce_job_finished on this machine: look now, not at the next poll.
        self.bell = Doorbell(settings.WAIT_WAKE_DIR) if settings.LOCAL_WAKE else None

    async def _listen(self) -> None:
        self._subscribed()
        await asyncio.Future()  # nothing to listen to: the sweep does it all

    def _sweep_interval(self) -> float:
        return self.interval

    async def _sweep(self) -> None:
        try:
            while True:
                if not self._by_job:
                    # Nobody waits: sleep until someone does (add sets it).
                    await self._sweep_now.wait()
                self._sweep_now.clear()
                await self._sweep_once()
                if self.bell is not None:
                    stretch = 1 + len(self._by_job) // _STRETCH_PER_JOBS
                    await self.bell.wait_async(
                        max(self.interval, min(1.0, self.interval * stretch))
                    )
                else:
                    await asyncio.sleep(self.interval)
        finally:
            if self.bell is not None:
                self.bell.close()

    def add(self, job_id: str) -> _Waiter:
        was_idle = not self._by_job
        waiter = super().add(job_id)
        if was_idle:
            self._sweep_now.set()  # wake the sweep from its idle sleep
        return waiter


class _PostgresListener(_Listener):
    name = "postgres"

    def __init__(self, channel: str, params: dict):
        super().__init__(channel)
        self.params = params

    async def _listen(self) -> None:
        import psycopg
        from psycopg import sql

        conn = await psycopg.AsyncConnection.connect(**self.params, autocommit=True)
        async with conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self._subscribed()
            while True:
                async for notify in conn.notifies(timeout=HEARTBEAT_SECONDS):
                    self.finish(notify.payload)
                # Quiet for a while: an idle connection's death shows only when used.
                await conn.execute("SELECT 1")


class _RedisListener(_Listener):
    name = "redis"

    def __init__(self, channel: str, url: str):
        super().__init__(channel)
        self.url = url

    async def _listen(self) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # No silent reconnect inside redis-py: announcements published while
        # it reconnected would be lost without the sweep being told.
        client = redis.Redis.from_url(
            self.url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=5,
            socket_keepalive=True,
            health_check_interval=HEARTBEAT_SECONDS,
            client_name=f"{LISTENER_NAME}:{self.channel}",
        )
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            # Once Redis confirms, every later PUBLISH reaches us.
            async with asyncio.timeout(10):
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "subscribe":
                        break
            self._subscribed()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "message":
                    self.finish(message["data"].decode())
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()


# --- this process's listeners ------------------------------------------------

_listeners: dict[asyncio.AbstractEventLoop, dict[tuple, _Listener]] = {}
_redis_clients: dict[str, object] = {}
_db_thread: ThreadPoolExecutor | None = None


def _listener(name: str) -> _Listener:
    """This loop's listener for the current settings (one per backend)."""
    loop = asyncio.get_running_loop()
    channel = settings.WAIT_CHANNEL
    if name == "poll":
        key = (name, settings.WAIT_POLL_MS, str(settings.WAIT_WAKE_DIR))
    elif name == "redis":
        key = (name, settings.REDIS_URL, channel)
    else:
        params = connections[DEFAULT_DB_ALIAS].get_connection_params()
        # Django's cursor class and adapters are not needed on this connection.
        for option in ("cursor_factory", "context", "prepare_threshold", "pool"):
            params.pop(option, None)
        params.setdefault("application_name", LISTENER_NAME)
        params.setdefault("connect_timeout", 5)
        params.setdefault("keepalives", 1)
        key = (name, repr(sorted(params.items())), channel)
    if loop not in _listeners:
        for old in [old for old in _listeners if old.is_closed()]:
            del _listeners[old]
        _listeners[loop] = {}
    listeners = _listeners[loop]
    listener = listeners.get(key)
    if listener is None:
        if name == "poll":
            listener = _PollListener(settings.WAIT_POLL_MS / 1000)
        elif name == "redis":
            listener = _RedisListener(channel, settings.REDIS_URL)
        else:
            listener = _PostgresListener(channel, params)
        listeners[key] = listener
    return listener


async def _on_db_thread(function, *args):
    """``function`` on the sweep's own thread (its own Django connection)."""
    global _db_thread
    if _db_thread is None:
        _db_thread = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="revid-wait-db")
    return await sync_to_async(function, thread_sensitive=False, executor=_db_thread)(*args)


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
    if _db_thread is not None:
        await _on_db_thread(serving.close_db_connections)


def stop_listeners() -> None:
    """Forgets every listener and closes the sweep thread's connections (tests:
    before their database or channel goes away). Call it from sync code."""
    global _db_thread
    for loop, listeners in list(_listeners.items()):
        if loop.is_closed() or not loop.is_running():
            continue
        for listener in listeners.values():
            asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(timeout=10)
    _listeners.clear()
    if _db_thread is not None:
        _db_thread.submit(serving.close_db_connections).result(timeout=10)
        _db_thread.shutdown(wait=True)
        _db_thread = None


def _forget_after_fork() -> None:
    """A forked child has none of its parent's threads and must not share
    its connections: it makes its own when it first needs them."""
    global _db_thread
    _listeners.clear()
    _redis_clients.clear()
    _db_thread = None


os.register_at_fork(after_in_child=_forget_after_fork)


def _redis_client(url: str):
    client = _redis_clients.get(url)
    if client is None:
        import redis

        client = _redis_clients.setdefault(
            url, redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        )
    return client
