"""Addresses the fetcher never connects to, and the setting that opens some.

Every refusal comes before any connection: the ``connections`` fixture
records each connect().
"""

import ipaddress

import pytest
from django.core.exceptions import ImproperlyConfigured

from outbound import fetcher
from outbound.fetcher import check_url, fetch, post
from tests.conftest import django_start_error
from tests.outbound.helpers import IMAGE, refusal

# --- Addresses we never connect to --------------------------------------------------

INTERNAL_URLS = [
    "http://127.0.0.1/",
    "http://127.0.0.2/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[ff02::1]/",
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 around 169.254.169.254
    "http://[64:ff9b::a00:1]/",  # NAT64 around 10.0.0.1
    "http://[::127.0.0.1]/",  # IPv4-compatible (deprecated) form
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "http://2130706433/",  # 127.0.0.1 in decimal
    "http://0177.0.0.1/",  # octal
    "http://0x7f000001/",  # hex
    "http://127.1/",  # short form
    "http://0xa9.0xfe.0xa9.0xfe/",  # 169.254.169.254 in hex parts
    "http://localhost/",
    "https://10.0.0.1/",
    "http://169.254.169.254:8080/",
]


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_internal_addresses_are_refused_before_any_connection(url, nothing_allowed, connections):
    for call, kwargs in (
        (check_url, {}),
        (fetch, {"max_bytes": 100}),
        (post, {"body": b"{}", "headers": {}}),
    ):
        error = refusal(call, url, **kwargs)
        assert error.code == "forbidden_address", (call.__name__, error)
    assert connections == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.2/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://10.0.0.1/"]
)
def test_allowing_127_0_0_1_lets_nothing_else_through(url, allow_loopback, connections):
    assert refusal(fetch, url, max_bytes=100).code == "forbidden_address"
    assert connections == []


def test_the_message_names_the_customers_host_not_the_address_it_resolved_to(
    nothing_allowed, fake_dns, connections
):
    fake_dns.answer("images.example", ["10.0.0.1"])

    error = refusal(fetch, "http://images.example/cat.png", max_bytes=100)

    assert error.code == "forbidden_address"
    assert "images.example" in error.message
    assert "10.0.0.1" not in error.message
    assert connections == []


def test_a_name_is_refused_if_any_of_its_addresses_is_internal(
    nothing_allowed, fake_dns, connections
):
    fake_dns.answer("images.example", ["93.184.215.14", "169.254.169.254"])

    assert refusal(check_url, "http://images.example/").code == "forbidden_address"
    assert refusal(fetch, "http://images.example/", max_bytes=100).code == "forbidden_address"
    assert connections == []


def test_it_connects_to_the_address_it_checked_without_a_second_lookup(
    server, allow_loopback, fake_dns, connections
):
    # DNS rebinding: a second lookup would now answer with an internal address.
    fake_dns.answer("images.example", ["127.0.0.1"], ["10.0.0.1"])

    fetched = fetch(f"http://images.example:{server.port}/image", max_bytes=len(IMAGE))

    assert fetched.body == IMAGE
    assert fake_dns.lookups == ["images.example"]
    assert connections == [("127.0.0.1", server.port)]
    assert server.seen[0]["headers"]["Host"] == f"images.example:{server.port}"


def test_a_redirect_to_an_internal_address_is_refused(server, allow_loopback, connections):
    for location in (
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://10.0.0.1/",
    ):
        connections.clear()
        error = refusal(fetch, server.url(f"/to?{location}"), max_bytes=100)
        assert error.code == "forbidden_address"
        assert "redirects to" in error.message
        assert connections == [("127.0.0.1", server.port)]


def test_a_redirect_to_a_name_resolving_inside_is_refused(
    server, allow_loopback, fake_dns, connections
):
    fake_dns.answer("internal.example", ["192.168.1.1"])

    error = refusal(fetch, server.url("/to?http://internal.example/"), max_bytes=100)

    assert error.code == "forbidden_address"
    assert connections == [("127.0.0.1", server.port)]


def test_a_redirect_to_another_scheme_is_refused(server, allow_loopback):
    error = refusal(fetch, server.url("/to?file:///etc/passwd"), max_bytes=100)

    assert error.code == "invalid_url"


def test_a_relative_redirect_is_followed(server, allow_loopback):
    assert fetch(server.url("/to?/image"), max_bytes=len(IMAGE)).body == IMAGE


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "gopher://example.com/",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "//example.com/a.png",
        "example.com/a.png",
        "http://",
        "http:///a.png",
        "http://user:secret@example.com/",
        "http://example.com@127.0.0.1/",
        "http://127.0.0.1:80\\@example.com/",
        "http://exa mple.com/",
        "http://example.com:99999/",
        "http://example.com:0/",
        "http://%31%32%37.0.0.1/",
        "http://[::1/",
        "http://[fe80::1%25eth0]/",
        "",
    ],
)
def test_it_refuses_what_is_not_a_plain_http_url(url, connections):
    assert refusal(check_url, url).code == "invalid_url"
    assert refusal(fetch, url, max_bytes=100).code == "invalid_url"
    assert connections == []


def test_a_name_that_does_not_resolve_is_unresolvable(fake_dns):
    fake_dns.answer("nowhere.example", [])

    error = refusal(fetch, "http://nowhere.example/", max_bytes=100)

    assert error.code == "unresolvable"
    assert error.message == "The host nowhere.example could not be resolved."


def test_check_url_returns_an_allowed_url(server, allow_loopback):
    assert check_url(server.url("/image")) == server.url("/image")


# --- Settings -----------------------------------------------------------------------------


def test_the_allowed_networks_are_read_at_call_time(server, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    assert refusal(fetch, server.url("/image"), max_bytes=len(IMAGE)).code == "forbidden_address"

    settings.OUTBOUND_ALLOWED_NETWORKS = "127.0.0.0/8, ::1/128"
    assert fetch(server.url("/image"), max_bytes=len(IMAGE)).body == IMAGE


def test_an_invalid_allowed_network_override_fails_loudly(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/33"]

    with pytest.raises(ImproperlyConfigured, match="OUTBOUND_ALLOWED_NETWORKS"):
        check_url("http://93.184.215.14/")


def test_an_invalid_allowed_network_stops_start_up():
    stderr = django_start_error(
        {"SECRET_KEY": "x" * 50, "OUTBOUND_ALLOWED_NETWORKS": "10.0.0.0/8,not-a-network"}
    )

    assert "OUTBOUND_ALLOWED_NETWORKS" in stderr
    assert "not-a-network" in stderr


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.215.14", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"],
)
def test_public_addresses_are_not_forbidden(address):
    assert not fetcher.is_forbidden_address(ipaddress.ip_address(address))
