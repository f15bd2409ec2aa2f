"""Error reporting: on only when SENTRY_DSN is set, and then an unexpected job
failure reaches the collector (a Sentry-compatible one on loopback here)."""

import gzip
import http.server
import threading
import zlib

import pytest

from tests.conftest import run_with_settings

SCRIPT = """
import django, sentry_sdk
django.setup()
from removal import services
print("active", sentry_sdk.get_client().is_active())
try:
    raise RuntimeError("the worker tripped over something unforeseen")
except RuntimeError as exc:
    print(services.describe_failure(exc, timeout=60))
sentry_sdk.flush(timeout=10)
"""


class Collector:
    """Records the bodies POSTed to it, as Sentry's ingestion endpoint receives them."""

    def __init__(self):
        self.bodies: list[bytes] = []
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding == "br":
                    import brotli

                    body = brotli.decompress(body)
                bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector():
    server = Collector()
    yield server
    server.close()


def test_an_unexpected_job_failure_is_reported_when_sentry_dsn_is_set(collector):
    env = {"SENTRY_DSN": f"http://publickey@127.0.0.1:{collector.port}/42"}
    result = run_with_settings(SCRIPT, env)
    assert result.returncode == 0, result.stderr
    assert "active True" in result.stdout
    assert "Internal error while processing the image" in result.stdout  # the customer's text
    reported = b"".join(collector.bodies)
    assert b"the worker tripped over something unforeseen" in reported
    assert b'"environment":"production"' in reported.replace(b" ", b"")


def test_nothing_is_initialised_or_sent_without_sentry_dsn(collector):
    result = run_with_settings(SCRIPT, {})
    assert result.returncode == 0, result.stderr
    assert "active False" in result.stdout
    assert collector.bodies == []
