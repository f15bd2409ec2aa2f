"""The safe outbound fetcher, against real HTTP servers on loopback.

Loopback is let through with OUTBOUND_ALLOWED_NETWORKS=127.0.0.1/32 where a
test needs a server. Private and metadata addresses are never connected to:
the ``connections`` fixture records every connect() so a test can prove the
refusal came first. Names are given addresses by ``fake_dns`` (a stand-in
for getaddrinfo), so nothing here needs a real DNS server.
"""

import datetime
import socket
import ssl
import time

import pytest

from outbound import fetcher
from outbound.fetcher import Fetched, fetch, post
from tests.outbound.helpers import (
    IMAGE,
    Server,
    _serve,
    refusal,
)

# --- What is fetched --------------------------------------------------------------


def test_it_fetches_the_bytes_and_the_content_type(server, allow_loopback):
    fetched = fetch(server.url("/image"), max_bytes=len(IMAGE))

    assert fetched == Fetched(
        body=IMAGE, status=200, content_type="image/png", url=server.url("/image")
    )
    headers = server.seen[0]["headers"]
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    assert headers["Accept-Encoding"] == "identity"


def test_it_follows_three_redirects_within_the_allowed_network(server, allow_loopback):
    fetched = fetch(server.url("/redirect/3"), max_bytes=len(IMAGE))

    assert fetched.body == IMAGE
    assert fetched.url == server.url("/redirect/0")
    assert [seen["path"] for seen in server.seen] == [f"/redirect/{n}" for n in (3, 2, 1, 0)]


def test_it_refuses_a_fourth_redirect(server, allow_loopback):
    error = refusal(fetch, server.url("/redirect/4"), max_bytes=len(IMAGE))

    assert error.code == "too_many_redirects"
    assert len(server.seen) == 4


def test_max_redirects_zero_follows_none(server, allow_loopback):
    assert refusal(fetch, server.url("/redirect/1"), max_bytes=100, max_redirects=0).code == (
        "too_many_redirects"
    )


def test_a_remote_error_status_is_refused_with_that_status(server, allow_loopback):
    error = refusal(fetch, server.url("/status/404"), max_bytes=100)

    assert (error.code, error.status) == ("http_status", 404)
    assert error.message == "127.0.0.1 answered with HTTP status 404."


def test_a_non_ascii_host_is_sent_in_its_idna_form(server, allow_loopback, fake_dns):
    fake_dns.answer("xn--bcher-kva.example", ["127.0.0.1"])

    fetch(f"http://bücher.example:{server.port}/image", max_bytes=len(IMAGE))

    assert server.seen[0]["headers"]["Host"] == f"xn--bcher-kva.example:{server.port}"


# --- Size and time ------------------------------------------------------------------------


def test_a_body_of_exactly_max_bytes_is_accepted_and_one_more_is_not(server, allow_loopback):
    assert fetch(server.url("/image"), max_bytes=len(IMAGE)).body == IMAGE
    assert refusal(fetch, server.url("/image"), max_bytes=len(IMAGE) - 1).code == "too_large"


def test_a_content_length_over_the_limit_is_refused_before_reading(server, allow_loopback):
    # The server sends only 1 KB a trickle: reading the body would run into the timeout.
    error = refusal(fetch, server.url("/big"), max_bytes=1024 * 1024, timeout=30)

    assert error.code == "too_large"
    assert error.message == "The file at 127.0.0.1 is larger than the 1.0 MB limit."


def test_an_endless_body_is_cut_at_the_limit(server, allow_loopback):
    error = refusal(fetch, server.url("/endless"), max_bytes=2 * 1024 * 1024, timeout=30)

    # Refused for its size, so well before the 30 s deadline.
    assert error.code == "too_large"


def _silent_listener():
    """A socket that accepts connections (the kernel does) and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener


@pytest.mark.parametrize("call", ["fetch", "post"])
def test_a_server_that_never_answers_is_timed_out(call, allow_loopback):
    listener = _silent_listener()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    timeout = 1.0
    started = time.monotonic()
    try:
        if call == "fetch":
            error = refusal(fetch, url, max_bytes=100, timeout=timeout)
        else:
            error = refusal(post, url, body=b"{}", headers={}, timeout=timeout)
    finally:
        listener.close()

    assert error.code == "timeout"
    assert error.message == "127.0.0.1 did not answer within 1 second."
    assert time.monotonic() - started < 10 * timeout


@pytest.mark.parametrize("path", ["/trickle", "/trickle-headers"])
def test_a_server_trickling_bytes_is_cut_at_the_deadline(path, server, allow_loopback):
    # Each byte arrives well within the read timeout; only the total deadline stops it.
    timeout = 1.0
    started = time.monotonic()

    error = refusal(fetch, server.url(path), max_bytes=1024 * 1024, timeout=timeout)

    assert error.code == "timeout"
    assert time.monotonic() - started < 10 * timeout


def test_a_closed_port_is_a_connection_failure(allow_loopback):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    error = refusal(fetch, f"http://127.0.0.1:{port}/", max_bytes=100, timeout=5)

    assert error.code == "connection_failed"
    assert error.message == "127.0.0.1 refused the connection."


# --- post ---------------------------------------------------------------------------------


def test_post_sends_the_body_and_headers_and_returns_the_status(server, allow_loopback):
    posted = post(
        server.url("/hook"),
        body=b'{"type": "removal.completed"}',
        headers={
            "Content-Type": "application/json",
            "webhook-id": "msg_1",
            "user-agent": "Svix-compatible",
            "Host": "evil",
        },
    )

    assert posted.status == 200
    assert posted.elapsed > 0
    [seen] = server.seen
    assert (seen["method"], seen["path"], seen["body"]) == (
        "POST",
        "/hook",
        b'{"type": "removal.completed"}',
    )
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["webhook-id"] == "msg_1"
    assert seen["headers"].get_all("User-Agent") == ["Svix-compatible"]
    assert seen["headers"].get_all("Host") == [f"127.0.0.1:{server.port}"]


def test_post_returns_an_error_status_instead_of_raising(server, allow_loopback):
    assert post(server.url("/status/500"), body=b"", headers={}).status == 500


def test_post_does_not_follow_a_redirect(server, allow_loopback):
    posted = post(server.url("/redirect"), body=b"{}", headers={})

    assert posted.status == 302
    assert [seen["path"] for seen in server.seen] == ["/redirect"]


# --- TLS ----------------------------------------------------------------------------------


def _certificate(tmp_path, hostname: str):
    """A self-signed certificate for ``hostname`` (and a context that trusts it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path, monkeypatch):
    """An HTTPS server on loopback with a certificate for images.example, trusted by us."""
    cert_file, key_file = _certificate(tmp_path, "images.example")
    server = Server()
    server.sni: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda sock, name, ctx: server.sni.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = _serve(server)
    monkeypatch.setattr(
        fetcher, "_tls_context", lambda: ssl.create_default_context(cafile=str(cert_file))
    )
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_https_verifies_the_certificate_against_the_urls_host(
    tls_server, allow_loopback, fake_dns, connections
):
    fake_dns.answer("images.example", ["127.0.0.1"])

    fetched = fetch(f"https://images.example:{tls_server.port}/image", max_bytes=len(IMAGE))

    assert fetched.body == IMAGE
    assert tls_server.sni == ["images.example"]
    assert connections == [("127.0.0.1", tls_server.port)]
    assert tls_server.seen[0]["headers"]["Host"] == f"images.example:{tls_server.port}"


def test_https_refuses_a_certificate_for_another_host(tls_server, allow_loopback, fake_dns):
    fake_dns.answer("other.example", ["127.0.0.1"])

    for url in (
        f"https://other.example:{tls_server.port}/image",
        f"https://127.0.0.1:{tls_server.port}/image",
    ):
        error = refusal(fetch, url, max_bytes=len(IMAGE), timeout=5)
        assert error.code == "connection_failed"
        assert "certificate" in error.message
    assert tls_server.seen == []
