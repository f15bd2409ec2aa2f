"""The seed API's output options over HTTP, checked on the pixels.

Every test posts to ``POST /paid/image/remove/background`` with the real
u2netp on a real photo, lets ``inline_worker`` run the job (only the queue
hop is skipped), then reads ``GET /api/get/<id>`` and downloads the file
from ``/output/<file>`` as a customer would. Refusals are checked to come
before the charge; ``image_url`` refusals also before any connection.
"""

import base64
import io
import ipaddress
import socket
import threading
import zipfile
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient
from scipy import ndimage

from billing.selectors import ledger_sum
from imaging import formats, parsers, pipeline, subject
from imaging.options import SEED, SEED_SIZES, options_for
from removal import registry
from removal.models import RemovalJob
from tests.images import encode, photo, photo_bytes

pytestmark = [pytest.mark.model]

URL = "/paid/image/remove/background"
MODEL = "u2netp"
PHOTO = photo_bytes("astronaut")  # 512x512, a person against a plain background
WIDE = encode(photo("coffee").resize((1600, 1066)), "JPEG")  # 1.7 MP, 3:2
CREDITS = 1000


@pytest.fixture
def client(api_key, inline_worker):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    return client


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
    """A JSON error with this status and code; nothing charged, no job created."""
    assert response.status_code == status, (response.status_code, response.content[:400])
    body = response.json()
    assert body["success"] is False
    assert body["code"] == code, body
    if names:
        assert names in body["error"], body
    account.refresh_from_db()
    assert account.credit_balance == CREDITS == ledger_sum(account=account)
    assert not RemovalJob.objects.exists()
    return body


# --- Leaving the options out ------------------------------------------------------


def test_no_options_gives_the_pipelines_default_png_byte_for_byte(client):
    got = run(client)
    assert got.data == default_png()
    assert got.download["Content-Type"] == "image/png"
    result = got.result
    assert result["format"] == "png"
    assert result["options"] == {}
    assert (result["width"], result["height"]) == (512, 512)
    left, top, right, bottom = subject_box(default_alpha())
    assert result["foreground"] == {
        "top": top,
        "left": left,
        "width": right - left,
        "height": bottom - top,
    }


def test_options_at_their_defaults_give_the_same_bytes(client):
    defaults = {
        "format": "png",
        "channels": "rgba",
        "crop": "false",
        "size": "full",
        "alpha_matting": "false",
        "post_process_mask": "false",
    }
    got = run(client, defaults)
    assert got.data == default_png()
    assert got.result["options"] == {}


# --- Formats ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type", "extension"),
    [
        ("png", "image/png", "png"),
        ("jpg", "image/jpeg", "jpg"),
        ("jpeg", "image/jpeg", "jpg"),
        ("webp", "image/webp", "webp"),
        ("zip", "application/zip", "zip"),
    ],
)
def test_each_format_is_stored_named_and_served_as_itself(client, fmt, content_type, extension):
    got = run(client, {"format": fmt})
    task_id = got.status["result"]["image_filename"].split("_")[0]
    filename = f"{task_id}_output.{extension}"
    assert got.result["image_filename"] == filename
    assert got.result["image_url"] == f"http://testserver/output/{filename}"
    assert got.result["format"] == extension
    assert got.download["Content-Type"] == content_type
    assert f'filename="{filename}"' in got.download["Content-Disposition"]
    assert RemovalJob.objects.get().output_file.name.endswith(f".{extension}")


def test_webp_decodes_with_the_same_alpha(client):
    image = run(client, {"format": "webp"}).image
    assert (image.format, image.mode, image.size) == ("WEBP", "RGBA", (512, 512))
    # Lossless: the alpha is the default PNG's, exactly.
    assert np.array_equal(np.asarray(image.getchannel("A")), default_alpha())


def test_jpg_has_no_alpha_and_is_flattened_on_white(client):
    image = run(client, {"format": "jpg"}).image
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (512, 512))
    pixels = np.asarray(image).astype(int)
    background = ndimage.binary_erosion(default_alpha() == 0, iterations=4)
    assert background.mean() > 0.1
    assert np.abs(pixels[background] - 255).max() <= 8  # white, within JPEG's noise


def test_zip_holds_the_colours_and_the_alpha(client):
    got = run(client, {"format": "zip"})
    with zipfile.ZipFile(io.BytesIO(got.data)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        alpha = Image.open(io.BytesIO(archive.read("alpha.png")))
    assert alpha.mode == "L"
    assert np.array_equal(np.asarray(alpha), default_alpha())


# --- Background colour, mask only ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rgba"),
    [
        ("#1e90ff", (30, 144, 255, 255)),
        ("1E90FF", (30, 144, 255, 255)),
        ("#f00", (255, 0, 0, 255)),
        ("dodgerblue", (30, 144, 255, 255)),
        ("#1e90ff80", (30, 144, 255, 128)),
    ],
)
def test_bg_color_is_exact_where_the_default_alpha_is_zero(client, value, rgba):
    got = run(client, {"bg_color": value})
    image = got.image
    assert image.mode == "RGBA"
    pixels = np.asarray(image)
    background = default_alpha() == 0
    assert background.mean() > 0.1
    assert (pixels[background] == rgba).all()
    # An opaque subject stays itself.
    original = np.asarray(Image.open(io.BytesIO(default_png())))
    opaque = original[..., 3] == 255
    assert (pixels[opaque] == original[opaque]).all()
    assert got.result["options"] == {"bg_color": "#" + "".join(f"{c:02x}" for c in rgba)}


def test_a_jpg_on_a_colour_has_that_colour_in_its_corner(client):
    image = run(client, {"format": "jpg", "bg_color": "#1e90ff"}).image
    assert image.mode == "RGB"
    assert default_alpha()[:16, -16:].max() == 0  # the top right corner is background
    corner = np.asarray(image)[:16, -16:].astype(int)
    assert np.abs(corner - (30, 144, 255)).max() <= 4


def test_mask_only_is_the_alpha_of_the_default_output(client):
    got = run(client, {"channels": "alpha"})
    image = got.image
    assert (image.format, image.mode, image.size) == ("PNG", "L", (512, 512))
    assert np.array_equal(np.asarray(image), default_alpha())
    assert got.result["options"] == {"channels": "alpha"}


# --- Crop ---------------------------------------------------------------------------


@pytest.mark.parametrize("margin", ["0", "20", "20px", "10%"])
def test_crop_is_the_alphas_bounding_box_plus_the_margin(client, margin):
    alpha = default_alpha()
    left, top, right, bottom = subject_box(alpha)
    width, height = right - left, bottom - top
    if margin.endswith("%"):
        mx, my = round(10 * width / 100), round(10 * height / 100)
    else:
        mx = my = int(margin.removesuffix("px"))
    got = run(client, {"crop": "true", "crop_margin": margin})
    image = got.image
    box = (left - mx, top - my, right + mx, bottom + my)
    assert image.size == (box[2] - box[0], box[3] - box[1])
    assert (got.result["width"], got.result["height"]) == image.size
    assert got.result["foreground"] == {"top": my, "left": mx, "width": width, "height": height}
    # The same pixels, cut out (a margin past the photo's edge is transparent).
    expected = Image.fromarray(alpha).crop(box)
    assert np.array_equal(np.asarray(image.getchannel("A")), np.asarray(expected))


def test_crop_margin_is_capped_at_half_the_subject(client):
    left, top, right, bottom = subject_box(default_alpha())
    width, height = right - left, bottom - top
    image = run(client, {"crop": "true", "crop_margin": "90%"}).image
    assert image.size == (width + 2 * round(width / 2), height + 2 * round(height / 2))


# --- Size -----------------------------------------------------------------------------


def test_preview_fits_within_a_quarter_megapixel_and_keeps_the_aspect(client):
    got = run(client, {"size": "preview"}, image=WIDE)
    image = got.image
    assert image.width * image.height <= 250_000
    assert image.width * image.height > 240_000  # as large as fits
    assert abs(image.width / image.height - 1600 / 1066) < 0.01
    assert (got.result["width"], got.result["height"]) == image.size


def test_preview_keeps_an_image_already_small_enough(client):
    small = encode(photo("chelsea"), "JPEG")  # 451x300
    assert run(client, {"size": "preview"}, image=small).image.size == (451, 300)


@pytest.mark.parametrize(
    ("data", "size"),
    [
        ({"max_width": "400"}, (400, 266)),
        ({"max_height": "100"}, (150, 100)),
        ({"max_width": "300", "max_height": "100"}, (150, 100)),
        ({"max_width": "120", "max_height": "100"}, (120, 80)),
        ({"max_width": "5000"}, (1600, 1066)),  # never upscaled
        ({"max_width": "5000", "max_height": "5000"}, (1600, 1066)),
    ],
)
def test_max_width_and_height_fit_and_never_upscale(client, data, size):
    got = run(client, data, image=WIDE)
    image = got.image
    assert image.width <= int(data.get("max_width", 10**6))
    assert image.height <= int(data.get("max_height", 10**6))
    # As large as fits (a pixel lost to rounding at most), aspect kept.
    assert abs(image.width - size[0]) <= 1 and abs(image.height - size[1]) <= 1
    assert (got.result["width"], got.result["height"]) == image.size


# --- Alpha matting --------------------------------------------------------------------


def test_alpha_matting_changes_the_mask_only_near_its_edges(client):
    plain = default_alpha()
    erode = 10
    got = run(
        client,
        {
            "alpha_matting": "true",
            "alpha_matting_foreground_threshold": "240",
            "alpha_matting_background_threshold": "10",
            "alpha_matting_erode_size": str(erode),
        },
    )
    matted = np.asarray(got.image.getchannel("A")).astype(int)
    # rembg's trimap: sure foreground (alpha > 240) and sure background
    # (alpha < 10), each eroded by erode_size (here by a little more); the
    # rest, the band along the subject's edges, is what matting solves.
    square = np.ones((erode + 3, erode + 3), dtype=bool)
    sure_fg = ndimage.binary_erosion(plain > 240, structure=square)
    sure_bg = ndimage.binary_erosion(plain < 10, structure=square, border_value=1)
    near_edges = ~(sure_fg | sure_bg)
    assert near_edges.mean() < 0.25  # a narrow band, so the checks below bite
    solved = np.abs(matted - plain) > 15  # beyond the thresholds' snapping
    assert solved.sum() > 1000, "matting changed nothing"
    assert not (solved & ~near_edges).any(), "changed far from any edge"
    # Away from the edges the sure regions are snapped to opaque / transparent.
    assert (matted[sure_fg] == 255).all() and (matted[sure_bg] == 0).all()
    assert got.result["options"] == {"alpha_matting": True}


def test_post_process_mask_is_applied(client):
    got = run(client, {"post_process_mask": "true"})
    assert got.result["options"] == {"post_process_mask": True}
    assert not np.array_equal(np.asarray(got.image.getchannel("A")), default_alpha())


# --- Refusals before the charge -----------------------------------------------------

BAD_VALUES = [
    ("format", "gif", "invalid_format"),
    ("bg_color", "not-a-colour", "invalid_bg_color"),
    ("bg_color", "#12345", "invalid_bg_color"),
    ("channels", "rgb", "invalid_channels"),
    ("crop", "maybe", "invalid_crop"),
    ("crop_margin", "ten", "invalid_crop_margin"),
    ("crop_margin", "-5px", "invalid_crop_margin"),
    ("crop_margin", "1 2 3", "invalid_crop_margin"),
    ("size", "huge", "invalid_size"),
    ("size", "hd", "invalid_size"),
    ("max_width", "0", "invalid_max_width"),
    ("max_width", "wide", "invalid_max_width"),
    ("max_width", "12.5", "invalid_max_width"),
    ("max_height", "70000", "invalid_max_height"),
    ("alpha_matting", "perhaps", "invalid_alpha_matting"),
    ("alpha_matting_foreground_threshold", "256", "invalid_alpha_matting_foreground_threshold"),
    ("alpha_matting_background_threshold", "-1", "invalid_alpha_matting_background_threshold"),
    ("alpha_matting_erode_size", "41", "invalid_alpha_matting_erode_size"),
    ("post_process_mask", "2", "invalid_post_process_mask"),
    ("webhook_url", "ftp://example.com/hook", "invalid_webhook_url"),
    ("model", "nope", "unknown_model"),
]


@pytest.mark.parametrize(("field", "value", "code"), BAD_VALUES)
def test_a_bad_value_is_a_400_naming_the_field_before_any_charge(
    client, account, field, value, code
):
    body = assert_refused(post(client, {field: value}), 400, code, account)
    assert field in body["error"], body


def test_a_bad_option_is_refused_before_the_image_url_is_fetched(client, account, redirector):
    url = redirector.url("/image.jpg")
    response = post(client, {"image_url": url, "format": "gif"}, image=None)
    assert_refused(response, 400, "invalid_format", account)
    assert redirector.requests == []


def test_an_option_sent_twice_is_refused(client, account):
    response = client.post(
        URL,
        {"file": SimpleUploadedFile("a.jpg", PHOTO), "format": ["png", "jpg"]},
        format="multipart",
    )
    assert_refused(response, 400, "invalid_field", account, names="format")


def test_options_do_not_change_the_price(client, account):
    run(client, {"format": "webp", "alpha_matting": "true", "crop": "true", "size": "preview"})
    account.refresh_from_db()
    assert account.credit_balance == CREDITS - settings.REMOVAL_PRICE_CREDITS


# --- Idempotency ---------------------------------------------------------------------


def test_the_idempotency_fingerprint_covers_the_options(client, account):
    first = post(client, {"format": "webp"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 202
    again = post(client, {"format": "webp"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.json()["task_id"] == first.json()["task_id"]
    other = post(client, {"format": "jpg"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_conflict"
    defaults = post(client, HTTP_IDEMPOTENCY_KEY="k-1")
    assert defaults.status_code == 409
    account.refresh_from_db()
    assert account.credit_balance == CREDITS - settings.REMOVAL_PRICE_CREDITS
    assert RemovalJob.objects.count() == 1


# --- Other sources: image_file_b64 ---------------------------------------------------


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(PHOTO).decode(),
        "data:image/jpeg;base64," + base64.b64encode(PHOTO).decode(),
        base64.encodebytes(PHOTO).decode(),  # wrapped at 76 characters
        base64.urlsafe_b64encode(PHOTO).decode().rstrip("="),
    ],
    ids=["plain", "data-url", "wrapped", "url-safe-unpadded"],
)
def test_image_file_b64_is_accepted(client, encoded):
    got = run(client, {"image_file_b64": encoded}, image=None)
    assert got.data == default_png()


@pytest.mark.parametrize(
    "encoded",
    ["not base64 at all!", "data:image/png,abc", "data:image/png;base64,@@@@", "QUJD*"],
)
def test_malformed_base64_is_refused(client, account, encoded):
    assert_refused(
        post(client, {"image_file_b64": encoded}, image=None),
        400,
        "invalid_image_file_b64",
        account,
        names="image_file_b64",
    )


def test_base64_of_something_not_an_image_is_refused(client, account):
    encoded = base64.b64encode(b"hello, world").decode()
    assert_refused(
        post(client, {"image_file_b64": encoded}, image=None), 415, "unsupported_format", account
    )


def test_two_sources_are_refused(client, account):
    both = post(client, {"image_file_b64": base64.b64encode(PHOTO).decode()})
    assert_refused(both, 400, "multiple_sources", account)


# --- Other sources: image_url and its SSRF battery ------------------------------------


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
def redirector(settings):
    """A loopback server the fetcher may reach: it serves PHOTO, redirects
    where asked (/to?<url>) and sends an endless body (/endless)."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    server = Redirector()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def connections(monkeypatch):
    """Every (host, port) a socket connects to during the test."""
    seen: list[tuple] = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        seen.append(tuple(address[:2]))
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def connected_to_internal(connections, *, allowed_port: int | None = None) -> list[tuple]:
    """Connections to non-public addresses, other than our loopback server's
    (a PostgreSQL test database on 127.0.0.1:5432 is not an outbound request)."""
    internal = []
    for host, port in connections:
        if port in (allowed_port, 5432, 6379):
            continue
        try:
            if not ipaddress.ip_address(host).is_global:
                internal.append((host, port))
        except ValueError:
            internal.append((host, port))
    return internal


def test_image_url_is_fetched_from_an_allowed_loopback_server(client, loopback_files):
    url = loopback_files.serve("/people/astronaut.jpg", PHOTO)
    got = run(client, {"image_url": url, "format": "webp", "max_width": "256"}, image=None)
    assert got.image.size == (256, 256)
    assert got.result["format"] == "webp"
    assert RemovalJob.objects.get().original_filename == "astronaut.jpg"


SSRF_URLS = [
    "http://127.0.0.1/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/",
    "http://2130706433/",  # 127.0.0.1 in decimal
    "http://0177.0.0.1/",  # 127.0.0.1 in octal
    "http://localhost/",
    "http://loopback.example/",  # resolves to 127.0.0.1 (fake DNS below)
    "http://mixed.example/",  # one public address and one internal one
    "file:///etc/passwd",
    "gopher://127.0.0.1/",
    "ftp://10.0.0.1/image.jpg",
]


@pytest.fixture
def fake_dns(monkeypatch):
    """Names with the addresses we choose; others resolve as usual."""
    real = socket.getaddrinfo
    answers = {"loopback.example": ["127.0.0.1"], "mixed.example": ["93.184.216.34", "10.0.0.1"]}

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 80))
            for address in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("url", SSRF_URLS)
def test_internal_addresses_are_refused_before_any_charge_or_connection(
    client, account, settings, fake_dns, connections, url
):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    response = post(client, {"image_url": url}, image=None)
    assert_refused(response, 400, "invalid_image_url", account)
    assert connected_to_internal(connections) == []


def test_a_redirect_to_an_internal_address_is_refused(client, account, redirector, connections):
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/a.jpg"):
        url = redirector.url(f"/to?{target}")
        response = post(client, {"image_url": url}, image=None)
        assert_refused(response, 400, "invalid_image_url", account)
    port = redirector.server_address[1]
    assert connected_to_internal(connections, allowed_port=port) == []
    assert len(redirector.requests) == 2  # the allowed hop was made, the next was not


def test_an_endless_body_is_cut_at_the_upload_limit(client, account, redirector, settings):
    settings.MAX_UPLOAD_BYTES = 1024 * 1024
    response = post(client, {"image_url": redirector.url("/endless")}, image=None)
    assert_refused(response, 413, "file_too_large", account, names="image_url")


def test_a_server_that_never_answers_is_given_up_on(client, account, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.OUTBOUND_TIMEOUT_SECONDS = 1
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel accepts; nobody ever answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/photo.jpg"
        response = post(client, {"image_url": url}, image=None)
    finally:
        listener.close()
    body = assert_refused(response, 400, "failed_image_download", account)
    assert "1 second" in body["error"]


def test_a_remote_error_is_reported(client, account, loopback_files):
    url = loopback_files.url + "/missing.jpg"
    body = assert_refused(
        post(client, {"image_url": url}, image=None), 400, "failed_image_download", account
    )
    assert "404" in body["error"]


# --- The schema -------------------------------------------------------------------------


def test_the_schema_documents_every_seed_option_with_its_allowed_values(anon_client):
    schema = anon_client.get("/api/schema/?format=json").json()
    body = schema["paths"][URL]["post"]["requestBody"]["content"]["multipart/form-data"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    components = schema["components"]["schemas"]
    properties = components[ref]["properties"]
    sources = {"file", "image_url", "image_file_b64"}
    options = {option.wire_name for option in options_for(SEED)}
    assert set(properties) == options | sources | {"model", "webhook_url"}

    def enum(name):
        prop = properties[name]
        if "$ref" in prop:
            prop = components[prop["$ref"].rsplit("/", 1)[-1]]
        elif "allOf" in prop:
            prop = components[prop["allOf"][0]["$ref"].rsplit("/", 1)[-1]]
        return prop["enum"]

    assert enum("format") == [*formats.FORMATS, "auto"]
    assert enum("channels") == list(parsers.CHANNELS)
    assert enum("size") == list(SEED_SIZES)
    for name in ("crop", "alpha_matting", "post_process_mask"):
        assert properties[name]["type"] == "boolean", name
    for name, low, high in [
        ("max_width", 1, parsers.MAX_DIMENSION),
        ("max_height", 1, parsers.MAX_DIMENSION),
        ("alpha_matting_foreground_threshold", 0, 255),
        ("alpha_matting_background_threshold", 0, 255),
        ("alpha_matting_erode_size", 0, parsers.MAX_ERODE_SIZE),
    ]:
        assert (properties[name]["minimum"], properties[name]["maximum"]) == (low, high), name
    for name, prop in properties.items():
        assert prop.get("description"), f"{name} has no description"
    assert "#RRGGBB" in properties["bg_color"]["description"]
    assert "10%" in properties["crop_margin"]["description"]
    result = components["Result"]["properties"]
    assert {"format", "width", "height", "foreground", "options"} <= set(result)


# --- Edges: decontaminate and refine (issue 20) -----------------------------------------


def rgba_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def test_decontaminate_false_gives_the_png_from_before_edge_cleaning(client):
    from imaging.options import OutputOptions

    session = registry.get_session(MODEL)
    expected = pipeline.remove_background(
        PHOTO,
        session,
        max_pixels=settings.MAX_IMAGE_PIXELS,
        options=OutputOptions(decontaminate=False),
    ).data
    got = run(client, {"decontaminate": "false"})
    assert got.data == expected
    assert got.result["options"] == {"decontaminate": False}
    # The same mask; the colours differ only in its soft band.
    cleaned, plain = rgba_of(default_png()), rgba_of(got.data)
    assert np.array_equal(plain[..., 3], cleaned[..., 3])
    alpha = cleaned[..., 3]
    changed = (plain != cleaned).any(axis=-1)
    assert changed.any()
    assert not changed[(alpha == 0) | (alpha > 250)].any()


def test_decontaminate_true_is_the_default(client):
    got = run(client, {"decontaminate": "true"})
    assert got.data == default_png()
    assert got.result["options"] == {}


def test_refine_edges_moves_only_the_soft_band_of_the_mask(client):
    got = run(client, {"refine": "edges"})
    assert got.result["options"] == {"refine": "edges"}
    before, after = default_alpha(), rgba_of(got.data)[..., 3]
    sure = (before == 0) | (before == 255)
    assert np.array_equal(after[sure], before[sure])
    assert (after != before).sum() > 1000


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"refine": "sharp"}, "invalid_refine"),
        ({"decontaminate": "maybe"}, "invalid_decontaminate"),
    ],
)
def test_bad_edge_options_are_refused_before_the_charge(client, account, data, code):
    (name,) = data
    assert_refused(post(client, data), 400, code, account, names=name)
