"""Fixtures of the outbound fetcher's tests."""

import socket

import pytest

from tests.outbound.helpers import FakeDNS, Server, _serve


@pytest.fixture
def server():
    server = Server()
    thread = _serve(server)
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def allow_loopback(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]


@pytest.fixture
def nothing_allowed(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []


@pytest.fixture
def connections(monkeypatch):
    """Every address a socket connects to during the test (the connects still happen)."""
    seen: list[tuple] = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        seen.append(address[:2])
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


@pytest.fixture
def fake_dns(monkeypatch):
    dns = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    return dns
