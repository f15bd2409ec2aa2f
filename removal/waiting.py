"""Waiting for a job's end without a tight database loop.

The worker calls ``announce_job_finished`` once a job reached completed or
failed and that is committed; a web request calls ``wait_for_job``, which
returns as soon as the job is finished, or after its timeout (the caller
then re-reads the job). ``GET /api/get/<id>?wait=N`` and the web page's
status endpoint are built on it.

Backends (``WAIT_BACKEND``; ``auto`` picks the first that applies):

- ``redis`` when ``REDIS_URL`` is set: the worker PUBLISHes the job id on
  ``WAIT_CHANNEL``.
- ``postgres`` when the database is PostgreSQL: the worker runs
  ``pg_notify(WAIT_CHANNEL, id)`` on its own Django connection. Inside a
  transaction PostgreSQL delivers it only at commit, so a waiter is never
  woken before the new status is visible.
- ``poll`` otherwise (SQLite, where web and worker share a file): announcing
  rings the web processes' doorbells on this machine (``LOCAL_WAKE``,
  ``revid.doorbell``), which look at once; and every ``WAIT_POLL_MS``, the
  fallback, one query per web process (primary
  keys, ``id IN (...) AND status IN (completed, failed)``) finds which of
  the jobs its requests wait for have ended. Its cost does not grow with
  the number of waiters, so the interval can be short.

Many waiters in one web process:

- ONE listener thread per process and backend holds one connection of its
  own (never one of a request's): a PostgreSQL connection in LISTEN mode, a
  Redis pub/sub subscription, or the poll's database connection. It turns
  each ended job into a ``threading.Event`` set for that job's waiters. It
  starts on the first wait, again in a forked child (threads do not survive
  ``fork``), and reconnects with backoff when its connection drops.
- No lost wake-ups: a waiter registers its Event, then reads the job, then
  waits. An announcement after the registration sets the Event (and the
  poll sees the registration on its next pass); one sent earlier followed a
  commit, so the read already sees the end.
- A listener that loses its connection may miss announcements meanwhile:
  it wakes every waiter, and they re-read the job; until it is listening
  again they poll, each on its own. As a last net (a job ended by a path
  that does not announce), a waiter re-reads its job every
  ``WAIT_RECHECK_SECONDS``.
- A waiting request closes its thread's Django connection before it blocks
  (outside a transaction), so N waiting requests hold N threads (gunicorn
  gthread, ``make serve``) but no database connections.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from removal.models import RemovalJob
from revid.doorbell import Doorbell, ring_all
from revid.errors import ApplicationError
from revid.observability import WAITING_CLIENTS

logger = logging.getLogger(__name__)

# While the listener is down, each waiter reads its job this often itself.
FALLBACK_POLL_SECONDS = 0.5
# How long the first waiter gives a (re)starting listener to subscribe
# before it polls instead.
LISTENER_START_WAIT = 2.0
# The listener's own liveness check of an idle connection.
HEARTBEAT_SECONDS = 30.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 5.0
# How a listener's connection shows in pg_stat_activity and CLIENT LIST.
LISTENER_NAME = "revid-wait"
# How long the PostgreSQL listener waits for its own probe NOTIFY.
PROBE_SECONDS = 5.0

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
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql" and (
        settings.WAIT_DATABASE_URL or not settings.DB_TRANSACTION_POOLER
    ):
        # Through a transaction pooler LISTEN hears nothing: only with a
        # direct connection of its own.
        return "postgres"
    return "poll"


def announce_job_finished(*, job_id: uuid.UUID | str) -> None:
    """Wakes every web process's waiters of this job. Call it after commit.

    Never raises: a lost announcement only delays a waiter until its next
    re-check, it must not fail the worker's job.
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


def wait_then_reload(job, *, timeout: float | None):
    """The job as it stands once it has ended, or after ``timeout`` seconds.

    The one way a door waits: ``?wait=`` on the API and the web page, and
    remove.bg's synchronous answer (which adds its own deadlines around it).
    """
    if timeout and not job.is_finished:
        with WAITING_CLIENTS.track_inprogress():
            wait_for_job(job_id=job.id, timeout=timeout)
        job.refresh_from_db()
    return job


def wait_for_job(*, job_id: uuid.UUID | str, timeout: float) -> None:
    """Returns once the job is completed or failed, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    key = str(uuid.UUID(str(job_id)))
    listener = _listener(backend_name())
    # Register before reading the job: an announcement from here on sets
    # the event, and one sent earlier followed a commit the read will see.
    waiter = listener.waiters.add(key)
    try:
        while True:
            listening = listener.ensure_started(
                timeout=min(LISTENER_START_WAIT, max(0.0, deadline - time.monotonic()))
            )
            if waiter.finished or _is_finished(key):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            step = settings.WAIT_RECHECK_SECONDS if listening else FALLBACK_POLL_SECONDS
            _release_db_connection()
            if waiter.event.wait(min(remaining, step)) and waiter.finished:
                return
            # A timeout of this step, or a wake-up of every waiter after the
            # listener lost its connection: read the job again.
            waiter.event.clear()
    finally:
        listener.waiters.remove(waiter)


def _is_finished(job_id: str) -> bool:
    return RemovalJob.objects.filter(pk=job_id, status__in=_FINISHED).exists()


def _release_db_connection() -> None:
    """A blocked waiter gives its database connection back (Django reopens
    one on the next query); not inside a transaction, which it would end."""
    connection = connections[DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        connection.close()


# --- waiters and listeners ---------------------------------------------------


class _Waiter:
    __slots__ = ("job_id", "event", "finished")

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.event = threading.Event()
        self.finished = False


class _Waiters:
    """The waiting requests of one process, by job id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_job: dict[str, set[_Waiter]] = {}
        self.any = threading.Event()  # set while someone waits

    def add(self, job_id: str) -> _Waiter:
        waiter = _Waiter(job_id)
        with self._lock:
            self._by_job.setdefault(job_id, set()).add(waiter)
            self.any.set()
        return waiter

    def remove(self, waiter: _Waiter) -> None:
        with self._lock:
            waiters = self._by_job.get(waiter.job_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._by_job[waiter.job_id]
            if not self._by_job:
                self.any.clear()

    def job_ids(self) -> list[str]:
        with self._lock:
            return list(self._by_job)

    def finish(self, job_id: str) -> None:
        with self._lock:
            waiters = list(self._by_job.get(job_id, ()))
        for waiter in waiters:
            waiter.finished = True
            waiter.event.set()

    def wake_all(self) -> None:
        with self._lock:
            waiters = [waiter for group in self._by_job.values() for waiter in group]
        for waiter in waiters:
            waiter.event.set()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(group) for group in self._by_job.values())


class _Listener:
    """One thread and one connection that turn announcements into Events."""

    name = ""

    def __init__(self, channel: str):
        self.channel = channel
        self.waiters = _Waiters()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._stopping = threading.Event()

    def ensure_started(self, *, timeout: float) -> bool:
        """Starts the thread if this process has none; True once it listens."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(
                    target=self._run, name=f"revid-wait-{self.name}", daemon=True
                )
                self._thread.start()
            listening = self._listening
        return listening.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout=10)

    def _run(self) -> None:
        delay = _BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                self._listen()
            except ListenerRefused as exc:
                # A configuration error, not a blip: say so loudly, retry rarely.
                logger.error("%s", exc)
                delay = _BACKOFF_MAX
            except Exception:
                logger.warning(
                    "The %s wait listener lost its connection; waiters poll until it is back",
                    self.name,
                    exc_info=True,
                )
            finally:
                # Clear first, then wake: a waiter that saw "listening" was
                # registered before this clear, so the wake-up reaches it.
                was_listening = self._listening.is_set()
                self._listening.clear()
                self.waiters.wake_all()
            if was_listening:
                delay = _BACKOFF_FIRST
            self._stopping.wait(delay)
            delay = min(delay * 2, _BACKOFF_MAX)

    def _listen(self) -> None:
        """Connects, subscribes, calls ``self._subscribed()``, then dispatches
        announcements until the connection fails or ``_stopping`` is set."""
        raise NotImplementedError

    def _subscribed(self) -> None:
        self._listening.set()


class _PollListener(_Listener):
    name = "poll"

    def __init__(self, interval: float):
        super().__init__(channel="")
        self.interval = interval
        # Rung by announce_job_finished on this machine: look now, not at the next poll.
        self.bell = Doorbell(settings.WAIT_WAKE_DIR) if settings.LOCAL_WAKE else None

    def stop(self) -> None:
        # Its thread may sleep on the bell for a whole poll interval: wake it,
        # or it outlives the join with its database connection open.
        self._stopping.set()
        if self.bell is not None:
            self.bell.ring()
        super().stop()

    def _listen(self) -> None:
        # This thread's own Django connection, opened on the first query.
        connection = connections[DEFAULT_DB_ALIAS]
        try:
            self._subscribed()
            while not self._stopping.is_set():
                if not self.waiters.any.wait(1.0):
                    continue
                # One query for every waiting request of this process.
                for job_id in RemovalJob.objects.filter(
                    pk__in=self.waiters.job_ids(), status__in=_FINISHED
                ).values_list("pk", flat=True):
                    self.waiters.finish(str(job_id))
                if self.bell is not None:
                    self.bell.wait(self.interval)
                else:
                    self._stopping.wait(self.interval)
        finally:
            connection.close()
            if self.bell is not None:
                self.bell.close()


class ListenerRefused(Exception):
    """LISTEN through this connection does not hear what workers NOTIFY."""


class _PostgresListener(_Listener):
    """LISTEN on a connection of its own, after proving it hears NOTIFY.

    Behind PgBouncer in transaction mode (or any pooler that hands a
    session's statements to different server connections) LISTEN runs on
    a server connection that goes back to the pool: notifications never
    arrive, and every waiter would silently fall back to its 5 s re-check.
    So before it counts as listening, the listener sends itself a probe
    through the workers' own path (a NOTIFY on this thread's Django
    connection) and refuses, with an ERROR in the log that says what to
    change, when the probe does not come back; waiters poll meanwhile, and
    it tries again at the longest back-off.
    """

    name = "postgres"

    def __init__(self, channel: str, params: dict):
        super().__init__(channel)
        self.params = params

    def _probe(self, conn) -> None:
        token = f"probe:{uuid.uuid4()}"
        connection = connections[DEFAULT_DB_ALIAS]
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [self.channel, token])
        finally:
            connection.close()
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            for notify in conn.notifies(timeout=max(0.05, deadline - time.monotonic())):
                if notify.payload == token:
                    return
                self.waiters.finish(notify.payload)
        raise ListenerRefused(
            "The wait listener's LISTEN did not hear its own NOTIFY sent through the "
            f"database connection within {PROBE_SECONDS:g} s: DATABASE_URL likely goes "
            "through a transaction pooler (PgBouncer pool_mode=transaction), where LISTEN "
            "cannot work. Set WAIT_DATABASE_URL to a direct connection to the same "
            "database, or WAIT_BACKEND=redis (or poll). Waiting requests poll until then."
        )

    def _listen(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(**self.params, autocommit=True) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self._probe(conn)
            self._subscribed()
            next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
            while not self._stopping.is_set():
                for notify in conn.notifies(timeout=1.0):
                    self.waiters.finish(notify.payload)
                    next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
                if time.monotonic() >= next_heartbeat:
                    # An idle connection's death shows only when used.
                    conn.execute("SELECT 1")
                    next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS


class _RedisListener(_Listener):
    name = "redis"

    def __init__(self, channel: str, url: str):
        super().__init__(channel)
        self.url = url

    def _listen(self) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No silent reconnect inside redis-py: announcements published while
        # it reconnected would be lost without anyone being woken.
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
            pubsub.subscribe(self.channel)
            # Once Redis confirms, every later PUBLISH reaches us.
            confirm_by = time.monotonic() + 10
            while True:
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "subscribe":
                    break
                if time.monotonic() > confirm_by:
                    raise TimeoutError("Redis never confirmed the subscription")
            self._subscribed()
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "message":
                    self.waiters.finish(message["data"].decode())
        finally:
            pubsub.close()
            client.close()


_listeners: dict[tuple, _Listener] = {}
_listeners_lock = threading.Lock()
_redis_clients: dict[str, object] = {}


def _listener(name: str) -> _Listener:
    """This process's listener for the current settings (one per backend)."""
    channel = settings.WAIT_CHANNEL
    if name == "poll":
        key = (name, settings.WAIT_POLL_MS)
    elif name == "redis":
        key = (name, settings.REDIS_URL, channel)
    else:
        params = _listen_connection_params()
        key = (name, repr(sorted(params.items())), channel)
    with _listeners_lock:
        listener = _listeners.get(key)
        if listener is None:
            if name == "poll":
                listener = _PollListener(settings.WAIT_POLL_MS / 1000)
            elif name == "redis":
                listener = _RedisListener(channel, settings.REDIS_URL)
            else:
                listener = _PostgresListener(channel, params)
            _listeners[key] = listener
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
    for option in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(option, None)
    params.setdefault("application_name", LISTENER_NAME)
    params.setdefault("connect_timeout", 5)
    params.setdefault("keepalives", 1)
    return params


def _forget_listeners_after_fork() -> None:
    """A forked child has none of its parent's threads (nor may it share
    their connections): it starts listeners of its own when it first waits."""
    global _listeners_lock
    _listeners.clear()
    _listeners_lock = threading.Lock()
    _redis_clients.clear()


os.register_at_fork(after_in_child=_forget_listeners_after_fork)


def _redis_client(url: str):
    client = _redis_clients.get(url)
    if client is None:
        import redis

        client = _redis_clients.setdefault(
            url, redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        )
    return client


def stop_listeners() -> None:
    """Stops this process's listener threads (tests: before their database
    or channel goes away)."""
    with _listeners_lock:
        listeners = list(_listeners.values())
        _listeners.clear()
    for listener in listeners:
        listener.stop()
