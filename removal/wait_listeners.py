"""The listeners behind removal/waiting.py: one task per event loop and
backend that turns announcements into Events, and the sweep beside it.

``waiting`` keeps one listener per loop and backend (``waiting._listener``)
and the waiters' side; this module has how each backend hears a job's end
(redis.asyncio pub/sub, psycopg's async LISTEN, a poll with a doorbell) and
the sweep's queries, which run on a few threads of their own (kept
connections), never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from removal.models import RemovalJob
from revid import serving
from revid.doorbell import Doorbell, between_looks

logger = logging.getLogger("removal.waiting")

# While the listener is down, the sweep looks this often.
FALLBACK_POLL_SECONDS = 0.5
# The listener's own liveness check of an idle connection.
HEARTBEAT_SECONDS = 30.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 5.0
# How a listener's connection shows in pg_stat_activity and CLIENT LIST.
LISTENER_NAME = "revid-wait"
# How long the PostgreSQL listener waits for its own probe NOTIFY.
PROBE_SECONDS = 5.0
# Job ids per sweep query (SQLite's bound on query parameters).
_SWEEP_CHUNK = 500
# Threads (each with its own kept connection) for the sweep and for
# reloading the jobs of woken waiters.
DB_THREADS = 4
# With a doorbell, the poll is only the net for a lost ring: its interval
# stretches by one WAIT_POLL_MS per this many waited jobs (up to a second),
# so a thousand waiters do not cost a query every 25 ms.
_STRETCH_PER_JOBS = 50


FINISHED = (RemovalJob.Status.COMPLETED, RemovalJob.Status.FAILED)

_db_thread: ThreadPoolExecutor | None = None


async def on_db_thread(function, *args):
    """``function`` on the sweep's own threads (their own kept Django connections)."""
    global _db_thread
    if _db_thread is None:
        _db_thread = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="revid-wait-db")
    return await sync_to_async(function, thread_sensitive=False, executor=_db_thread)(*args)


def _close_on_every_db_thread(pool: ThreadPoolExecutor) -> None:
    """Each sweep thread closes its own connection: one task per thread, held
    at a barrier so that no thread takes two."""
    barrier = threading.Barrier(DB_THREADS)

    def close() -> None:
        serving.close_db_connections()
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=10)

    for future in [pool.submit(close) for _ in range(DB_THREADS)]:
        future.result(timeout=20)


async def close_db_thread_connections() -> None:
    """Closes the sweep threads' connections (server shutdown), threads kept."""
    if _db_thread is not None:
        await asyncio.to_thread(_close_on_every_db_thread, _db_thread)


def stop_db_thread() -> None:
    """Closes the sweep threads' connections and ends them (tests; sync code)."""
    global _db_thread
    if _db_thread is not None:
        _close_on_every_db_thread(_db_thread)
        _db_thread.shutdown(wait=True)
        _db_thread = None


def _forget_after_fork() -> None:
    """A forked child has none of its parent's threads: it makes its own."""
    global _db_thread
    _db_thread = None


os.register_at_fork(after_in_child=_forget_after_fork)


def finished_among(job_ids: list[str]) -> list[str]:
    """Which of ``job_ids`` have ended: one query per chunk, on the sweep's thread."""
    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
    ended = []
    for start in range(0, len(job_ids), _SWEEP_CHUNK):
        chunk = job_ids[start : start + _SWEEP_CHUNK]
        ended.extend(
            str(pk)
            for pk in RemovalJob.objects.filter(pk__in=chunk, status__in=FINISHED).values_list(
                "pk", flat=True
            )
        )
    return ended


class Waiter:
    __slots__ = ("job_id", "event", "finished")

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.event = asyncio.Event()
        self.finished = False


class Listener:
    """One task and one connection that turn announcements into Events,
    and a sweep that finds the ends no announcement brought."""

    name = ""

    def __init__(self, channel: str):
        self.channel = channel
        self._by_job: dict[str, set[Waiter]] = {}
        self.listening = asyncio.Event()
        self._sweep_now = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # Waiters (all on the loop's thread: no lock).

    def add(self, job_id: str) -> Waiter:
        waiter = Waiter(job_id)
        self._by_job.setdefault(job_id, set()).add(waiter)
        return waiter

    def remove(self, waiter: Waiter) -> None:
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
            except ListenerRefused as exc:
                # A configuration error, not a blip: say so loudly, retry rarely.
                logger.error("%s", exc)
                delay = _BACKOFF_MAX
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
        if self.listening.is_set():
            return settings.WAIT_RECHECK_SECONDS
        return FALLBACK_POLL_SECONDS

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
            ended = await on_db_thread(finished_among, job_ids)
        except Exception:
            logger.warning("The wait sweep could not read the jobs", exc_info=True)
            return
        for job_id in ended:
            self.finish(job_id)


class PollListener(Listener):
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
                    poll = max(self.interval, min(1.0, self.interval * stretch))
                    await self.bell.wait_async(between_looks(poll, self.bell))
                else:
                    await asyncio.sleep(self.interval)
        finally:
            if self.bell is not None:
                self.bell.close()

    def add(self, job_id: str) -> Waiter:
        was_idle = not self._by_job
        waiter = super().add(job_id)
        if was_idle:
            self._sweep_now.set()  # wake the sweep from its idle sleep
        return waiter


class ListenerRefused(Exception):
    """LISTEN through this connection does not hear what workers NOTIFY."""


def send_notify(channel: str, payload: str) -> None:
    """NOTIFY on this thread's Django connection: the path workers announce by."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [channel, payload])


class PostgresListener(Listener):
    """LISTEN on psycopg's async connection of its own, after proving it
    hears NOTIFY.

    Behind PgBouncer in transaction mode (or any pooler that hands a
    session's statements to different server connections) LISTEN runs on
    a server connection that goes back to the pool: notifications never
    arrive, and every waiter would silently fall back to the sweep's
    re-check. So before it counts as listening, the listener sends itself a
    probe through the workers' own path (a NOTIFY on a Django connection,
    from the sweep's threads) and refuses, with an ERROR in the log that
    says what to change, when the probe does not come back; the sweep
    looks every FALLBACK_POLL_SECONDS meanwhile, and it tries again at the
    longest back-off.
    """

    name = "postgres"

    def __init__(self, channel: str, params: dict):
        super().__init__(channel)
        self.params = params

    async def _probe(self, conn) -> None:
        token = f"probe:{uuid.uuid4()}"
        await on_db_thread(send_notify, self.channel, token)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROBE_SECONDS
        while (left := deadline - loop.time()) > 0:
            async for notify in conn.notifies(timeout=max(0.05, left)):
                if notify.payload == token:
                    return
                self.finish(notify.payload)
        raise ListenerRefused(
            "The wait listener's LISTEN did not hear its own NOTIFY sent through the "
            f"database connection within {PROBE_SECONDS:g} s: DATABASE_URL likely goes "
            "through a transaction pooler (PgBouncer pool_mode=transaction), where LISTEN "
            "cannot work. Set WAIT_DATABASE_URL to a direct connection to the same "
            "database, or WAIT_BACKEND=redis (or poll). Waiting requests are answered "
            "by the sweep until then."
        )

    async def _listen(self) -> None:
        import psycopg
        from psycopg import sql

        conn = await psycopg.AsyncConnection.connect(**self.params, autocommit=True)
        async with conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            await self._probe(conn)
            self._subscribed()
            while True:
                async for notify in conn.notifies(timeout=HEARTBEAT_SECONDS):
                    self.finish(notify.payload)
                # Quiet for a while: an idle connection's death shows only when used.
                await conn.execute("SELECT 1")


class RedisListener(Listener):
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
