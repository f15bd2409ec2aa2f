"""Real remove.bg client libraries from PyPI, unmodified, against our server.

Each is pointed at the live test server through its own base-URL setting
(a module variable: ``remove_bg_api.API_URL``, ``rembgpy.bg.base_url``),
exactly as a team moving off remove.bg would, and a real ``qcluster``
worker removes the background of a real photo with the real u2netp model.
(npm's ``remove.bg`` package has its endpoint in a ``const``: it cannot be
re-pointed without editing it, so it is not among them.)
"""

import base64
import importlib
import io
import logging

import numpy as np
import pytest
import remove_bg_api
import requests
from PIL import Image

from accounts.services import create_api_key
from billing.selectors import ledger_sum
from billing.services import open_account
from removal.models import RemovalJob
from tests.images import noisy_photo_png, photo_bytes

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
        (api_key, {"shadow": True}, 400, "unsupported_option"),
        (api_key, {"bg": "#nothex", "bg_type": "color"}, 400, "invalid_bg_color"),
        (api_key, {"bg": "http://x/y.jpg", "bg_type": "url"}, 400, "unsupported_option"),
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
