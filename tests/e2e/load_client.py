"""Many HTTP clients at once from one thread: an asyncio HTTP/1.1 client on loopback.

For the load test (tests/e2e/test_many_waiters.py) and ``make bench``'s
waiters rows (bench/bench_waiters.py). A client is a coroutine and a socket,
so a thousand of them cost this process little; each can hang up mid-request
as a person closing a tab does.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass

from tests.event_loop import EventLoopThread as LoopThread  # noqa: F401 (the clients' loop)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent_at: float  # time.monotonic() when the request was sent
    answered_at: float  # time.monotonic() when the whole answer was in

    @property
    def seconds(self) -> float:
        return self.answered_at - self.sent_at


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]):
    """(body, content type) of a multipart/form-data body."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        disposition = f'Content-Disposition: form-data; name="{name}"'
        parts.append(f"--{boundary}\r\n{disposition}\r\n\r\n{value}\r\n".encode())
    for name, (filename, data, content_type) in files.items():
        parts.append(
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{name}"; filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Call:
    """One request on its own connection (Connection: close); ``hang_up`` closes it."""

    def __init__(self, host: str, port: int, method: str, path: str, *, headers=None, body=b""):
        self.host, self.port = host, port
        self.method, self.path = method, path
        self.headers = dict(headers or {})
        self.body = body
        self.writer: asyncio.StreamWriter | None = None
        self.sent = asyncio.Event()

    async def answer(self, timeout: float = 120) -> Answer:
        reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = [f"{self.method} {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{name}: {value}" for name, value in self.headers.items()]
        head += ["Connection: close", f"Content-Length: {len(self.body)}", "", ""]
        self.writer.write("\r\n".join(head).encode("latin-1") + self.body)
        await self.writer.drain()
        sent_at = time.monotonic()
        self.sent.set()
        async with asyncio.timeout(timeout):
            data = await reader.read(-1)
        answered_at = time.monotonic()
        self.writer.close()
        return parse(data, sent_at, answered_at)

    def hang_up(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


def parse(data: bytes, sent_at: float, answered_at: float) -> Answer:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0] if lines else "")
    if match is None:
        raise ConnectionError(f"no HTTP answer: {data[:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    return Answer(int(match.group(1)), headers, body, sent_at, answered_at)


def _unchunk(data: bytes) -> bytes:
    out, position = [], 0
    while True:
        line_end = data.index(b"\r\n", position)
        size = int(data[position:line_end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        start = line_end + 2
        out.append(data[start : start + size])
        position = start + size + 2


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (from /proc)."""
    from pathlib import Path

    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = {root}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                changed = True
    return sorted(found)


def rss_and_threads(pids: list[int]) -> tuple[int, int]:
    """(resident bytes, threads) of ``pids`` together."""
    from pathlib import Path

    rss = threads = 0
    for pid in pids:
        try:
            status = (Path("/proc") / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads += int(line.split()[1])
    return rss, threads
