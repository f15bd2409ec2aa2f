"""Fixtures of the removal tests: an event loop thread for the waiters."""

import pytest


class EventLoopThread:
    """An event loop on a thread of its own, as a web process's server runs one:
    tests hand it coroutines (``run`` waits, ``start`` returns a future)."""

    def __init__(self):
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def start(self, coroutine):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine, timeout: float = 60):
        return self.start(coroutine).result(timeout=timeout)

    def close(self) -> None:
        import asyncio

        async def cancel_all():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def server_loop():
    """One event loop for the test's waiters (removal.waiting keys listeners by loop)."""
    loop = EventLoopThread()
    yield loop
    from asgiref.sync import SyncToAsync

    from removal import waiting
    from revid.serving import close_db_connections

    waiting.stop_listeners()
    loop.close()
    # Outside a request, the waiters' thread-sensitive reads ran on asgiref's
    # one shared thread: its connection must go before the database does.
    SyncToAsync.single_thread_executor.submit(close_db_connections).result(timeout=10)
