"""Nudges between processes on one machine: Unix datagram sockets in a folder.

Where web and worker share a machine and no message broker (the embedded
default: SQLite, no Redis), they learn of each other's news by polling
the database. A doorbell turns "check again in up to N ms" into "check
now": the waiting side rings for every process that has a bell in the
folder, a listening process waits on its own bell with the poll interval
as timeout. The poll stays the fallback, so a lost datagram, a full
buffer or a process on another machine (whose folder is not this one)
only costs what polling costs.

Each process has its own socket, ``<folder>/<pid>.sock``; bells of
processes that died are removed by the next ring that finds nobody there.

On SQLite every process that enqueues or ends a job shares this machine
(and the database file), so every such event rings: there the poll only
catches a ring lost some other way and looks every
LOCAL_WAKE_FALLBACK_MS (``between_looks``). Its looks at 25-50 ms took
3 % of a 2-core machine from the model during a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import threading
import time
from pathlib import Path

RING = b"!"


def ring_all(folder: Path) -> int:
    """Rings every bell in ``folder``; returns how many were reached. Never raises."""
    try:
        names = [name for name in os.listdir(folder) if name.endswith(".sock")]
    except OSError:
        return 0
    reached = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for name in names:
            path = folder / name
            try:
                sender.sendto(RING, str(path))
                reached += 1
            except BlockingIOError:
                reached += 1  # rung many times already: it will look
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    path.unlink()  # nobody listens there any more
            except OSError:
                pass
    return reached


def between_looks(poll: float, bell: Doorbell) -> float:
    """Seconds a process waits on ``bell`` between looks: ``poll``, or, where every
    ringer shares this machine (LOCAL_WAKE on SQLite) and the bell works, at
    least LOCAL_WAKE_FALLBACK_MS."""
    from django.conf import settings

    if not (settings.LOCAL_WAKE and _every_ringer_is_here() and bell.ready()):
        return poll
    return max(poll, settings.LOCAL_WAKE_FALLBACK_MS / 1000)


def _every_ringer_is_here() -> bool:
    """SQLite: every web and worker shares this machine (and the database file)."""
    from django.db import connection

    return connection.vendor == "sqlite"


class Doorbell:
    """This process's bell in ``folder``, made on first wait (again after a fork)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._socket: socket.socket | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def wait(self, timeout: float) -> bool:
        """Sleeps up to ``timeout`` seconds; True as soon as someone rang."""
        bell = self._bell()
        if bell is None:
            time.sleep(timeout)
            return False
        ready, _, _ = select.select([bell], [], [], timeout)
        if not ready:
            return False
        # Rings that piled up are all answered by one look.
        with contextlib.suppress(BlockingIOError):
            while bell.recv(64):
                pass
        return True

    async def wait_async(self, timeout: float) -> bool:
        """``wait`` on the running event loop: no thread sleeps on the bell."""
        bell = self._bell()
        if bell is None:
            await asyncio.sleep(timeout)
            return False
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_recv(bell, 64)
        except TimeoutError:
            return False
        with contextlib.suppress(BlockingIOError):
            while bell.recv(64):
                pass
        return True

    def ring(self) -> None:
        """Wakes this process's own ``wait`` (from the thread that stops the waiter)."""
        with self._lock:
            if self._socket is None or self._pid != os.getpid():
                return
            path = self.folder / f"{self._pid}.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.setblocking(False)
            with contextlib.suppress(OSError):
                sender.sendto(RING, str(path))

    def ready(self) -> bool:
        """Makes the bell now (a wait would); False where no socket can be made."""
        return self._bell() is not None

    def close(self) -> None:
        with self._lock:
            if self._socket is not None and self._pid == os.getpid():
                self._socket.close()
                with contextlib.suppress(OSError):
                    (self.folder / f"{self._pid}.sock").unlink()
            self._socket, self._pid = None, 0

    def _bell(self) -> socket.socket | None:
        with self._lock:
            if self._socket is not None and self._pid == os.getpid():
                return self._socket
            path = self.folder / f"{os.getpid()}.sock"
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                bell = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                bell.bind(str(path))
                bell.setblocking(False)
            except OSError:
                return None
            self._socket, self._pid = bell, os.getpid()
            return bell
