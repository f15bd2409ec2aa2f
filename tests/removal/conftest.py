"""Fixtures of the removal tests: an event loop thread for the waiters, a
remote image server on loopback."""

import http.server
import threading
import time

import pytest

from tests.event_loop import EventLoopThread
from tests.images import solid_png

PNG = solid_png(32, 24)


@pytest.fixture
def server_loop():
    """One event loop for the test's waiters (removal.waiting keys listeners by loop)."""
    loop = EventLoopThread()
    yield loop
    from asgiref.sync import SyncToAsync

    from removal import waiting
    from revid.serving import close_db_connections

    waiting.stop_listeners()
    loop.close()
    # Outside a request, the waiters' thread-sensitive reads ran on asgiref's
    # one shared thread: its connection must go before the database does.
    SyncToAsync.single_thread_executor.submit(close_db_connections).result(timeout=10)


class Remote:
    """``/image.png`` answered at once; ``/slow.png`` trickles a byte a second."""

    def __init__(self):
        self.requests: list[str] = []  # the paths asked for, in order
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                requests.append(self.path)
                if self.path == "/image.png":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(PNG)))
                    self.end_headers()
                    self.wfile.write(PNG)
                    return
                if self.path != "/slow.png":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for _ in range(30):
                        self.wfile.write(b"\x89")
                        self.wfile.flush()
                        time.sleep(1)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def remote(allow_loopback):
    server = Remote()
    yield server
    server.close()
