"""How requests share a web process under the ASGI server (revid/asgi.py).

The server runs one event loop per process. Async views (the doors that
wait: ``?wait=``, ``POST /v1.0/removebg``, ``image_url`` downloads) wait
on it and cost no thread; everything sync still runs on threads:

- Django gives each request a thread of its own the first time the
  request runs sync code (asgiref's ``ThreadSensitiveContext``: the
  ``request_started`` signal, each ``MiddlewareMixin`` hop, a sync view),
  and ends it when the request ends. ``release_request_thread`` ends it
  early, before an async view waits, so a waiting request holds neither a
  thread nor a database connection; a later sync call makes a new one.
- Sync views (pages, the admin, the API's quick views) and the sync steps
  of async views (parsing a body, decoding an image, the charge) take one
  of ``WEB_THREADS`` slots per process while they run (``run_sync``,
  and ``revid.asgi`` for sync views): a burst of uploads queues on the
  loop without a thread each, as it queued in gunicorn's backlog before.
  Waiting and ``/healthz`` take no slot.
- ``begin_shutdown`` (from the server's signal handler) wakes every
  ``?wait=`` long poll so that a stopping server answers them at once
  with the job's status instead of holding its shutdown for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.db import connections

T = TypeVar("T")
logger = logging.getLogger(__name__)

_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
_shutdown: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}


def _per_loop(table: dict, factory: Callable[[], Any]) -> Any:
    """This loop's entry of ``table``; entries of closed loops are dropped
    (tests and async_to_sync run many short-lived loops)."""
    loop = asyncio.get_running_loop()
    value = table.get(loop)
    if value is None:
        for old in [old for old in table if old.is_closed()]:
            del table[old]
        value = table[loop] = factory()
    return value


def sync_slots() -> asyncio.Semaphore:
    """The ``WEB_THREADS`` slots for sync work of this process's loop."""
    return _per_loop(_slots, lambda: asyncio.Semaphore(settings.WEB_THREADS))


async def run_sync(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function`` on the request's thread (as Django runs a sync view), in a slot.

    Under the ASGI server the request's database connections are closed as
    the step ends (outside a transaction): a request between two sync steps,
    or on its way to a wait, holds no connection, so a process never holds
    more than its ``WEB_THREADS`` slots' worth, however many requests it has.
    """
    step = _then_close(function) if _in_server_request() else function
    async with sync_slots():
        return await sync_to_async(step)(*args, **kwargs)


def _in_server_request() -> bool:
    """Whether this is a request of Django's ASGI handler, on a thread of its own."""
    context = SyncToAsync.thread_sensitive_context.get(None)
    return context is not None and getattr(context, "_executor", None) is None


def _then_close(function: Callable[..., T]) -> Callable[..., T]:
    def step(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        finally:
            close_db_connections()

    return step


def close_db_connections() -> None:
    """Closes this thread's database connections (not inside a transaction)."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


async def release_request_thread() -> None:
    """Lets the request's thread end before a long wait, its connections closed.

    Outside Django's ASGI handler (the test client, WSGI) the request's
    sync code runs on the caller's thread, which is not ours to end: then
    this only closes nothing and returns.
    """
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None or getattr(context, "_executor", None) is not None:
        return
    executor = SyncToAsync.context_to_thread_executor.get(context)
    if executor is None:
        return
    await sync_to_async(close_db_connections)()
    if SyncToAsync.context_to_thread_executor.get(context) is executor:
        del SyncToAsync.context_to_thread_executor[context]
        # Its only thread is idle now (the call above returned): it exits
        # at once; the next sync call of this request gets a new executor.
        executor.shutdown(wait=False)


_shutdown_hooks: list[Callable[[], None]] = []


def shutdown_event() -> asyncio.Event:
    """Set once this process's server began to stop."""
    return _per_loop(_shutdown, asyncio.Event)


def on_shutdown(hook: Callable[[], None]) -> None:
    """Calls ``hook()`` on the loop when its server begins to stop (after the event is set)."""
    _shutdown_hooks.append(hook)


def begin_shutdown(loop: asyncio.AbstractEventLoop) -> None:
    """Sets the loop's shutdown event and runs the hooks there (safe from a signal handler)."""

    def begin() -> None:
        event = _shutdown.get(loop)
        if event is None:
            event = _shutdown[loop] = asyncio.Event()
        event.set()
        for hook in _shutdown_hooks:
            try:
                hook()
            except Exception:
                logger.exception("A shutdown hook failed")

    loop.call_soon_threadsafe(begin)
