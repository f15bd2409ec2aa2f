"""The four models without downloadable weights, end to end with stand-ins.

u2net_human_seg, u2net_cloth_seg, silueta and isnet-general-use cannot be
downloaded here, so each runs from a stand-in ONNX file with its real
interface (``tests/standin_models.py``) in a temporary U2NET_HOME. A job is
submitted over HTTP, a worker runs it through rembg's own session class for
the model, and the cut-out comes back. The mask must be exactly what
rembg's session computes from the same file (its input size, mean and
deviation, its reading of the outputs: the cloth model's classes
included), so the service feeds each model as rembg does.
"""

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from removal import registry
from removal.models import RemovalJob
from tests.images import encode, photo
from tests.standin_models import STANDINS, write_standins

pytestmark = [pytest.mark.e2e, pytest.mark.model]

URL = "/paid/image/remove/background"


@pytest.fixture
def standin_home(settings, tmp_path, monkeypatch):
    """A U2NET_HOME with the four stand-ins (never var/models): ours through the
    settings, rembg's own reference sessions through the environment."""
    home = write_standins(tmp_path / "models")
    settings.U2NET_HOME = str(home)
    monkeypatch.setenv("U2NET_HOME", str(home))
    return home


def garments() -> Image.Image:
    """Red (upper body), green (lower body) and blue (full body) on dark grey."""
    img = Image.new("RGB", (480, 360), (30, 30, 30))
    img.paste((220, 20, 20), (40, 30, 220, 160))
    img.paste((20, 200, 30), (40, 190, 220, 330))
    img.paste((20, 30, 210), (280, 60, 440, 300))
    return img


def rembg_mask(name: str, img: Image.Image) -> np.ndarray:
    """rembg's own session for ``name`` on the same stand-in, masks merged as ours are."""
    from rembg import new_session

    session = new_session(name, providers=["CPUExecutionProvider"])
    masks = session.predict(img)
    return np.maximum.reduce([np.asarray(m.convert("L")) for m in masks])


def submit(client, name: str, data: bytes) -> RemovalJob:
    response = client.post(
        URL, {"file": SimpleUploadedFile("in.png", data), "model": name}, format="multipart"
    )
    assert response.status_code == 202, response.content[:300]
    return RemovalJob.objects.get(pk=response.json()["task_id"])


def output_alpha(client, job: RemovalJob) -> np.ndarray:
    status = client.get(f"/api/get/{job.id}").json()
    assert status["status"] == "completed", status
    download = client.get(status["result"]["image_url"].split("testserver")[-1])
    assert download.status_code == 200
    data = b"".join(download.streaming_content) if download.streaming else download.content
    out = Image.open(io.BytesIO(data))
    assert out.mode == "RGBA"
    return np.asarray(out.getchannel("A"))


@pytest.mark.parametrize("name", ["u2net_human_seg", "silueta", "isnet-general-use"])
def test_each_mask_model_runs_as_rembg_runs_it(name, standin_home, api_key, inline_worker):
    assert registry.is_available(name)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    img = photo("chelsea").convert("RGB")
    job = submit(client, name, encode(img, "PNG"))
    job.refresh_from_db()
    assert job.model_name == name and job.status == RemovalJob.Status.COMPLETED
    alpha = output_alpha(client, job)
    expected = rembg_mask(name, img)
    assert alpha.shape == expected.shape
    assert np.abs(alpha.astype(int) - expected).max() <= 1


def test_the_two_normalisations_give_different_masks(standin_home, api_key, inline_worker):
    """isnet-general-use (1024 px, mean 0.5, deviation 1) is not silueta (320 px, ImageNet's):
    the same stand-in weights give each model its own mask, so neither is fed the other's."""
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    data = encode(photo("astronaut"), "PNG")
    isnet = output_alpha(client, submit(client, "isnet-general-use", data))
    silueta = output_alpha(client, submit(client, "silueta", data))
    assert np.abs(isnet.astype(int) - silueta).mean() > 5


def test_the_cloth_model_keeps_every_garment_class_and_drops_the_background(
    standin_home, api_key, inline_worker
):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    img = garments()
    alpha = output_alpha(client, submit(client, "u2net_cloth_seg", encode(img, "PNG")))
    assert np.array_equal(alpha, rembg_mask("u2net_cloth_seg", img))
    # Upper, lower and full-body classes each make it into the cut-out.
    for box in ((60, 50, 200, 140), (60, 210, 200, 310), (300, 80, 420, 280)):
        left, top, right, bottom = box
        assert alpha[top:bottom, left:right].min() == 255, box
    # The dark background is class 0: transparent.
    assert alpha[5:25, 5:470].max() == 0
    assert alpha[340:355, 5:470].max() == 0


def test_all_four_run_in_a_real_worker_process(standin_home, api_key, start_worker, live_server):
    """submit -> qcluster -> cut-out, each model loaded from the stand-in home."""
    import requests

    from tests.speed import job_seconds, model_load_seconds, wait_while_progressing

    data = encode(garments(), "PNG")
    # A worker loads each model in its job: that, and the job, measured here.
    slowest = max(model_load_seconds(name) + job_seconds(data, model=name) for name in STANDINS)
    worker = start_worker(WARM_MODELS="")
    headers = {"x-api-key": api_key}
    task_ids = {}
    for name in STANDINS:
        response = requests.post(
            f"{live_server.url}{URL}",
            files={"file": ("in.png", data)},
            data={"model": name},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 202, response.text
        task_ids[name] = response.json()["task_id"]

    def unfinished() -> int:
        jobs = RemovalJob.objects.filter(pk__in=task_ids.values())
        return sum(not job.is_finished for job in jobs)

    # A worker starting (seconds) and then each job: stalled only past that.
    try:
        wait_while_progressing(unfinished, stall=max(60.0, 20 * slowest))
    except AssertionError as exc:
        raise AssertionError(f"{exc}; worker log:\n{worker.log()[-3000:]}") from None
    for name, task_id in task_ids.items():
        job = RemovalJob.objects.get(pk=task_id)
        assert job.status == RemovalJob.Status.COMPLETED, (name, job.error)
        with job.output_file.open("rb") as handle:
            out = Image.open(io.BytesIO(handle.read()))
        alpha = np.asarray(out.getchannel("A"))
        assert np.abs(alpha.astype(int) - rembg_mask(name, garments())).max() <= 1, name
