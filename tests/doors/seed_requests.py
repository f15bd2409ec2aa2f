"""Requests to the seed API's door, as a customer makes them, for its tests.

``post`` submits, ``run`` submits and downloads the finished cut-out (the
job run by ``inline_worker``), ``assert_refused`` checks an error came
before the charge; ``redirector`` is a loopback image server that can
redirect and drip.
"""

import io
import threading
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from imaging import pipeline, subject
from removal import registry
from tests.images import photo_bytes
from tests.removal.helpers import assert_json_error, assert_nothing_charged

URL = "/paid/image/remove/background"
MODEL = "u2netp"
PHOTO = photo_bytes("astronaut")  # 512x512, a person against a plain background


@cache
def default_png() -> bytes:
    """What the pipeline gives PHOTO with no options: the seed's PNG."""
    session = registry.get_session(MODEL)
    return pipeline.remove_background(PHOTO, session, max_pixels=settings.MAX_IMAGE_PIXELS).data


def default_alpha() -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(default_png())).getchannel("A"))


def subject_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of alpha >= FOREGROUND_MIN_ALPHA, counted here in numpy."""
    ys, xs = np.nonzero(alpha >= subject.FOREGROUND_MIN_ALPHA)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def post(client, data=None, *, image=PHOTO, **extra):
    data = dict(data or {})
    data.setdefault("model", MODEL)
    if image is not None:
        data["file"] = SimpleUploadedFile("photo.jpg", image)
    return client.post(URL, data, format="multipart", **extra)


class Result:
    def __init__(self, status: dict, download):
        self.status = status
        self.result = status["result"]
        self.download = download
        self.data = b"".join(download.streaming_content)

    @property
    def image(self) -> Image.Image:
        img = Image.open(io.BytesIO(self.data))
        img.load()
        return img


def run(client, data=None, *, image=PHOTO, **extra) -> Result:
    """Submits, reads the finished task's status, downloads its file."""
    response = post(client, data, image=image, **extra)
    assert response.status_code == 202, response.content[:400]
    task_id = response.json()["task_id"]
    status = client.get(f"/api/get/{task_id}").json()
    assert status["status"] == "completed", status
    download = client.get(f"/output/{status['result']['image_filename']}")
    assert download.status_code == 200
    return Result(status, download)


def assert_refused(response, status: int, code: str, account, *, names: str | None = None):
    """A JSON error with this status and code (naming ``names``); nothing charged, no job."""
    body = assert_json_error(response, status, code)
    if names:
        assert names in body["error"], body
    assert_nothing_charged(account)
    return body


class RedirectHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.requests.append(self.path)
        if self.path.startswith("/to?"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/to?") :])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = b"\xff" * 65536
            try:
                for _ in range(10_000):  # 640 MB at most, if nobody hangs up
                    self.wfile.write(chunk)
            except OSError:
                pass
            self.close_connection = True
        else:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(PHOTO)))
            self.end_headers()
            self.wfile.write(PHOTO)


class Redirector(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RedirectHandler)
        self.requests: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def redirector(allow_loopback):
    """A loopback server the fetcher may reach: it serves PHOTO, redirects
    where asked (/to?<url>) and sends an endless body (/endless)."""
    server = Redirector()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()
