"""Fetch or call a URL that a customer gave us, without letting it reach inside our network.

Every URL the service touches (``image_url`` at submit, webhook deliveries in
the worker) goes through here, because a URL is a request made *from our
machines*: left alone, ``http://169.254.169.254/`` reads the cloud's
credentials and ``http://10.0.0.5:6379/`` talks to our Redis (server-side
request forgery). So each request:

1. accepts only plain ``http``/``https`` URLs without a user name or password;
2. resolves the host once, the way the OS would (so ``2130706433``,
   ``0177.0.0.1`` and ``127.1`` all become 127.0.0.1), and refuses the URL if
   ANY address is loopback, private, link-local, multicast, reserved,
   unspecified, shared (100.64.0.0/10) or one of those inside an IPv6 form
   (``::ffff:127.0.0.1``, 6to4, NAT64), unless it is in
   ``OUTBOUND_ALLOWED_NETWORKS``;
3. connects to the address it checked, never resolving the name again (a
   second lookup could answer differently: DNS rebinding), while sending the
   URL's host in ``Host`` and using it for TLS SNI and certificate checks;
4. follows at most ``max_redirects`` redirects (GET only), each checked from
   step 1 again; ``post`` follows none;
5. reads at most ``max_bytes``, refusing a larger ``Content-Length`` before
   reading, and stops by the deadline whatever the server does: connecting,
   each read and the whole call are bounded, so a server that trickles one
   byte a second cannot hold a worker.

Environment proxies (HTTP_PROXY) are not used: a proxy would resolve the
name again. Failures raise ``OutboundRefused`` with a code and a sentence that can be shown
to the customer: it names the host they gave, never an address we resolved.
"""

import contextlib
import functools
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPException
from urllib.parse import quote, urljoin, urlsplit

import certifi
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError
from urllib3.response import HTTPResponse

from outbound.addresses import (  # noqa: F401  (is_forbidden_address: part of the API)
    IPAddress,
    allowed_networks,
    is_allowed,
    is_forbidden_address,
)

logger = logging.getLogger(__name__)


MAX_URL_LENGTH = 8192
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "revid-outbound/1.0"
_CHUNK = 64 * 1024


class OutboundRefused(Exception):
    """A URL we would not fetch, or a fetch that failed; ``message`` is for the customer."""

    CODES = (
        "invalid_url",
        "forbidden_address",
        "unresolvable",
        "too_many_redirects",
        "too_large",
        "timeout",
        "connection_failed",
        "http_status",
    )

    def __init__(self, code: str, message: str, status: int | None = None):
        if code not in self.CODES:
            raise ValueError(f"unknown OutboundRefused code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"OutboundRefused({self.code!r}, {self.message!r}, status={self.status!r})"


@dataclass(frozen=True)
class Fetched:
    body: bytes
    status: int
    content_type: str
    url: str  # the final URL, after redirects


@dataclass(frozen=True)
class Posted:
    status: int
    elapsed: float  # seconds from the start of the call to the response's status line


@dataclass(frozen=True)
class _Target:
    """A checked URL: where to connect and what to send."""

    url: str
    scheme: str
    host: str  # as the customer wrote it, for messages
    ascii_host: str  # IDNA form, for Host, SNI and the certificate check
    port: int
    request_target: str  # path and query
    sockaddrs: tuple[tuple[int, tuple], ...]  # (family, sockaddr), every one checked

    @property
    def host_header(self) -> str:
        host = f"[{self.ascii_host}]" if ":" in self.ascii_host else self.ascii_host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


# --- Settings -----------------------------------------------------------------


def _default_timeout() -> float:
    return float(getattr(settings, "OUTBOUND_TIMEOUT_SECONDS", 10))


# --- The deadline ---------------------------------------------------------------


class _Deadline:
    """The whole call's time limit, enforced even against a trickling server.

    Socket timeouts bound each read, not the sum: a server sending one byte a
    second never trips a 10 s read timeout. So a timer shuts the connection's
    socket down when the deadline passes, which wakes any blocked read.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._watched: socket.socket | None = None
        self._timer: threading.Timer | None = None

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.expired or self.remaining() <= 0

    def watch(self, sock: socket.socket) -> None:
        # A duplicate of the descriptor: TLS moves the socket into a new
        # object, and shutting a duplicate down shuts the connection down,
        # while its number can never be reused by another socket under us.
        with self._lock:
            self._watched = sock.dup()
            self._timer = threading.Timer(max(0.0, self.remaining()), self._expire)
            self._timer.daemon = True
            self._timer.start()

    def release(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._watched is not None:
                self._watched.close()
                self._watched = None

    def _expire(self) -> None:
        with self._lock:
            if self._watched is None:
                return
            self.expired = True
            # OSError: not connected yet, or already closed by the peer.
            with contextlib.suppress(OSError):
                self._watched.shutdown(socket.SHUT_RDWR)


# --- Checking a URL -------------------------------------------------------------


def _refuse_url(message: str, redirected: bool) -> OutboundRefused:
    if redirected:
        message = f"The URL redirects to an invalid URL: {message[0].lower()}{message[1:]}"
    return OutboundRefused("invalid_url", message)


def _parse(url: str, *, redirected: bool = False) -> tuple[str, str, str, int, str]:
    """(scheme, host, ascii_host, port, request_target) of a URL we may fetch."""
    if not isinstance(url, str) or not url:
        raise _refuse_url("The URL is empty.", redirected)
    if len(url) > MAX_URL_LENGTH:
        raise _refuse_url(f"The URL is longer than {MAX_URL_LENGTH} characters.", redirected)
    # Parsers disagree about backslashes, spaces and control characters
    # (is "http://a\@b/" host a or b?); a real URL has none of them.
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 or ch == "\\" for ch in url):
        raise _refuse_url("The URL contains spaces, backslashes or control characters.", redirected)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse_url("The URL is not a valid http or https URL.", redirected) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _refuse_url("Only http and https URLs can be fetched.", redirected)
    if "@" in parts.netloc:
        raise _refuse_url("A URL with a user name or password is not accepted.", redirected)
    host = parts.hostname or ""
    if not host:
        raise _refuse_url("The URL has no host name.", redirected)
    if port is None:
        port = 443 if scheme == "https" else 80
    if not 0 < port < 65536:
        raise _refuse_url("The URL's port is not valid.", redirected)
    if parts.netloc.startswith("["):
        # An IPv6 literal: urlsplit already stripped the brackets. A zone
        # ("%eth0") only makes sense for link-local addresses, refused anyway.
        if "%" in host:
            raise _refuse_url("The URL's IPv6 address is not valid.", redirected)
        try:
            ascii_host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise _refuse_url("The URL's IPv6 address is not valid.", redirected) from None
    else:
        try:
            ascii_host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise _refuse_url("The URL's host name is not valid.", redirected) from None
        if not all(ch.isalnum() or ch in ".-_" for ch in ascii_host) or ".." in ascii_host:
            raise _refuse_url("The URL's host name is not valid.", redirected)
    path = quote(parts.path or "/", safe="/%!$&'()*+,;=:@-._~")
    query = quote(parts.query, safe="/?%!$&'()*+,;=:@-._~")
    request_target = f"{path}?{query}" if query else path
    return scheme, host, ascii_host, port, request_target


def _resolve(host: str, port: int, deadline: _Deadline) -> list:
    """getaddrinfo, bounded by the deadline (a stuck resolver must not hold us)."""
    outcome: dict[str, object] = {}

    def lookup() -> None:
        try:
            outcome["infos"] = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except (OSError, UnicodeError) as error:
            outcome["error"] = error

    thread = threading.Thread(target=lookup, name="outbound-resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline.remaining()))
    if thread.is_alive():
        raise OutboundRefused(
            "timeout", f"The host {host} could not be resolved within {_seconds(deadline.seconds)}."
        )
    return outcome.get("infos") or []  # type: ignore[return-value]


def _check(url: str, deadline: _Deadline, *, redirected: bool = False) -> _Target:
    allowed_networks()  # first: a bad setting fails whatever the URL
    parsed = _parse(url, redirected=redirected)
    sockaddrs = _resolve(parsed[2], parsed[3], deadline)
    return _target(url, parsed, _usable(sockaddrs), redirected=redirected)


def _usable(infos) -> list[tuple[int, tuple]]:
    """(family, sockaddr) of getaddrinfo's IPv4 and IPv6 answers, once each."""
    sockaddrs: list[tuple[int, tuple]] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in sockaddrs:
            sockaddrs.append((family, sockaddr))
    return sockaddrs


def _target(
    url: str, parsed: tuple[str, str, str, int, str], sockaddrs, *, redirected: bool
) -> _Target:
    """The URL as a target we may connect to: EVERY resolved address allowed.

    Shared by ``fetch``/``post`` and the event loop's ``outbound.async_fetcher``.
    """
    scheme, host, ascii_host, port, request_target = parsed
    if not sockaddrs:
        raise OutboundRefused("unresolvable", f"The host {host} could not be resolved.")
    allowed = allowed_networks()
    for _family, sockaddr in sockaddrs:
        address = ipaddress.ip_address(sockaddr[0])
        if not is_allowed(address, allowed):
            # The address goes to our log only: the customer sees their own host.
            logger.info("Outbound request to %s refused: it resolves to %s", host, address)
            where = "redirects to" if redirected else "points to"
            raise OutboundRefused(
                "forbidden_address",
                f"The URL {where} {host}, which is on a private, loopback or reserved network "
                "that this service does not connect to.",
            )
    return _Target(
        url=url,
        scheme=scheme,
        host=host,
        ascii_host=ascii_host,
        port=port,
        request_target=request_target,
        sockaddrs=tuple(sockaddrs),
    )


def check_url(url: str) -> str:
    """Refuse (OutboundRefused) a URL we would not fetch; return it unchanged otherwise.

    For validating a URL at submit (a webhook URL, an image URL) so a bad one
    is a 400 before any charge; fetch and post check again when they run,
    because DNS can change in between.
    """
    _check(url, _Deadline(_default_timeout()))
    return url


# --- Connecting -----------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    # certifi's bundle (the one requests and botocore use), so the result
    # does not depend on the image's CA package; hostname checked by ssl.
    return ssl.create_default_context(cafile=certifi.where())


class _PinnedConnectionMixin:
    """Connects to the addresses checked before, never resolving the host name again."""

    _sockaddrs: tuple[tuple[int, tuple], ...]
    _deadline: _Deadline
    timeout: float

    def _new_conn(self) -> socket.socket:
        last_error: OSError | None = None
        for family, sockaddr in self._sockaddrs:
            sock = socket.socket(family, socket.SOCK_STREAM)
            self._deadline.watch(sock)
            try:
                sock.settimeout(max(0.001, min(self.timeout, self._deadline.remaining())))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect(sockaddr)
            except OSError as error:
                self._deadline.release()
                sock.close()
                last_error = error
                if self._deadline.passed():
                    break
                continue
            return sock
        assert last_error is not None
        raise last_error


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


def _connection(target: _Target, deadline: _Deadline, timeout: float) -> HTTPConnection:
    ip = str(ipaddress.ip_address(target.sockaddrs[0][1][0]))
    connection: HTTPConnection
    if target.scheme == "https":
        connection = _PinnedHTTPSConnection(
            ip,
            target.port,
            timeout=timeout,
            ssl_context=_tls_context(),
            server_hostname=target.ascii_host,
        )
    else:
        connection = _PinnedHTTPConnection(ip, target.port, timeout=timeout)
    connection._sockaddrs = target.sockaddrs  # type: ignore[attr-defined]
    connection._deadline = deadline  # type: ignore[attr-defined]
    return connection


@contextlib.contextmanager
def _exchange(
    target: _Target,
    deadline: _Deadline,
    *,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    timeout: float,
) -> Iterator[HTTPResponse]:
    """One request on its own connection; network failures become OutboundRefused."""
    if deadline.passed():
        raise _timed_out(target, deadline)
    connection = _connection(target, deadline, min(timeout, deadline.remaining()))
    # Host and framing are ours to set: a caller's "host" would be a second Host.
    own = {"host", "connection", "content-length", "transfer-encoding"}
    given = {name.lower() for name in headers}
    sent = {
        name: value
        for name, value in {"User-Agent": USER_AGENT, "Accept": "*/*"}.items()
        if name.lower() not in given
    }
    sent.update({name: value for name, value in headers.items() if name.lower() not in own})
    sent.update({"Host": target.host_header, "Connection": "close"})
    try:
        try:
            connection.connect()
            connection.timeout = max(0.001, min(timeout, deadline.remaining()))
            connection.request(
                method,
                target.request_target,
                body=body,
                headers=sent,
                preload_content=False,
                decode_content=False,
            )
            connection.timeout = max(0.001, min(timeout, deadline.remaining()))
            response = connection.getresponse()
        except (OSError, HTTPException, Urllib3Error, ValueError) as error:
            raise _network_error(target, deadline, error) from error
        try:
            yield response
        except (OSError, HTTPException, Urllib3Error) as error:
            raise _network_error(target, deadline, error) from error
        finally:
            response.close()
    finally:
        deadline.release()
        connection.close()


def _seconds(seconds: float) -> str:
    return f"{seconds:g} second{'' if seconds == 1 else 's'}"


def _timed_out(target: _Target, deadline: _Deadline) -> OutboundRefused:
    return OutboundRefused(
        "timeout", f"{target.host} did not answer within {_seconds(deadline.seconds)}."
    )


def _network_error(target: _Target, deadline: _Deadline, error: Exception) -> OutboundRefused:
    if deadline.passed() or isinstance(error, TimeoutError | ReadTimeoutError):
        return _timed_out(target, deadline)
    logger.info("Outbound request to %s failed: %r", target.host, error)
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return OutboundRefused(
            "connection_failed",
            f"The secure connection to {target.host} failed (its TLS certificate "
            "could not be verified).",
        )
    if isinstance(error, ConnectionRefusedError):
        return OutboundRefused("connection_failed", f"{target.host} refused the connection.")
    if isinstance(error, HTTPException | Urllib3Error):
        return OutboundRefused(
            "connection_failed", f"{target.host} sent an incomplete or invalid HTTP response."
        )
    return OutboundRefused("connection_failed", f"Could not connect to {target.host}.")


# --- The two operations -----------------------------------------------------------


def _format_bytes(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MB"
    if count >= 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count} bytes"


def _read_capped(
    response: HTTPResponse, *, max_bytes: int, target: _Target, deadline: _Deadline
) -> bytes:
    too_large = OutboundRefused(
        "too_large",
        f"The file at {target.host} is larger than the {_format_bytes(max_bytes)} limit.",
    )
    length = (response.headers.get("Content-Length") or "").strip()
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    total = 0
    while True:
        # One byte past the limit is enough to know the body is too large.
        chunk = response.read(min(_CHUNK, max_bytes + 1 - total), decode_content=False)
        if deadline.expired:
            # The timer shut the socket: what looks like the end is a cut.
            raise _timed_out(target, deadline)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise too_large
        chunks.append(chunk)


def fetch(
    url: str, *, max_bytes: int, timeout: float | None = None, max_redirects: int = 3
) -> Fetched:
    """GET a URL we were given, safely (see the module docstring); raises OutboundRefused.

    ``timeout`` (default OUTBOUND_TIMEOUT_SECONDS) bounds connecting, each
    read, and the whole call including redirects.
    """
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    timeout = _default_timeout() if timeout is None else timeout
    deadline = _Deadline(timeout)
    current = url
    for redirects in range(max_redirects + 1):
        target = _check(current, deadline, redirected=redirects > 0)
        with _exchange(
            target,
            deadline,
            method="GET",
            body=None,
            headers={},
            timeout=timeout,
        ) as response:
            location = response.headers.get("Location")
            if response.status in REDIRECT_STATUSES and location:
                current = urljoin(current, location.strip())
                continue
            if not 200 <= response.status < 300:
                raise OutboundRefused(
                    "http_status",
                    f"{target.host} answered with HTTP status {response.status}.",
                    status=response.status,
                )
            body = _read_capped(response, max_bytes=max_bytes, target=target, deadline=deadline)
            return Fetched(
                body=body,
                status=response.status,
                content_type=response.headers.get("Content-Type", ""),
                url=current,
            )
    raise OutboundRefused(
        "too_many_redirects",
        f"The URL redirected more than {max_redirects} "
        f"{'time' if max_redirects == 1 else 'times'}.",
    )


def post(url: str, *, body: bytes, headers: dict[str, str], timeout: float | None = None) -> Posted:
    """POST ``body`` to a URL we were given; never follows a redirect (its 3xx is returned).

    The address is checked again at every call (DNS can change between
    attempts). Network failures and refused addresses raise OutboundRefused;
    any HTTP answer, 2xx or not, is returned as ``Posted.status``.
    """
    timeout = _default_timeout() if timeout is None else timeout
    started = time.monotonic()
    deadline = _Deadline(timeout)
    target = _check(url, deadline)
    with _exchange(
        target, deadline, method="POST", body=body, headers=headers, timeout=timeout
    ) as response:
        return Posted(status=response.status, elapsed=time.monotonic() - started)
