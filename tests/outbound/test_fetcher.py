"""The safe outbound fetcher, against real HTTP servers on loopback.

Loopback is let through with OUTBOUND_ALLOWED_NETWORKS=127.0.0.1/32 where a
test needs a server. Private and metadata addresses are never connected to:
the ``connections`` fixture records every connect() so a test can prove the
refusal came first. Names are given addresses by ``fake_dns`` (a stand-in
for getaddrinfo), so nothing here needs a real DNS server.
"""

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest
from django.core.exceptions import ImproperlyConfigured

from outbound import fetcher
from outbound.fetcher import Fetched, OutboundRefused, check_url, fetch, post
from tests.conftest import django_start_error

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
TRICKLE_INTERVAL = 0.2


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _record(self, body: bytes = b"") -> None:
        self.server.seen.append(
            {"method": self.command, "path": self.path, "headers": self.headers, "body": body}
        )

    def _answer(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._record()
        path = self.path
        if path == "/image":
            self._answer(200, IMAGE, {"Content-Type": "image/png"})
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            if left == 0:
                self._answer(200, IMAGE, {"Content-Type": "image/png"})
            else:
                self._answer(302, headers={"Location": f"/redirect/{left - 1}"})
        elif path.startswith("/to?"):
            self._answer(302, headers={"Location": unquote(path[len("/to?") :])})
        elif path.startswith("/status/"):
            self._answer(int(path.rsplit("/", 1)[1]), b"nope", {"Content-Type": "text/plain"})
        elif path == "/big":
            # Claims 50 MB; sends a little, then waits for the client to hang up.
            self.send_response(200)
            self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
            self._stream(b"x" * 1024, pause=TRICKLE_INTERVAL)
        elif path == "/endless":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self._stream(b"x" * 65536, pause=0)
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self._stream(b"x", pause=TRICKLE_INTERVAL)
        elif path == "/trickle-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self._stream(b"X", pause=TRICKLE_INTERVAL)
        else:
            self._answer(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._record(body)
        if self.path == "/redirect":
            self._answer(302, headers={"Location": "/elsewhere"})
        elif self.path.startswith("/status/"):
            self._answer(int(self.path.rsplit("/", 1)[1]))
        else:
            self._answer(200, b'{"ok": true}', {"Content-Type": "application/json"})

    def _stream(self, chunk: bytes, *, pause: float) -> None:
        """Write ``chunk`` again and again until the client goes away (or a minute passes)."""
        give_up = time.monotonic() + 60
        try:
            while time.monotonic() < give_up:
                self.wfile.write(chunk)
                self.wfile.flush()
                if pause:
                    time.sleep(pause)
        except OSError:
            pass
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[dict] = []

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _serve(server):
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return thread


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


def refusal(call, *args, **kwargs) -> OutboundRefused:
    with pytest.raises(OutboundRefused) as info:
        call(*args, **kwargs)
    return info.value


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
