"""Through HTTP, the queue and a real qcluster process, with the real models."""

import io

import numpy as np
import pytest
import requests
from PIL import Image

from billing.selectors import ledger_sum
from tests.conftest import wait_for
from tests.images import photo_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.model]


def submit(live_server, api_key, data: bytes, model: str, filename: str = "photo.jpg"):
    return requests.post(
        f"{live_server.url}/paid/image/remove/background",
        headers={"x-api-key": api_key},
        files={"file": (filename, data, "image/jpeg")},
        data={"model": model},
        timeout=30,
    )


def poll_until_finished(live_server, task_id: str, timeout: float = 120) -> dict:
    seen = []

    def finished():
        body = requests.get(f"{live_server.url}/api/get/{task_id}", timeout=10).json()
        seen.append((body["status"], body["progress"]))
        return body if body["status"] in ("completed", "failed") else None

    body = wait_for(finished, timeout=timeout, interval=0.1, message=f"task never finished: {seen}")
    return body, seen


def assert_transparent_cutout(png: bytes, size: tuple[int, int]):
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    assert img.mode == "RGBA"
    assert img.size == size
    alpha = np.asarray(img)[..., 3]
    h, w = alpha.shape
    # The top corners are background in these photos (the astronaut's suit
    # reaches the bottom edge); the centre holds the subject.
    corners = [alpha[:8, :8], alpha[:8, -8:]]
    assert all(corner.mean() < 10 for corner in corners), [c.mean() for c in corners]
    centre = alpha[int(h * 0.4) : int(h * 0.6), int(w * 0.4) : int(w * 0.6)]
    assert centre.mean() > 200, centre.mean()


@pytest.mark.parametrize(
    ("photo", "model"),
    [("astronaut", "u2netp"), ("astronaut", "u2net"), ("coffee", "u2net")],
)
def test_a_real_photo_goes_through_http_queue_and_worker(
    live_server, start_worker, account, api_key, photo, model
):
    start_worker()
    data = photo_bytes(photo)
    size = Image.open(io.BytesIO(data)).size

    response = submit(live_server, api_key, data, model)
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]

    body, seen = poll_until_finished(live_server, task_id)
    assert body["status"] == "completed", body
    assert body["progress"] == 100
    result = body["result"]
    assert result["model"] == model
    assert result["input_size"] == len(data)
    assert result["image_url"] == f"{live_server.url}/output/{task_id}_output.png"

    download = requests.get(result["image_url"], timeout=30)
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "image/png"
    assert len(download.content) == result["output_size"]
    assert_transparent_cutout(download.content, size)

    account.refresh_from_db()
    assert account.credit_balance == 1000 - 25
    assert ledger_sum(account=account) == account.credit_balance
