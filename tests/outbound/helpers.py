"""Real HTTP servers on loopback, a stand-in DNS and a refusal catcher,
shared by the outbound fetcher's tests (fixtures: conftest.py)."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest

from outbound.fetcher import OutboundRefused

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


def refusal(call, *args, **kwargs) -> OutboundRefused:
    with pytest.raises(OutboundRefused) as info:
        call(*args, **kwargs)
    return info.value
