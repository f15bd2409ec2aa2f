"""An event loop on its own thread, for tests and load clients that drive
coroutines from synchronous code."""

from __future__ import annotations

import asyncio
import threading


class EventLoopThread:
    """An event loop on a thread of its own, as a web process's server runs one:
    tests hand it coroutines (``run`` waits, ``start`` returns a future,
    ``call`` runs a plain function on the loop's thread)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def start(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine, timeout: float = 300):
        return self.start(coroutine).result(timeout=timeout)

    def call(self, function, *args):
        """``function(*args)`` on the loop's thread."""

        async def call():
            return function(*args)

        return self.run(call())

    def close(self) -> None:
        async def cancel_all():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
