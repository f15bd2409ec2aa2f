"""gunicorn's worker for revid.asgi: uvicorn, one event loop per process.

`make run` (the Procfile) and `make serve` both run
``gunicorn revid.asgi:application --worker-class revid.server.Worker``.
uvicorn-worker's ``UvicornWorker``, with:

- the ASGI lifespan is on (``revid.asgi`` closes the waiting listeners'
  connections at shutdown);
- on SIGTERM or SIGINT the process's ``?wait=`` long polls are answered
  at once with their job's status (``revid.serving``) instead of holding
  the graceful shutdown for up to WAIT_MAX_SECONDS; a synchronous
  ``/v1.0/removebg`` call keeps waiting for its job within the graceful
  timeout, as a request in flight always did;
- httptools and uvloop are used (pinned), as uvicorn does when they are
  installed.
"""

from __future__ import annotations

import asyncio
import sys

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from revid.serving import begin_shutdown


class _Server(Server):
    def handle_exit(self, sig: int, frame) -> None:
        loop = getattr(self, "_revid_loop", None)
        if loop is not None and not loop.is_closed():
            begin_shutdown(loop)
        super().handle_exit(sig, frame)


class Worker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "auto", "http": "auto", "lifespan": "on"}

    async def _serve(self) -> None:
        # UvicornWorker._serve with our Server (its signal handler above).
        self.config.app = self.wsgi
        server = _Server(config=self.config)
        server._revid_loop = asyncio.get_running_loop()
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
