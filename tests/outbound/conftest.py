"""Fixtures of the outbound fetcher's tests (``allow_loopback``, ``connections``
and ``fake_dns`` are the suite's, in tests/conftest.py)."""

import pytest

from tests.outbound.helpers import Server, _serve


@pytest.fixture
def server():
    server = Server()
    thread = _serve(server)
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def nothing_allowed(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
