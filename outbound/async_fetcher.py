"""``outbound.fetcher.fetch`` on the event loop: a slow remote holds no thread.

The same rules as the fetcher, from the same code (``fetcher._parse`` and
``fetcher._target``): http/https only, the host resolved once and EVERY
address checked (``outbound.addresses``), a connection to a checked
address only (``Host``, TLS SNI and the certificate check use the URL's
host), at most ``max_redirects`` redirects each checked again, at most
``max_bytes`` (a larger Content-Length refused before reading), and one
deadline over the whole call however the server trickles. The HTTP/1.1
framing is h11's; the socket is asyncio's.

Name resolution is the one blocking step (the OS resolver has no async
API): it runs on a small pool of its own (``RESOLVER_THREADS``), bounded
by the deadline, so a stuck resolver can delay other downloads' lookups
but never a request thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin

import h11

from outbound import fetcher
from outbound.fetcher import (
    REDIRECT_STATUSES,
    USER_AGENT,
    Fetched,
    OutboundRefused,
    _default_timeout,
    _format_bytes,
    _parse,
    _seconds,
    _Target,
    _target,
    _usable,
    allowed_networks,
)

RESOLVER_THREADS = 4
_CHUNK = 64 * 1024
# The longest status line and headers we read before giving up on a server.
_MAX_HEAD_BYTES = 64 * 1024

_resolver: ThreadPoolExecutor | None = None


class _Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = asyncio.get_running_loop().time() + seconds

    def remaining(self) -> float:
        return self.at - asyncio.get_running_loop().time()


async def fetch(
    url: str, *, max_bytes: int, timeout: float | None = None, max_redirects: int = 3
) -> Fetched:
    """GET a URL we were given, safely; raises ``OutboundRefused`` as ``fetcher.fetch`` does."""
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    timeout = _default_timeout() if timeout is None else timeout
    deadline = _Deadline(timeout)
    current = url
    for redirects in range(max_redirects + 1):
        target = await _check(current, deadline, redirected=redirects > 0)
        status, headers, body = await _get(target, deadline, max_bytes=max_bytes)
        location = headers.get("location")
        if status in REDIRECT_STATUSES and location:
            current = urljoin(current, location.strip())
            continue
        if not 200 <= status < 300:
            raise OutboundRefused(
                "http_status",
                f"{target.host} answered with HTTP status {status}.",
                status=status,
            )
        return Fetched(
            body=body, status=status, content_type=headers.get("content-type", ""), url=current
        )
    raise OutboundRefused(
        "too_many_redirects",
        f"The URL redirected more than {max_redirects} "
        f"{'time' if max_redirects == 1 else 'times'}.",
    )


async def _check(url: str, deadline: _Deadline, *, redirected: bool) -> _Target:
    allowed_networks()  # first: a bad setting fails whatever the URL
    parsed = _parse(url, redirected=redirected)
    host, ascii_host, port = parsed[1], parsed[2], parsed[3]
    global _resolver
    if _resolver is None:
        _resolver = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="outbound-resolve")
    loop = asyncio.get_running_loop()
    lookup = loop.run_in_executor(
        _resolver,
        lambda: socket.getaddrinfo(
            ascii_host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        ),
    )
    try:
        async with asyncio.timeout(max(0.0, deadline.remaining())):
            infos = await lookup
    except TimeoutError:
        raise OutboundRefused(
            "timeout", f"The host {host} could not be resolved within {_seconds(deadline.seconds)}."
        ) from None
    except (OSError, UnicodeError):
        infos = []
    return _target(url, parsed, _usable(infos), redirected=redirected)


async def _get(
    target: _Target, deadline: _Deadline, *, max_bytes: int
) -> tuple[int, dict[str, str], bytes]:
    """One GET on its own connection: (status, headers, body; empty for a redirect)."""
    writer = None
    try:
        async with asyncio.timeout(max(0.0, deadline.remaining())):
            reader, writer = await _connect(target)
            return await _exchange(target, reader, writer, max_bytes=max_bytes)
    except TimeoutError:
        raise _timed_out(target, deadline) from None
    except OutboundRefused:
        raise
    except (OSError, h11.ProtocolError, ValueError) as error:
        raise _network_error(target, error) from error
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)


async def _connect(target: _Target):
    """A connection to the first checked address that answers; never a new lookup."""
    loop = asyncio.get_running_loop()
    last_error: OSError | None = None
    for family, sockaddr in target.sockaddrs:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, sockaddr)
        except OSError as error:
            sock.close()
            last_error = error
            continue
        except BaseException:
            sock.close()
            raise
        tls = target.scheme == "https"
        return await asyncio.open_connection(
            sock=sock,
            ssl=fetcher._tls_context() if tls else None,
            server_hostname=target.ascii_host if tls else None,
            limit=_CHUNK,
        )
    assert last_error is not None
    raise last_error


async def _exchange(target: _Target, reader, writer, *, max_bytes: int):
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD_BYTES)
    headers = [
        ("Host", target.host_header),
        ("User-Agent", USER_AGENT),
        ("Accept", "*/*"),
        ("Connection", "close"),
    ]
    writer.write(
        connection.send(h11.Request(method="GET", target=target.request_target, headers=headers))
    )
    writer.write(connection.send(h11.EndOfMessage()))
    await writer.drain()

    async def next_event():
        while True:
            event = connection.next_event()
            if event is not h11.NEED_DATA:
                return event
            connection.receive_data(await reader.read(_CHUNK))

    event = await next_event()
    while isinstance(event, h11.InformationalResponse):
        event = await next_event()
    if not isinstance(event, h11.Response):
        raise h11.RemoteProtocolError("no response")
    status = event.status_code
    response_headers = {
        name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers
    }
    redirect = status in REDIRECT_STATUSES and response_headers.get("location")
    if redirect or not 200 <= status < 300:
        return status, response_headers, b""
    too_large = OutboundRefused(
        "too_large",
        f"The file at {target.host} is larger than the {_format_bytes(max_bytes)} limit.",
    )
    length = response_headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    total = 0
    while True:
        event = await next_event()
        if isinstance(event, h11.Data):
            total += len(event.data)
            if total > max_bytes:
                raise too_large
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return status, response_headers, b"".join(chunks)
        else:
            raise h11.RemoteProtocolError("the response ended early")


def _timed_out(target: _Target, deadline: _Deadline) -> OutboundRefused:
    return OutboundRefused(
        "timeout", f"{target.host} did not answer within {_seconds(deadline.seconds)}."
    )


def _network_error(target: _Target, error: Exception) -> OutboundRefused:
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return OutboundRefused(
            "connection_failed",
            f"The secure connection to {target.host} failed (its TLS certificate "
            "could not be verified).",
        )
    if isinstance(error, ConnectionRefusedError):
        return OutboundRefused("connection_failed", f"{target.host} refused the connection.")
    if isinstance(error, h11.ProtocolError):
        return OutboundRefused(
            "connection_failed", f"{target.host} sent an incomplete or invalid HTTP response."
        )
    return OutboundRefused("connection_failed", f"Could not connect to {target.host}.")
