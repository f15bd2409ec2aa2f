"""The event loop's fetcher (image_url at submit), against real servers on loopback.

The same rules as ``outbound.fetcher`` (its tests hold the full set); here
each rule once on the async path, and what only it promises: many slow
remotes at once hold no thread.
"""

import asyncio
import socket
import threading
import time

import pytest
from asgiref.sync import async_to_sync

from outbound import async_fetcher
from outbound.fetcher import OutboundRefused
from tests.outbound.helpers import IMAGE
from tests.outbound.test_fetcher import tls_server  # noqa: F401  (a fixture)


def fetch(url: str, **kwargs):
    return async_to_sync(async_fetcher.fetch)(url, **kwargs)


def refusal(url: str, **kwargs) -> OutboundRefused:
    with pytest.raises(OutboundRefused) as info:
        fetch(url, **kwargs)
    return info.value


def test_it_fetches_the_bytes_the_content_type_and_sends_our_headers(server, allow_loopback):
    fetched = fetch(server.url("/image"), max_bytes=len(IMAGE))
    assert fetched.body == IMAGE
    assert fetched.status == 200
    assert fetched.content_type == "image/png"
    headers = server.seen[0]["headers"]
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    assert headers["User-Agent"] == "revid-outbound/1.0"
    assert headers["Connection"] == "close"


def test_it_follows_three_redirects_and_refuses_a_fourth(server, allow_loopback):
    assert fetch(server.url("/redirect/3"), max_bytes=len(IMAGE)).body == IMAGE
    error = refusal(server.url("/redirect/4"), max_bytes=len(IMAGE))
    assert error.code == "too_many_redirects"


def test_a_loopback_address_is_refused_before_any_connection(server, nothing_allowed, connections):
    error = refusal(server.url("/image"), max_bytes=len(IMAGE))
    assert error.code == "forbidden_address"
    assert server.seen == [] and connections == []


def test_a_redirect_to_a_forbidden_address_is_refused(server, settings, fake_dns):
    # The first host is allowed, the redirect's target resolves to metadata.
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    fake_dns.answer("metadata.example", ["169.254.169.254"])
    error = refusal(
        server.url("/to?http://metadata.example/latest/meta-data/"), max_bytes=len(IMAGE)
    )
    assert error.code == "forbidden_address"
    assert "redirects to metadata.example" in error.message


def test_a_name_is_resolved_once_and_connected_to_at_that_address(
    server, allow_loopback, fake_dns, connections
):
    fake_dns.answer("images.example", ["127.0.0.1"])
    fetched = fetch(f"http://images.example:{server.port}/image", max_bytes=len(IMAGE))
    assert fetched.body == IMAGE
    assert fake_dns.lookups == ["images.example"]
    assert server.seen[0]["headers"]["Host"] == f"images.example:{server.port}"


def test_a_name_with_one_forbidden_address_is_refused(server, allow_loopback, fake_dns):
    fake_dns.answer("mixed.example", ["127.0.0.1", "10.0.0.5"])
    error = refusal(f"http://mixed.example:{server.port}/image", max_bytes=len(IMAGE))
    assert error.code == "forbidden_address"
    assert server.seen == []


def test_size_limits_hold_declared_or_not(server, allow_loopback):
    assert fetch(server.url("/image"), max_bytes=len(IMAGE)).body == IMAGE
    assert refusal(server.url("/image"), max_bytes=len(IMAGE) - 1).code == "too_large"
    started = time.monotonic()
    assert refusal(server.url("/big"), max_bytes=1024 * 1024, timeout=30).code == "too_large"
    assert refusal(server.url("/endless"), max_bytes=1024 * 1024, timeout=30).code == "too_large"
    assert time.monotonic() - started < 15


def test_an_error_status_is_refused_with_that_status(server, allow_loopback):
    error = refusal(server.url("/status/404"), max_bytes=100)
    assert (error.code, error.status) == ("http_status", 404)


@pytest.mark.parametrize("path", ["/trickle", "/trickle-headers"])
def test_a_trickling_server_is_cut_at_the_deadline(path, server, allow_loopback):
    started = time.monotonic()
    error = refusal(server.url(path), max_bytes=1024 * 1024, timeout=1.0)
    assert error.code == "timeout"
    assert error.message == "127.0.0.1 did not answer within 1 second."
    assert time.monotonic() - started < 10


def test_a_closed_port_is_a_connection_failure(allow_loopback):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    error = refusal(f"http://127.0.0.1:{port}/", max_bytes=100, timeout=5)
    assert error.code == "connection_failed"
    assert error.message == "127.0.0.1 refused the connection."


def test_https_checks_the_certificate_against_the_urls_host(
    tls_server,  # noqa: F811
    allow_loopback,
    fake_dns,
):
    fake_dns.answer("images.example", ["127.0.0.1"])
    fetched = fetch(f"https://images.example:{tls_server.port}/image", max_bytes=len(IMAGE))
    assert fetched.body == IMAGE
    assert tls_server.sni == ["images.example"]
    fake_dns.answer("other.example", ["127.0.0.1"])
    error = refusal(f"https://other.example:{tls_server.port}/image", max_bytes=100, timeout=5)
    assert error.code == "connection_failed"
    assert "certificate" in error.message


def test_fifty_slow_remotes_at_once_hold_no_thread(server, allow_loopback):
    """The point of this module: a download that waits on a slow server is a
    coroutine. Fifty trickling downloads run together on one loop while the
    process's thread count stays where it was."""
    counts = []

    async def many():
        calls = [
            async_fetcher.fetch(server.url("/trickle"), max_bytes=1024 * 1024, timeout=1.5)
            for _ in range(50)
        ]
        gathered = asyncio.gather(*calls, return_exceptions=True)
        await asyncio.sleep(0.7)
        counts.append(threading.active_count())
        return await gathered

    before = threading.active_count()
    started = time.monotonic()
    results = async_to_sync(many)()
    assert all(isinstance(r, OutboundRefused) and r.code == "timeout" for r in results)
    assert time.monotonic() - started < 15
    # The server's own threads (one per connection) are in this process too:
    # subtract them by what it served; ours add at most the resolver's pool
    # and the loop's thread.
    server_threads = 50
    assert counts[0] - before <= server_threads + async_fetcher.RESOLVER_THREADS + 2
