"""The remove.bg dialect over HTTP: every parameter, header, body type and error.

Jobs run through the real services and the real u2netp model
(``inline_worker``: the queue hop is skipped, nothing else).
"""

import base64
import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from accounts.services import create_api_key
from billing.selectors import ledger_sum
from billing.services import open_account
from removal.models import RemovalJob
from tests.images import encode, photo, photo_bytes
from tests.removal.helpers import assert_nothing_charged, assert_refunded

pytestmark = [pytest.mark.model]

URL = "/v1.0/removebg"
PHOTO = photo_bytes("astronaut")  # 512x512


@pytest.fixture
def client(api_client, inline_worker):
    """The API client, with jobs run at once in this process."""
    return api_client


def post(client, data=None, *, image=PHOTO, fmt="multipart", **extra):
    data = dict(data or {})
    data.setdefault("model", "u2netp")
    if image is not None and fmt == "multipart":
        data["image_file"] = SimpleUploadedFile("photo.jpg", image)
    return client.post(URL, data, format=fmt, **extra)


def image_of(response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


def assert_removebg_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:400])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"errors"}
    (error,) = body["errors"]
    assert error["code"] == code, body
    assert error["title"] and error["detail"]
    return error


def test_it_answers_a_multipart_upload_with_the_png_and_remove_bgs_headers(client, account):
    response = post(client)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "image/png"
    result = image_of(response)
    assert result.mode == "RGBA" and result.size == (500, 500)  # preview: 0.25 MP
    assert response["X-Width"] == "500" and response["X-Height"] == "500"
    assert int(response["X-Credits-Charged"]) == 25
    assert response["X-Type"] == "other"
    assert response["X-Model"] == "u2netp"
    left, top = int(response["X-Foreground-Left"]), int(response["X-Foreground-Top"])
    width, height = int(response["X-Foreground-Width"]), int(response["X-Foreground-Height"])
    alpha_box = result.getchannel("A").point(lambda a: 255 if a >= 8 else 0).getbbox()
    # Measured on the mask before the preview resize, then scaled: within a pixel.
    reported = (left, top, left + width, top + height)
    assert max(abs(a - b) for a, b in zip(reported, alpha_box, strict=True)) <= 1
    assert int(response["X-RateLimit-Limit"]) == 60
    assert int(response["X-RateLimit-Remaining"]) == 59
    assert int(response["X-RateLimit-Reset"]) > 0
    account.refresh_from_db()
    assert account.credit_balance == 1000 - 25 == ledger_sum(account=account)
    # A job like any other: its id in a header, its status on the seed API.
    job = RemovalJob.objects.get(pk=response["X-Task-Id"])
    assert job.origin == RemovalJob.Origin.REMOVEBG
    status = client.get(f"/api/get/{job.id}").json()
    assert status["status"] == "completed"


def test_it_takes_base64_in_a_json_body_and_answers_json_when_asked(client):
    b64 = base64.b64encode(PHOTO).decode()
    response = post(
        client,
        {"image_file_b64": b64, "size": "full", "crop": False},
        image=None,
        fmt="json",
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200, response.content[:300]
    data = response.json()["data"]
    result = Image.open(io.BytesIO(base64.b64decode(data["result_b64"])))
    assert result.size == (512, 512)
    assert {"foreground_top", "foreground_left", "foreground_width", "foreground_height"} <= set(
        data
    )


def test_it_takes_a_url_encoded_form(client):
    body = {"image_file_b64": base64.b64encode(PHOTO).decode(), "size": "regular"}
    response = client.post(URL, body, format=None)  # DRF's default: multipart
    assert response.status_code == 200
    from urllib.parse import urlencode

    response = client.generic(
        "POST",
        URL,
        urlencode({**body, "model": "u2netp"}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "image/png"


def test_it_fetches_image_url_through_the_safe_fetcher(client, loopback_files):
    url = loopback_files.serve("/cat.jpg", photo_bytes("chelsea"))
    response = post(client, {"image_url": url}, image=None)
    assert response.status_code == 200, response.content[:300]
    job = RemovalJob.objects.get(pk=response["X-Task-Id"])
    assert job.original_filename == "cat.jpg"


@pytest.mark.parametrize(
    ("size", "most_pixels"),
    [("preview", 250_000), ("small", 250_000), ("regular", 250_000), ("medium", 1_500_000)],
)
def test_sizes_cap_the_pixels_and_keep_the_aspect(client, size, most_pixels):
    wide = encode(photo("coffee").resize((1600, 1066)), "JPEG")  # 1.7 MP
    result = image_of(post(client, {"size": size}, image=wide))
    assert result.width * result.height <= most_pixels
    assert abs(result.width / result.height - 1600 / 1066) < 0.01


@pytest.mark.parametrize("size", ["full", "auto", "4k", "50MP", "hd"])
def test_large_sizes_keep_an_image_that_fits(client, size):
    result = image_of(post(client, {"size": size}))
    assert result.size == (512, 512)


def test_format_auto_is_jpg_on_an_opaque_background_and_png_otherwise(client):
    opaque = post(client, {"bg_color": "#00ff00"})
    assert opaque["Content-Type"] == "image/jpeg"
    assert image_of(opaque).mode == "RGB"
    translucent = post(client, {"bg_color": "00ff0080"})
    assert translucent["Content-Type"] == "image/png"


@pytest.mark.parametrize(
    ("fmt", "content_type", "mode"),
    [("png", "image/png", "RGBA"), ("jpg", "image/jpeg", "RGB"), ("webp", "image/webp", "RGBA")],
)
def test_each_format(client, fmt, content_type, mode):
    response = post(client, {"format": fmt})
    assert response["Content-Type"] == content_type
    assert image_of(response).mode == mode


def test_format_zip_holds_the_colour_jpg_and_the_alpha_png(client):
    response = post(client, {"format": "zip", "size": "full"})
    assert response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        color = Image.open(io.BytesIO(archive.read("color.jpg")))
        alpha = Image.open(io.BytesIO(archive.read("alpha.png")))
    assert color.size == alpha.size == (512, 512)
    assert alpha.mode == "L"


def test_edge_cleaning_and_refinement_are_taken_under_the_same_names(client):
    cleaned = image_of(post(client, {"size": "full"}))
    plain = image_of(post(client, {"size": "full", "decontaminate": "false"}))
    refined = image_of(post(client, {"size": "full", "refine": "edges"}))
    assert cleaned.size == plain.size == refined.size == (512, 512)
    assert cleaned.getchannel("A").tobytes() == plain.getchannel("A").tobytes()
    assert cleaned.tobytes() != plain.tobytes()
    assert refined.getchannel("A").tobytes() != cleaned.getchannel("A").tobytes()


def test_channels_alpha_is_the_mask_of_the_rgba_result(client):
    rgba = image_of(post(client, {"size": "full"}))
    mask = image_of(post(client, {"size": "full", "channels": "alpha"}))
    assert mask.mode == "L"
    assert mask.tobytes() == rgba.getchannel("A").tobytes()


def test_bg_color_names_and_hex_forms(client):
    alpha = image_of(post(client, {"size": "full"})).getchannel("A")
    background = next((x, y) for y in range(512) for x in range(512) if alpha.getpixel((x, y)) == 0)
    for value in ("red", "#f00", "ff0000", "#FF0000FF"):
        result = image_of(post(client, {"bg_color": value, "format": "png", "size": "full"}))
        assert result.convert("RGBA").getpixel(background) == (255, 0, 0, 255), value


def test_crop_with_margin_cuts_to_the_subject(client):
    full = image_of(post(client, {"size": "full"}))
    box = full.getchannel("A").point(lambda a: 255 if a >= 8 else 0).getbbox()
    cropped = image_of(post(client, {"size": "full", "crop": "true", "crop_margin": "10px"}))
    # The margin may reach past the photo's edges: remove.bg pads it, transparent.
    assert cropped.size == (box[2] - box[0] + 20, box[3] - box[1] + 20)


def test_roi_limits_where_the_subject_may_be(client):
    result = image_of(post(client, {"size": "full", "roi": "0% 0% 50% 100%"}))
    alpha = result.getchannel("A")
    assert alpha.crop((257, 0, 512, 512)).getextrema() == (0, 0)


def test_type_person_uses_the_best_installed_model_and_says_so(client):
    response = post(client, {"type": "person", "model": ""})
    assert response.status_code == 200
    assert response["X-Type"] == "person"
    assert response["X-Model"] in ("u2net_human_seg", "u2net")


def test_the_defaults_remove_bgs_clients_send_are_accepted(client):
    response = post(
        client,
        {
            "size": "regular",
            "type": "auto",
            "type_level": "none",
            "format": "auto",
            "roi": "0 0 100% 100%",
            "crop": "false",
            "scale": "original",
            "position": "original",
            "channels": "rgba",
            "add_shadow": "false",
            "semitransparency": "true",
        },
    )
    assert response.status_code == 200, response.content[:300]


def test_no_subject_to_crop_to_fails_refunded_in_remove_bgs_shape(client, account):
    canvas = Image.new("RGB", (600, 300), "white")
    canvas.paste(photo("chelsea").resize((250, 250)), (10, 25))
    # Nothing but white wall inside the region of interest.
    data = {"crop": "true", "roi": "450px 0px 600px 300px"}
    response = post(client, data, image=encode(canvas, "PNG"))
    error = assert_removebg_error(response, 400, "unknown_foreground")
    assert "refunded" in error["detail"]
    assert_refunded(account)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"size": "huge"}, "invalid_size"),
        ({"format": "gif"}, "invalid_format"),
        ({"channels": "rgb"}, "invalid_channels"),
        ({"bg_color": "not-a-colour"}, "invalid_bg_color"),
        ({"crop_margin": "ten"}, "invalid_crop_margin"),
        ({"type": "spaceship"}, "invalid_type"),
        ({"model": "nope"}, "unknown_model"),
        ({"add_shadow": "perhaps"}, "invalid_add_shadow"),
        ({"shadow_type": "long"}, "invalid_shadow_type"),
        ({"shadow_opacity": "101"}, "invalid_shadow_opacity"),
        ({"semitransparency": "half"}, "invalid_semitransparency"),
        ({"type_level": "3"}, "invalid_type_level"),
        ({"bg_color": "red", "bg_image_url": "http://example.com/bg.jpg"}, "invalid_bg_color"),
        ({"bg_image_file": "not a file part"}, "invalid_bg_image_file"),
    ],
)
def test_bad_parameters_are_400s_before_any_charge(client, account, data, code):
    assert_removebg_error(post(client, data), 400, code)
    assert_nothing_charged(account)


def test_no_image_and_several_images_are_refused(client, account):
    assert_removebg_error(post(client, image=None), 400, "missing_source")
    both = post(client, {"image_file_b64": base64.b64encode(PHOTO).decode()})
    assert_removebg_error(both, 400, "multiple_sources")
    assert_nothing_charged(account)


def test_unreadable_and_oversized_images_are_refused(client, account, settings):
    assert_removebg_error(post(client, image=b"not an image"), 400, "failed_to_read_image")
    settings.MAX_IMAGE_PIXELS = 100_000
    assert_removebg_error(post(client), 400, "resolution_too_high")
    settings.MAX_UPLOAD_BYTES = 1000
    assert_removebg_error(post(client), 400, "file_too_large")
    assert_nothing_charged(account)


def test_image_urls_are_refused_or_reported(client, account, loopback_files, settings):
    missing = loopback_files.url + "/missing.jpg"
    assert_removebg_error(
        post(client, {"image_url": missing}, image=None), 400, "failed_image_download"
    )
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    forbidden = loopback_files.serve("/a.jpg", PHOTO)
    assert_removebg_error(
        post(client, {"image_url": forbidden}, image=None), 400, "invalid_image_url"
    )
    metadata = "http://169.254.169.254/latest/meta-data/"
    assert_removebg_error(
        post(client, {"image_url": metadata}, image=None), 400, "invalid_image_url"
    )
    assert_nothing_charged(account)


def test_a_missing_or_wrong_key_is_a_403(inline_worker, account):
    anonymous = APIClient()
    assert_removebg_error(anonymous.post(URL, {}), 403, "auth_failed")
    anonymous.credentials(HTTP_X_API_KEY="wrong.key")
    assert_removebg_error(anonymous.post(URL, {}), 403, "auth_failed")


def test_not_enough_credits_is_a_402(inline_worker):
    poor = open_account(name="poor", credits=10)
    _, key = create_api_key(account=poor, name="k")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    assert_removebg_error(post(client), 402, "insufficient_credits")


def test_past_the_rate_limit_is_a_429_with_retry_after(client, account, settings):
    settings.REMOVAL_RATE_LIMIT = "1/minute"
    assert post(client).status_code == 200
    response = post(client)
    assert_removebg_error(response, 429, "rate_limit_exceeded")
    assert 0 < int(response["Retry-After"]) <= 60
    account.refresh_from_db()
    assert account.credit_balance == 1000 - 25


def test_unknown_paths_answer_in_remove_bgs_shape(client):
    assert_removebg_error(client.get("/v1.0/nothing"), 404, "not_found")


def test_the_account_endpoint_reports_the_ledger(client, account):
    body = client.get("/v1.0/account").json()
    attributes = body["data"]["attributes"]
    assert attributes["credits"] == {
        "total": 1000,
        "subscription": 0,
        "payg": 1000,
        "enterprise": 0,
    }
    assert attributes["api"] == {"free_calls": 0, "sizes": "all"}
    assert json.dumps(body)  # plain JSON


def test_a_job_no_worker_starts_in_time_is_refunded_and_answered_429(
    transactional_db, account, api_key, settings, monkeypatch
):
    from removal import services

    monkeypatch.setattr(
        services, "enqueue_job", lambda *, job_id, request_id=None: None
    )  # no worker
    settings.REMOVEBG_QUEUE_WAIT_SECONDS = 1
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    response = post(client)
    error = assert_removebg_error(response, 429, "service_busy")
    assert "refunded" in error["detail"]
    assert int(response["Retry-After"]) > 0
    job = RemovalJob.objects.get(pk=response["X-Task-Id"])
    assert job.status == RemovalJob.Status.FAILED
    assert_refunded(account)
