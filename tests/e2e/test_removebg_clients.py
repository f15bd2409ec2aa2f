"""Real remove.bg client libraries from PyPI, unmodified, against our server.

Each is pointed at the live test server through its own base-URL setting
(a module variable: ``remove_bg_api.API_URL``, ``rembgpy.bg.base_url``),
exactly as a team moving off remove.bg would, and a real ``qcluster``
worker removes the background of a real photo with the real u2netp model.
npm's ``remove.bg`` package keeps its endpoint in a constant: it runs
unmodified under node, re-pointed through its HTTP library (unirest, see
``npm_removebg.js``), installed by npm into var/npm-clients.
"""

import base64
import functools
import importlib
import io
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import remove_bg_api
import requests
from PIL import Image

from accounts.services import create_api_key
from billing.selectors import ledger_sum
from billing.services import open_account
from removal.models import RemovalJob
from tests.conftest import ROOT
from tests.images import encode, noisy_photo_png, photo, photo_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.model]

PHOTO = photo_bytes("astronaut")  # 512 x 512 JPEG
PRICE = 25


@pytest.fixture
def server(live_server, settings, monkeypatch):
    """The live server on u2netp; both clients' base URLs point at it."""
    # The operator's default model: what `type=auto`, which both clients send, runs.
    settings.REMOVAL_DEFAULT_MODEL = "u2netp"
    monkeypatch.setattr(remove_bg_api, "API_URL", f"{live_server.url}/v1.0")
    return live_server


@pytest.fixture
def rembgpy_bg(server, monkeypatch):
    """rembgpy's module, its ``base_url`` on our server.

    Importing rembgpy calls ``logging.disable(logging.CRITICAL)`` for the
    whole process, and ``RemBg()`` calls ``logging.basicConfig``: imported
    here rather than at collection, and logging restored after the test.
    """
    previous, handlers = logging.root.manager.disable, logging.root.handlers[:]
    bg = importlib.import_module("rembgpy.bg")
    monkeypatch.setattr(bg, "base_url", f"{server.url}/v1.0/removebg")
    yield bg
    logging.disable(previous)
    logging.root.handlers[:] = handlers


@pytest.fixture
def worker(start_worker):
    return start_worker(OUTBOUND_ALLOWED_NETWORKS="127.0.0.1/32", WARM_MODELS="u2netp")


def assert_cutout_of_the_photo(data: bytes, *, size: tuple[int, int]) -> None:
    """An RGBA PNG of the photo: transparent top corners, an opaque subject."""
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG", img.format
    assert img.mode == "RGBA"
    assert img.size == size
    alpha = np.asarray(img)[..., 3]
    h, w = alpha.shape
    assert alpha[:8, :8].mean() < 10 and alpha[:8, -8:].mean() < 10
    assert alpha[int(h * 0.4) : int(h * 0.6), int(w * 0.4) : int(w * 0.6)].mean() > 200
    # Neither all opaque nor all clear: a real cut-out.
    assert 0.1 < (alpha > 127).mean() < 0.9


def removebg_jobs() -> list[RemovalJob]:
    return list(RemovalJob.objects.filter(origin=RemovalJob.Origin.REMOVEBG).order_by("created_at"))


def test_remove_bg_api_removes_a_background_from_a_file_bytes_base64_and_a_url(
    server, worker, account, api_key, tmp_path, loopback_files
):
    photo_path = tmp_path / "astronaut.jpg"
    photo_path.write_bytes(PHOTO)
    url = loopback_files.serve("/photos/astronaut.jpg", PHOTO)

    client = remove_bg_api.RemoveBg(api_key)
    # The constructor read /v1.0/account: credits.total is our balance.
    assert client.account.balance() == 1000
    results = [
        client.remove_bg_file(str(photo_path)),
        client.remove_bg_bytes(PHOTO),
        client.remove_bg_base64(base64.b64encode(PHOTO).decode()),
        client.remove_bg_url(url),
    ]
    # Its default size is "preview" (0.25 MP).
    for data in results:
        assert_cutout_of_the_photo(data, size=(500, 500))
    # It kept count from X-Credits-Charged (int() of it), and the server agrees.
    assert client.account.balance() == 1000 - 4 * PRICE
    client.account.refresh_balance()
    assert client.account.balance() == 1000 - 4 * PRICE
    assert client.account.get_balance_dict() == {
        "total": 900,
        "subscription": 0,
        "payg": 900,
        "enterprise": 0,
    }
    assert client.account.free_api_calls() == 0
    account.refresh_from_db()
    assert account.credit_balance == 900 == ledger_sum(account=account)
    jobs = removebg_jobs()
    assert [job.status for job in jobs] == [RemovalJob.Status.COMPLETED] * 4
    assert {job.model_name for job in jobs} == {"u2netp"}


def test_remove_bg_api_sends_a_15_mb_photo_as_base64_and_gets_its_cutout(
    server, worker, account, api_key
):
    # Its remove_bg_base64 posts a urlencoded form: 20 MB of base64, 21 MB
    # with its percent-escapes (Django alone refuses text over 2 MB).
    photo = noisy_photo_png(2560)
    assert len(photo) > 15_000_000
    client = remove_bg_api.RemoveBg(api_key)
    result = client.remove_bg_base64(base64.b64encode(photo).decode())
    assert_cutout_of_the_photo(result, size=(500, 500))  # its default size, "preview"
    (job,) = removebg_jobs()
    assert (job.status, job.input_size, job.width) == (
        RemovalJob.Status.COMPLETED,
        len(photo),
        2560,
    )
    account.refresh_from_db()
    assert account.credit_balance == 1000 - PRICE == ledger_sum(account=account)
    assert client.account.balance() == 1000 - PRICE


def test_remove_bg_api_raises_its_own_errors_for_our_403_402_and_400(server, account, api_key):
    with pytest.raises(remove_bg_api.Errors.ApiErrorCode403):
        remove_bg_api.RemoveBg("not-a-key")  # its constructor reads the account

    client = remove_bg_api.RemoveBg(api_key)
    with pytest.raises(remove_bg_api.Errors.ApiErrorCode400):
        client.remove_bg_bytes(PHOTO, size="enormous")
    with pytest.raises(remove_bg_api.Errors.ApiErrorCode400):
        client.remove_bg_bytes(b"not an image")

    _, broke_key = create_api_key(account=open_account(name="broke", credits=10), name="k")
    broke = remove_bg_api.RemoveBg(broke_key)
    assert broke.account.balance() == 10
    with pytest.raises(remove_bg_api.Errors.ApiErrorCode402):
        broke.remove_bg_bytes(PHOTO)
    # Nobody paid, and nothing was queued.
    account.refresh_from_db()
    assert account.credit_balance == 1000 == ledger_sum(account=account)
    assert broke.account.get_balance_dict()["total"] == 10
    assert removebg_jobs() == []


def test_rembgpy_removes_a_background_from_base64_and_a_url_with_its_defaults(
    rembgpy_bg, worker, account, api_key, tmp_path, loopback_files
):
    # rembgpy sends remove.bg's defaults with every call: size regular,
    # type_level none, roi "0 0 100% 100%", crop false, scale and position
    # "original", channels rgba, add_shadow false, semitransparency true.
    client = rembgpy_bg.RemBg(api_key, str(tmp_path / "rembgpy.log"))
    from_b64 = tmp_path / "from-b64.png"
    from_url = tmp_path / "from-url.png"
    url = loopback_files.serve("/photos/astronaut.jpg", PHOTO)

    assert client.remove_b64(base64.b64encode(PHOTO).decode(), nfn=str(from_b64)) == (
        "[*] Process finished."
    )
    # Its file method is shadowed by its URL method of the same name
    # (remove_img is defined twice), so remove_img takes a URL.
    assert client.remove_img(url, nfn=str(from_url)) == "[*] Process finished."

    for path in (from_b64, from_url):
        assert_cutout_of_the_photo(path.read_bytes(), size=(500, 500))  # regular: 0.25 MP
    account.refresh_from_db()
    assert account.credit_balance == 1000 - 2 * PRICE == ledger_sum(account=account)
    jobs = removebg_jobs()
    assert [job.status for job in jobs] == [RemovalJob.Status.COMPLETED] * 2
    assert jobs[0].options["max_pixels"] == 250_000


def test_rembgpy_raises_http_errors_for_our_403_402_and_400_and_reads_their_titles(
    rembgpy_bg, account, api_key, tmp_path
):
    b64 = base64.b64encode(PHOTO).decode()
    log = str(tmp_path / "rembgpy.log")
    _, broke_key = create_api_key(account=open_account(name="broke", credits=10), name="k")
    cases = [
        # (key, keyword arguments, status, remove.bg's code)
        ("not-a-key", {}, 403, "auth_failed"),
        (broke_key, {}, 402, "insufficient_credits"),
        (api_key, {"bg": "#nothex", "bg_type": "color"}, 400, "invalid_bg_color"),
        (api_key, {"bg": "http://x.invalid/y.jpg", "bg_type": "url"}, 400, "invalid_bg_image_url"),
    ]
    for key, kwargs, status, code in cases:
        client = rembgpy_bg.RemBg(key, log)
        # rembgpy calls raise_for_status() on every answer: a 4xx is
        # requests' HTTPError, carrying our response.
        with pytest.raises(requests.HTTPError) as caught:
            client.remove_b64(b64, nfn=str(tmp_path / "never.png"), **kwargs)
        response = caught.value.response
        assert response.status_code == status, response.text
        (error,) = response.json()["errors"]
        assert error["code"] == code, error
        # Its own error path (_out_file, which logs the reason) reads
        # errors[0].title of remove.bg's shape: ours parses there too.
        message = client._out_file(response, str(tmp_path / "never.png"))
        assert message[2] == error["title"].lower() != "", message
        assert not (tmp_path / "never.png").exists()
    account.refresh_from_db()
    assert account.credit_balance == 1000 == ledger_sum(account=account)
    assert removebg_jobs() == []


# --- Background images, shadows, hard edges, a 10 MB photo in base64 ------------

BACKGROUND = encode(photo("coffee"), "JPEG", quality=92)  # 600 x 400


def _product() -> bytes:
    """A cup on a plain wall, with room under it for a shadow."""
    canvas = Image.new("RGB", (640, 480), (236, 234, 230))
    canvas.paste(photo("coffee").resize((300, 200)), (170, 120))
    return encode(canvas, "JPEG", quality=92)


PRODUCT = _product()


@functools.cache
def big_photo() -> bytes:
    """A 2600 x 2600 photo with film grain, as a PNG of over 10 MB."""
    rng = np.random.default_rng(7)
    img = photo("astronaut").resize((2600, 2600), Image.Resampling.LANCZOS)
    grain = rng.normal(0, 5, (2600, 2600, 3))
    grained = (np.asarray(img, dtype=np.float64) + grain).clip(0, 255).astype(np.uint8)
    data = encode(Image.fromarray(grained), "PNG")
    assert len(data) >= 10 * 1024 * 1024
    return data


def assert_on_the_background(data: bytes, *, size: tuple[int, int]) -> np.ndarray:
    """An opaque result whose top corners are the coffee background, covered and centred."""
    img = Image.open(io.BytesIO(data)).convert("RGBA")
    assert img.size == size
    out = np.asarray(img, dtype=np.int32)
    assert (out[..., 3] == 255).all()
    bg = Image.open(io.BytesIO(BACKGROUND)).convert("RGB")
    factor = max(size[0] / bg.width, size[1] / bg.height)
    scaled = bg.resize((round(bg.width * factor), round(bg.height * factor)))
    left, top = (scaled.width - size[0]) // 2, (scaled.height - size[1]) // 2
    want = np.asarray(scaled.crop((left, top, left + size[0], top + size[1])), dtype=np.int32)
    assert np.abs(out[:30, :30, :3] - want[:30, :30]).mean() < 10
    assert np.abs(out[:30, -30:, :3] - want[:30, -30:]).mean() < 10
    return out


def assert_hard_edged(data: bytes) -> None:
    alpha = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[..., 3]
    assert set(np.unique(alpha)) == {0, 255}


def assert_shadowed(data: bytes) -> None:
    """Black pixels, partly transparent, where the subject is not: its shadow."""
    out = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"), dtype=np.int32)
    shade = (out[..., 3] > 30) & (out[..., 3] < 200) & (out[..., :3].max(axis=2) == 0)
    assert shade.sum() > 200


def test_remove_bg_api_sends_a_background_url_a_shadow_and_hard_edges(
    server, worker, account, api_key, tmp_path, loopback_files
):
    photo_path = tmp_path / "astronaut.jpg"
    photo_path.write_bytes(PHOTO)
    url = loopback_files.serve("/backgrounds/coffee.jpg", BACKGROUND)
    client = remove_bg_api.RemoveBg(api_key)
    on_background = client.remove_bg_file(
        str(photo_path), data={"size": "full", "format": "png", "bg_image_url": url}
    )
    assert_on_the_background(on_background, size=(512, 512))
    shadowed = client.remove_bg_bytes(
        PRODUCT, data={"size": "full", "shadow_type": "drop", "shadow_opacity": "80"}
    )
    assert_shadowed(shadowed)
    hard = client.remove_bg_bytes(PHOTO, data={"size": "full", "semitransparency": "false"})
    assert_hard_edged(hard)
    jobs = removebg_jobs()
    assert [job.status for job in jobs] == [RemovalJob.Status.COMPLETED] * 3
    assert jobs[0].background_file.name and "bg_image" in jobs[0].options


def test_remove_bg_api_sends_a_10_mb_photo_in_base64(server, worker, api_key):
    client = remove_bg_api.RemoveBg(api_key)
    result = client.remove_bg_base64(base64.b64encode(big_photo()).decode())
    assert_cutout_of_the_photo(result, size=(500, 500))


def test_rembgpy_sends_a_background_url_a_shadow_and_hard_edges(
    rembgpy_bg, worker, account, api_key, tmp_path, loopback_files
):
    """rembgpy's file method is shadowed by its URL method and neither sends
    its ``files``: a background by path never leaves it, so only the URL."""
    client = rembgpy_bg.RemBg(api_key, str(tmp_path / "rembgpy.log"))
    url = loopback_files.serve("/backgrounds/coffee.jpg", BACKGROUND)
    outputs = {name: tmp_path / f"{name}.png" for name in ("url", "shadow", "hard")}
    # rembgpy sends size, format and the rest with every call (size regular: 0.25 MP).
    calls = {
        "url": (PHOTO, {"bg": url, "bg_type": "url", "format": "png"}),
        "shadow": (PRODUCT, {"shadow": True}),
        "hard": (PHOTO, {"semitransparency": False}),
    }
    for name, (image, kwargs) in calls.items():
        b64 = base64.b64encode(image).decode()
        assert client.remove_b64(b64, nfn=str(outputs[name]), **kwargs) == "[*] Process finished."
    assert_on_the_background(outputs["url"].read_bytes(), size=(500, 500))
    assert_shadowed(outputs["shadow"].read_bytes())
    assert_hard_edged(outputs["hard"].read_bytes())
    jobs = removebg_jobs()
    assert [job.status for job in jobs] == [RemovalJob.Status.COMPLETED] * 3
    assert jobs[1].options.get("add_shadow") is True


def test_rembgpy_sends_a_10_mb_photo_in_base64(rembgpy_bg, worker, api_key, tmp_path):
    client = rembgpy_bg.RemBg(api_key, str(tmp_path / "rembgpy.log"))
    out = tmp_path / "big.png"
    b64 = base64.b64encode(big_photo()).decode()
    assert client.remove_b64(b64, nfn=str(out)) == "[*] Process finished."
    assert_cutout_of_the_photo(out.read_bytes(), size=(500, 500))


# --- npm's remove.bg package -----------------------------------------------------

NPM_PACKAGES = ROOT / "var" / "npm-clients"
NPM_REMOVEBG = "remove.bg@1.3.0"


@pytest.fixture(scope="session")
def npm_removebg() -> Path:
    """npm's remove.bg, unmodified, installed once into var/npm-clients (ignored by git)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for npm's remove.bg client (Debian: nodejs, npm)")
    package = NPM_PACKAGES / "node_modules" / "remove.bg" / "package.json"
    if not package.exists() or json.loads(package.read_text())["version"] != "1.3.0":
        NPM_PACKAGES.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(NPM_PACKAGES),
                NPM_REMOVEBG,
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return NPM_PACKAGES / "node_modules"


def run_npm_client(node_modules: Path, *, base: str, api_key: str, calls: list) -> list:
    completed = subprocess.run(
        ["node", str(Path(__file__).with_name("npm_removebg.js"))],
        env={
            "PATH": os.environ["PATH"],
            "NODE_PATH": str(node_modules),
            "REMOVEBG_BASE": base,
            "API_KEY": api_key,
            "CALLS": json.dumps(calls),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_npm_remove_bg_sends_a_file_a_background_url_and_a_shadow(
    server, worker, account, api_key, tmp_path, npm_removebg, loopback_files
):
    photo_path = tmp_path / "astronaut.jpg"
    photo_path.write_bytes(PHOTO)
    url = loopback_files.serve("/backgrounds/coffee.jpg", BACKGROUND)
    outputs = [tmp_path / f"npm-{index}.png" for index in range(3)]
    calls = [
        {"fn": "removeBackgroundFromImageFile", "options": {"path": str(photo_path)}},
        {
            "fn": "removeBackgroundFromImageFile",
            "options": {"path": str(photo_path), "size": "full", "bg_image_url": url},
        },
        {
            "fn": "removeBackgroundFromImageUrl",
            "options": {"url": loopback_files.serve("/a.jpg", PRODUCT), "add_shadow": True},
        },
    ]
    for call, output in zip(calls, outputs, strict=True):
        call["options"]["outputFile"] = str(output)
    results = run_npm_client(npm_removebg, base=server.url, api_key=api_key, calls=calls)
    assert [r["ok"] for r in results] == [True] * 3, results
    # It reads our headers into its result.
    assert results[0]["creditsCharged"] == str(PRICE)
    assert results[0]["detectedType"] == "other"
    assert (results[0]["resultWidth"], results[0]["resultHeight"]) == ("500", "500")
    assert_cutout_of_the_photo(outputs[0].read_bytes(), size=(500, 500))
    assert_on_the_background(outputs[1].read_bytes(), size=(512, 512))
    assert_shadowed(outputs[2].read_bytes())
    account.refresh_from_db()
    assert account.credit_balance == 1000 - 3 * PRICE == ledger_sum(account=account)


def test_npm_remove_bg_reads_our_errors_in_remove_bgs_shape(server, account, api_key, npm_removebg):
    calls = [
        {"fn": "removeBackgroundFromImageBase64", "options": {"base64img": "bm90IGFuIGltYWdl"}},
        {
            "fn": "removeBackgroundFromImageBase64",
            "options": {"base64img": base64.b64encode(PHOTO).decode(), "bg_color": "#zzz"},
        },
    ]
    results = run_npm_client(npm_removebg, base=server.url, api_key=api_key, calls=calls)
    codes = [r["errors"][0]["code"] for r in results]
    assert codes == ["failed_to_read_image", "invalid_bg_color"], results
    account.refresh_from_db()
    assert account.credit_balance == 1000 == ledger_sum(account=account)


def test_npm_remove_bg_sends_a_10_mb_photo_in_base64(
    server, worker, api_key, npm_removebg, tmp_path
):
    encoded = tmp_path / "big.b64"
    encoded.write_text(base64.b64encode(big_photo()).decode())
    calls = [{"fn": "removeBackgroundFromImageBase64", "options": {}, "base64File": str(encoded)}]
    (result,) = run_npm_client(npm_removebg, base=server.url, api_key=api_key, calls=calls)
    assert result["ok"], result
    assert (result["resultWidth"], result["resultHeight"]) == ("500", "500")
