"""Fixtures of the removal tests: an event loop thread for the waiters."""

import pytest

from tests.event_loop import EventLoopThread


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
