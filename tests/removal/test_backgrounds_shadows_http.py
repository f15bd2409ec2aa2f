"""Background images, shadows, hard edges and AVIF out, over HTTP on every door.

The real u2netp runs on real photos (``inline_worker``: only the queue hop
is skipped). Each option is checked on the pixels of what a customer
downloads; each refusal before the charge, with no job left behind.
"""

import base64
import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from billing.selectors import ledger_sum
from removal import services
from removal.models import RemovalJob
from tests.images import encode, photo, photo_bytes

pytestmark = [pytest.mark.model]

SEED_URL = "/paid/image/remove/background"
REMOVEBG_URL = "/v1.0/removebg"
PHOTO = photo_bytes("astronaut")  # 512 x 512
BACKGROUND = encode(photo("coffee"), "JPEG", quality=92)  # 600 x 400: wider than the photo


@pytest.fixture
def client(api_key, inline_worker):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    return client


def seed(client, data=None, *, image=PHOTO, background=None, **extra):
    data = {"model": "u2netp", **(data or {})}
    if image is not None:
        data["file"] = SimpleUploadedFile("photo.jpg", image)
    if background is not None:
        data["bg_image_file"] = SimpleUploadedFile("bg.jpg", background)
    return client.post(SEED_URL, data, format="multipart", **extra)


def removebg(client, data=None, *, image=PHOTO, background=None, **extra):
    data = {"model": "u2netp", **(data or {})}
    if image is not None:
        data["image_file"] = SimpleUploadedFile("photo.jpg", image)
    if background is not None:
        data["bg_image_file"] = SimpleUploadedFile("bg.jpg", background)
    return client.post(REMOVEBG_URL, data, format="multipart", **extra)


def finished(client, response) -> tuple[RemovalJob, Image.Image]:
    assert response.status_code == 202, response.content[:400]
    task_id = response.json()["task_id"]
    status = client.get(f"/api/get/{task_id}").json()
    assert status["status"] == "completed", status
    download = client.get(f"/output/{status['result']['image_filename']}")
    assert download.status_code == 200
    img = Image.open(io.BytesIO(b"".join(download.streaming_content)))
    img.load()
    return RemovalJob.objects.get(pk=task_id), img


def image_of(response) -> Image.Image:
    assert response.status_code == 200, response.content[:400]
    img = Image.open(io.BytesIO(response.content))
    img.load()
    return img


def covered(background: bytes, size) -> np.ndarray:
    """The background as it should show: scaled to cover ``size``, centred."""
    bg = Image.open(io.BytesIO(background)).convert("RGB")
    factor = max(size[0] / bg.width, size[1] / bg.height)
    scaled = bg.resize((round(bg.width * factor), round(bg.height * factor)))
    left, top = (scaled.width - size[0]) // 2, (scaled.height - size[1]) // 2
    return np.asarray(scaled.crop((left, top, left + size[0], top + size[1])), dtype=np.int32)


def assert_uncharged(account):
    account.refresh_from_db()
    assert account.credit_balance == 1000 == ledger_sum(account=account)
    assert not RemovalJob.objects.exists()


# --- Background images ----------------------------------------------------------


def test_a_background_file_covers_the_output_centred_under_the_cutout(client, account):
    job, img = finished(client, seed(client, {"format": "png"}, background=BACKGROUND))
    assert img.size == (512, 512) and img.mode == "RGBA"
    out = np.asarray(img, dtype=np.int32)
    assert (out[..., 3] == 255).all()
    want = covered(BACKGROUND, (512, 512))
    # The top corners are background (the astronaut is not there).
    assert np.abs(out[:40, :40, :3] - want[:40, :40]).mean() < 6
    assert np.abs(out[:40, -40:, :3] - want[:40, -40:]).mean() < 6
    # The face is the photo's.
    face = np.asarray(photo("astronaut"), dtype=np.int32)[100:160, 180:260]
    assert np.abs(out[100:160, 180:260, :3] - face).mean() < 12
    # The bytes went with the job, its digest with the options.
    assert job.background_file.name == f"backgrounds/{job.id}.jpeg"
    assert job.options["bg_image"] == __import__("hashlib").sha256(BACKGROUND).hexdigest()
    account.refresh_from_db()
    assert account.credit_balance == 975 == ledger_sum(account=account)


def test_a_background_url_is_fetched_safely_and_auto_makes_an_opaque_result_a_jpg(
    client, loopback_files
):
    url = loopback_files.serve("/backgrounds/coffee.jpg", BACKGROUND)
    response = removebg(client, {"bg_image_url": url, "size": "full"})
    img = image_of(response)
    assert response["Content-Type"] == "image/jpeg"  # format=auto, nothing transparent
    assert img.size == (512, 512)
    want = covered(BACKGROUND, (512, 512))
    assert np.abs(np.asarray(img, dtype=np.int32)[:40, :40] - want[:40, :40]).mean() < 8


def test_a_background_follows_crop_scale_position_size_and_avif(client):
    job, img = finished(
        client,
        seed(
            client,
            {"crop": "true", "crop_margin": "10%", "max_width": "200", "format": "avif"},
            background=BACKGROUND,
        ),
    )
    assert job.output_format == "avif" and img.format == "AVIF"
    assert img.width == 200 and (np.asarray(img.convert("RGBA"))[..., 3] > 250).all()
    response = removebg(
        client,
        {"scale": "50%", "position": "0% 100%", "size": "full", "format": "png"},
        background=BACKGROUND,
    )
    out = np.asarray(image_of(response), dtype=np.int32)
    assert out.shape[:2] == (512, 512) and (out[..., 3] == 255).all()
    # The subject, half size, in the bottom-left corner: the top right is all background.
    want = covered(BACKGROUND, (512, 512))
    assert np.abs(out[:200, 300:, :3] - want[:200, 300:]).mean() < 6
    assert int(response["X-Foreground-Left"]) == 0


def test_a_background_with_a_transparent_subject_kept_transparent_where_it_is(client):
    see_through = encode(Image.new("RGBA", (64, 64), (255, 0, 0, 90)), "PNG")
    response = removebg(client, {"size": "full"}, background=see_through)
    assert response["Content-Type"] == "image/png"  # auto: transparency remains
    alpha = np.asarray(image_of(response).getchannel("A"))
    assert alpha.min() >= 85 and alpha.max() == 255


@pytest.mark.parametrize(
    ("fields", "background", "status", "code"),
    [
        ({"bg_color": "white"}, BACKGROUND, 400, "invalid_bg_color"),
        ({}, encode(Image.new("RGB", (8, 8)), "GIF"), 415, "unsupported_bg_image_format"),
        ({}, BACKGROUND[: len(BACKGROUND) // 2], 400, "invalid_bg_image"),
        ({}, b"", 400, "invalid_bg_image"),
        ({"bg_image_url": "http://example.com/bg.jpg"}, BACKGROUND, 400, "multiple_backgrounds"),
        ({"bg_image_file": "text, not a file"}, None, 400, "invalid_bg_image_file"),
    ],
)
def test_a_bad_background_is_refused_before_the_charge(
    client, account, fields, background, status, code
):
    response = seed(client, fields, background=background)
    assert response.status_code == status, response.content[:300]
    assert response.json()["code"] == code
    assert_uncharged(account)


def test_background_limits_are_the_images_own(client, account, settings):
    settings.MAX_IMAGE_PIXELS = 300_000  # the photo (262,144) passes, the background not
    big = encode(photo("coffee").resize((800, 600)), "JPEG")
    response = seed(client, background=big)
    assert response.status_code == 413 and response.json()["code"] == "bg_image_too_large"
    settings.MAX_UPLOAD_BYTES = len(PHOTO) + 10
    response = seed(client, background=encode(photo("coffee"), "PNG"))
    assert response.status_code == 413 and response.json()["code"] == "file_too_large"
    assert_uncharged(account)


def test_background_urls_are_refused_or_reported_in_remove_bgs_shape(
    client, account, loopback_files, settings
):
    missing = removebg(client, {"bg_image_url": loopback_files.url + "/nope.jpg"})
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["code"] == "failed_bg_image_download"
    metadata = removebg(client, {"bg_image_url": "http://169.254.169.254/latest/meta-data/"})
    assert metadata.json()["errors"][0]["code"] == "invalid_bg_image_url"
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    closed = removebg(client, {"bg_image_url": loopback_files.serve("/bg.jpg", BACKGROUND)})
    assert closed.json()["errors"][0]["code"] == "invalid_bg_image_url"
    assert_uncharged(account)


def test_the_same_key_with_another_background_is_a_conflict(client, account):
    first = seed(client, background=BACKGROUND, HTTP_IDEMPOTENCY_KEY="bg-1")
    assert first.status_code == 202
    again = seed(client, background=BACKGROUND, HTTP_IDEMPOTENCY_KEY="bg-1")
    assert again.json()["task_id"] == first.json()["task_id"]
    other = seed(client, background=encode(photo("chelsea"), "JPEG"), HTTP_IDEMPOTENCY_KEY="bg-1")
    assert other.status_code == 409


def test_expiry_deletes_the_background_with_the_input(client):
    job, _ = finished(client, seed(client, background=BACKGROUND))
    storage = job.background_file.storage
    name = job.background_file.name
    assert storage.exists(name)
    from datetime import timedelta

    from django.utils import timezone

    assert services.expire_job_files(now=timezone.now() + timedelta(days=30)) == 1
    assert not storage.exists(name)


# --- Shadows -----------------------------------------------------------------------


def placed_product() -> bytes:
    """A cup on a plain wall, with room around it for a shadow."""
    canvas = Image.new("RGB", (640, 480), (236, 234, 230))
    cup = photo("coffee").resize((300, 200))
    canvas.paste(cup, (170, 120))
    return encode(canvas, "JPEG", quality=92)


def shadow_outside_subject(img: Image.Image, plain: Image.Image) -> np.ndarray:
    """Alpha the shadow adds where the plain cut-out is fully clear."""
    with_shadow = np.asarray(img.getchannel("A"), dtype=np.int32)
    without = np.asarray(plain.getchannel("A"), dtype=np.int32)
    return np.where(without == 0, with_shadow, 0)


@pytest.mark.parametrize("kind", ["drop", "3D", "car"])
def test_each_shadow_type_adds_a_soft_dark_shadow_outside_the_subject(client, kind):
    product = placed_product()
    _, plain = finished(client, seed(client, image=product))
    job, shaded = finished(client, seed(client, {"shadow_type": kind}, image=product))
    added = shadow_outside_subject(shaded, plain)
    assert added.max() > 40, kind
    rgb = np.asarray(shaded, dtype=np.int32)[..., :3]
    assert rgb[added > 40].max() == 0  # black at its own opacity
    assert job.options["shadow_type"] == kind


def test_shadow_opacity_sets_how_dark_it_is(client):
    product = placed_product()
    _, plain = finished(client, seed(client, image=product))
    _, light = finished(
        client, seed(client, {"shadow_type": "drop", "shadow_opacity": "20"}, image=product)
    )
    _, dark = finished(
        client, seed(client, {"shadow_type": "drop", "shadow_opacity": "90"}, image=product)
    )
    assert shadow_outside_subject(light, plain).max() <= 0.2 * 255 + 1
    assert shadow_outside_subject(dark, plain).max() > 0.6 * 255


def test_add_shadow_on_remove_bgs_door_is_a_contact_shadow_kept_whole_with_crop(client):
    product = placed_product()
    plain = image_of(removebg(client, {"crop": "true", "size": "full"}, image=product))
    shaded = image_of(
        removebg(client, {"crop": "true", "size": "full", "add_shadow": "true"}, image=product)
    )
    assert shaded.height > plain.height  # grown to hold the shadow under the cup
    alpha = np.asarray(shaded.getchannel("A"))
    assert alpha[-1].max() <= 3  # nothing of it cut off
    assert alpha[-40:].max() > 40


def test_a_shadow_lies_on_a_background_image(client):
    product = placed_product()
    job, img = finished(
        client,
        seed(client, {"shadow_type": "car", "format": "jpg"}, image=product, background=BACKGROUND),
    )
    _, bare = finished(
        client, seed(client, {"format": "jpg"}, image=product, background=BACKGROUND)
    )
    below = (slice(300, 330), slice(200, 440))  # just under the cup
    darker = (
        np.asarray(bare, dtype=np.int32)[below].mean() - np.asarray(img, np.int32)[below].mean()
    )
    assert darker > 10


# --- Hard edges --------------------------------------------------------------------


def test_semitransparency_false_gives_a_hard_edged_opaque_subject_on_both_doors(client):
    job, img = finished(client, seed(client, {"semitransparency": "false"}))
    assert set(np.unique(np.asarray(img.getchannel("A")))) == {0, 255}
    assert job.options == {"semitransparency": False}
    response = removebg(client, {"semitransparency": "false", "size": "preview"})
    alpha = np.asarray(image_of(response).getchannel("A"))
    assert set(np.unique(alpha)) == {0, 255}


def test_type_level_decides_what_x_type_says(client):
    assert "X-Type" not in removebg(client, {"type_level": "none"})
    assert removebg(client, {"type_level": "1"})["X-Type"] == "other"
    graphic = removebg(client, {"type": "graphic", "type_level": "2", "model": "u2netp"})
    assert graphic["X-Type"] == "graphics"
    assert removebg(client, {"type": "graphic", "type_level": "1"})["X-Type"] == "other"


# --- New inputs, AVIF out -------------------------------------------------------


def exif_turned(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


@pytest.mark.parametrize("fmt", ["HEIF", "TIFF", "AVIF"])
def test_heic_tiff_and_avif_photos_are_cut_out_upright_on_both_doors(client, fmt):
    turned = encode(photo("coffee"), fmt, exif=exif_turned(6))  # stored 600 x 400, shown 400 x 600
    job, img = finished(client, seed(client, image=turned))
    assert job.input_format == {"HEIF": "heic"}.get(fmt, fmt.lower())
    assert (job.width, job.height) == (400, 600) and img.size == (400, 600)
    alpha = np.asarray(img.getchannel("A"))
    assert 0.05 < (alpha > 127).mean() < 0.95
    response = removebg(client, {"size": "full"}, image=turned)
    assert image_of(response).size == (400, 600)


@pytest.mark.parametrize("fmt", ["HEIF", "TIFF", "AVIF"])
def test_a_corrupt_file_of_each_new_kind_is_refused_before_the_charge(client, account, fmt):
    data = encode(photo("coffee"), fmt)
    response = seed(client, image=data[: len(data) // 2])
    assert response.status_code == 400 and response.json()["code"] == "invalid_image"
    rb = removebg(client, image=data[:12] + b"\xff" * 64 + data[76:])
    assert rb.status_code == 400 and rb.json()["errors"][0]["code"] == "failed_to_read_image"
    assert_uncharged(account)


def test_avif_out_on_both_doors_is_smaller_than_png_and_keeps_alpha(client):
    job, png = finished(client, seed(client))
    job, avif = finished(client, seed(client, {"format": "avif"}))
    assert avif.format == "AVIF" and avif.mode == "RGBA"
    assert job.output_filename.endswith(".avif")
    assert job.output_size < RemovalJob.objects.exclude(pk=job.id).get().output_size / 3
    ours = np.asarray(avif.getchannel("A"), dtype=np.int32)
    reference = np.asarray(png.getchannel("A"), dtype=np.int32)
    assert np.abs(ours - reference).mean() < 4
    response = removebg(client, {"format": "avif"}, HTTP_ACCEPT="application/json")
    data = base64.b64decode(response.json()["data"]["result_b64"])
    assert Image.open(io.BytesIO(data)).format == "AVIF"
    direct = removebg(client, {"format": "avif"})
    assert direct["Content-Type"] == "image/avif"


def test_gif_stays_refused(client, account):
    response = seed(client, image=encode(photo("chelsea"), "GIF"))
    assert response.status_code == 415
    assert_uncharged(account)


# --- The web page ----------------------------------------------------------------


def test_the_web_page_takes_a_background_file_a_shadow_and_hard_edges(
    customer_client, account, inline_worker
):
    page = customer_client.get("/").content.decode()
    for control in ('name="bg_image_file"', 'name="bg_image_url"', 'name="shadow_type"'):
        assert control in page, control
    assert 'value="false"' in page and 'name="semitransparency"' in page
    assert "image/heic" in page and "image/avif" in page and "image/tiff" in page
    response = customer_client.post(
        "/jobs/",
        {
            "file": SimpleUploadedFile("photo.heic", encode(photo("astronaut"), "HEIF")),
            "bg_image_file": SimpleUploadedFile("bg.jpg", BACKGROUND),
            "shadow_type": "drop",
            "semitransparency": "false",
            "format": "avif",
            "model": "u2netp",
        },
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 202, response.content[:300]
    job = RemovalJob.objects.get()
    assert job.status == RemovalJob.Status.COMPLETED, job.error
    assert job.input_format == "heic" and job.output_format == "avif"
    summary = customer_client.get(f"/jobs/{job.id}/status").json()["options_summary"]
    assert "background image" in summary and "drop shadow" in summary and "hard edges" in summary


def test_the_web_page_names_a_bad_background_and_charges_nothing(customer_client, account):
    response = customer_client.post(
        "/jobs/",
        {
            "file": SimpleUploadedFile("photo.jpg", PHOTO),
            "bg_image_file": SimpleUploadedFile("bg.gif", encode(photo("chelsea"), "GIF")),
            "model": "u2netp",
        },
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 415
    assert response.json()["error"].startswith("Background image: Unsupported image format: gif")
    assert_uncharged(account)


def test_the_web_page_shows_a_heic_or_tiff_upload_as_a_jpeg_copy(customer_client, inline_worker):
    for fmt in ("HEIF", "TIFF"):
        response = customer_client.post(
            "/jobs/",
            {"file": SimpleUploadedFile("p", encode(photo("coffee"), fmt)), "model": "u2netp"},
            HTTP_ACCEPT="application/json",
        )
        assert response.status_code == 202, response.content[:300]
        before = customer_client.get(response.json()["input_url"])
        assert before["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(before.content)).size == (600, 400)
