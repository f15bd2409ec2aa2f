"""The upload page and its session-authenticated JSON endpoints."""

import re

import pytest
from PIL import Image

from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from imaging.options import OPTIONS_BY_NAME, WEB, options_for
from removal import registry
from removal.models import Batch, RemovalJob
from tests.images import encode, photo_bytes, solid_png
from tests.job_factory import completed_job, failed_job, submitted_job
from tests.removal.helpers import assert_nothing_charged

GIF = encode(Image.new("RGB", (8, 8), "red"), "GIF")


@pytest.fixture
def outsider_job(other_account):
    return submitted_job(other_account)


def upload(client, data: bytes, name: str = "photo.jpg", model: str = "u2netp", **extra):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        "/jobs/",
        {"file": SimpleUploadedFile(name, data), "model": model},
        HTTP_ACCEPT="application/json",
        **extra,
    )


def test_it_sends_visitors_without_a_session_to_the_login_page(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_it_lists_every_model_and_disables_those_without_weights(customer_client, monkeypatch):
    monkeypatch.setattr(registry, "is_available", lambda name: name in ("u2net", "u2netp"))
    response = customer_client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for name in registry.MODELS:
        assert f'value="{name}"' in html
    for name in ("u2net_human_seg", "u2net_cloth_seg", "silueta", "isnet-general-use"):
        assert re.search(rf'value="{name}"\s+disabled', html), name
    assert "isnet-general-use — Highest quality (not installed)" in " ".join(html.split())
    assert re.search(r'value="u2net"\s+selected', html)
    assert not re.search(r'value="u2netp"\s+disabled', html)


@pytest.mark.weights
def test_it_accepts_an_upload_charges_once_and_answers_with_the_job(customer_client, account):
    data = photo_bytes("astronaut")
    response = upload(customer_client, data, name="astronaut.jpg")
    assert response.status_code == 202, response.content
    body = response.json()
    job = RemovalJob.objects.get()
    assert body["task_id"] == str(job.id)
    assert body["status"] == "pending"
    assert body["balance"] == 975
    assert body["status_url"] == f"/jobs/{job.id}/status"
    assert body["input_url"] == f"/jobs/{job.id}/input"
    assert body["output_url"] is None
    assert job.api_key is None
    assert job.original_filename == "astronaut.jpg"
    account.refresh_from_db()
    assert account.credit_balance == 975 == ledger_sum(account=account)


@pytest.mark.weights
def test_it_refuses_a_gif_with_the_services_sentence_and_charges_nothing(customer_client, account):
    response = upload(customer_client, GIF, name="cat.gif")
    assert response.status_code == 415
    assert response.json() == {
        "success": False,
        "error": "Unsupported image format: gif. Supported: png, jpg, jpeg, webp, bmp, "
        "heic, heif, tiff, tif, avif",
        "code": "unsupported_format",
    }
    assert_nothing_charged(account)


@pytest.mark.weights
def test_it_refuses_a_request_without_a_file(customer_client, account):
    response = customer_client.post("/jobs/", {"model": "u2netp"})
    assert response.status_code == 400
    assert response.json()["code"] == "file_required"
    assert_nothing_charged(account)


@pytest.mark.weights
def test_it_refuses_an_upload_the_balance_cannot_pay_for(customer_client, account):
    from billing.services import adjust_credits

    adjust_credits(account=account, amount=-990, note="Leave 10 credits")
    response = upload(customer_client, solid_png())
    assert response.status_code == 402
    assert response.json()["error"] == (
        "Insufficient credits: this request costs 25 credits and the balance is 10."
    )
    assert_nothing_charged(account, balance=10)


def test_it_answers_a_script_without_a_session_in_json(client, db):
    response = upload(client, solid_png())
    assert response.status_code == 401
    assert response.json()["code"] == "login_required"


def test_it_refuses_a_post_without_the_csrf_token(csrf_client):
    response = upload(csrf_client, solid_png())
    assert response.status_code == 403
    assert not RemovalJob.objects.exists()


def test_a_user_without_an_account_is_told_so_and_cannot_upload(client, django_user_model):
    user = django_user_model.objects.create_user("loner", password="pw-loner-123")
    client.force_login(user)
    page = client.get("/")
    assert "not linked to a customer account" in page.content.decode()
    response = upload(client, solid_png())
    assert response.status_code == 403
    assert response.json()["code"] == "no_account"


@pytest.mark.weights
def test_it_reports_a_running_job_with_the_workers_progress(customer_client, account):
    job = submitted_job(account)
    assert job.mark_processing()
    job.set_progress(50, "Removing background from image...")
    body = customer_client.get(f"/jobs/{job.id}/status").json()
    assert (body["status"], body["progress"]) == ("processing", 50)
    assert body["message"] == "Removing background from image..."
    assert body["output_url"] is None


@pytest.mark.weights
def test_it_reports_a_finished_job_with_its_download_and_numbers(customer_client, account):
    job = completed_job(account)
    body = customer_client.get(f"/jobs/{job.id}/status").json()
    assert body["status"] == "completed"
    assert body["progress"] == 100
    assert body["output_url"] == f"/output/{job.id}_output.png"
    assert body["output_filename"] == f"{job.id}_output.png"
    assert body["output_size"] == job.output_size
    assert body["elapsed_seconds"] == 1.234
    assert (body["width"], body["height"]) == (512, 512)
    assert customer_client.get(body["output_url"])["Content-Type"] == "image/png"


@pytest.mark.weights
def test_it_reports_a_failed_job_with_its_error(customer_client, account):
    job = failed_job(account)
    body = customer_client.get(f"/jobs/{job.id}/status").json()
    assert body["status"] == "failed"
    assert body["error"] == "Processing timed out after 60 seconds"
    assert body["balance"] == 1000


@pytest.mark.weights
def test_it_shows_the_owner_the_uploaded_photo(customer_client, account):
    job = submitted_job(account)
    response = customer_client.get(f"/jobs/{job.id}/input")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content) == photo_bytes("astronaut")


@pytest.mark.weights
def test_it_says_when_the_uploaded_photo_has_expired(customer_client, account):
    from removal.services import expire_job_files

    job = failed_job(account)
    RemovalJob.objects.filter(pk=job.pk).update(expires_at=job.created_at)
    assert expire_job_files() == 1
    response = customer_client.get(f"/jobs/{job.id}/input")
    assert response.status_code == 410
    assert response.json()["code"] == "expired"


@pytest.mark.weights
def test_it_refuses_the_uploaded_photo_once_past_expiry_before_the_cleanup_ran(
    customer_client, account
):
    job = failed_job(account)
    RemovalJob.objects.filter(pk=job.pk).update(expires_at=job.created_at)
    response = customer_client.get(f"/jobs/{job.id}/input")
    assert response.status_code == 410
    assert response.json()["code"] == "expired"


@pytest.mark.weights
def test_it_hides_another_accounts_job_everywhere(customer_client, outsider_job):
    job_id = outsider_job.id
    assert customer_client.get(f"/jobs/{job_id}/status").status_code == 404
    assert customer_client.get(f"/jobs/{job_id}/input").status_code == 404
    page = customer_client.get(f"/jobs/{job_id}/", HTTP_ACCEPT="text/html")
    assert page.status_code == 404
    assert "not in your account" in page.content.decode()


@pytest.mark.weights
def test_the_job_page_polls_its_own_status(customer_client, account):
    job = completed_job(account)
    html = customer_client.get(f"/jobs/{job.id}/").content.decode()
    assert f'data-status-url="/jobs/{job.id}/status"' in html
    assert 'role="progressbar"' in html


# --- the page's errors name the fields as the page labels them ---------------------


def wire_names() -> set[str]:
    """Every field name the option table's web door reads (its API spelling)."""
    names = set()
    for option in options_for(WEB):
        names.add(option.wire_name)
        if option.url_field:
            names.add(option.url_field)
    return names


def label(name: str) -> str:
    return OPTIONS_BY_NAME[name].web.label


@pytest.mark.weights
@pytest.mark.parametrize(
    ("extra", "labels"),
    [
        # A background colour and a background image: one background only.
        (
            {"bg_color": "#ff0000", "bg_image_file": ("bg.png", solid_png())},
            [label("bg_color"), label("bg_image")],
        ),
        # Two backgrounds.
        (
            {"bg_image_file": ("bg.png", solid_png()), "bg_image_url": "https://example.com/b.png"},
            [label("bg_image"), f"{label('bg_image')} URL"],
        ),
        ({"bg_image_file": ("bg.png", b"")}, [label("bg_image")]),
        ({"bg_image_url": "ftp://example.com/b.png"}, [f"{label('bg_image')} URL"]),
        ({"crop": "true", "crop_margin": "wide"}, [label("crop_margin")]),
    ],
)
def test_its_errors_name_the_pages_labels_not_the_api_fields(
    customer_client, account, extra, labels
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {"file": SimpleUploadedFile("photo.png", solid_png()), "model": "u2netp"}
    for name, value in extra.items():
        data[name] = SimpleUploadedFile(*value) if isinstance(value, tuple) else value
    response = customer_client.post("/jobs/", data, HTTP_ACCEPT="application/json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    for shown in labels:
        assert shown in error, error
    leaked = [name for name in wire_names() if re.search(rf"\b{name}\b", error)]
    assert leaked == [], error
    assert_nothing_charged(account)


# --- several photos at once: a batch --------------------------------------------------


def upload_many(client, photos: list[tuple[str, bytes]], **fields):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        "/jobs/batch/",
        {"files": [SimpleUploadedFile(name, data) for name, data in photos], **fields},
        HTTP_ACCEPT="application/json",
    )


@pytest.mark.weights
def test_several_photos_are_one_batch_charged_once_with_refusals_free(customer_client, account):
    photos = [("a.jpg", photo_bytes("astronaut")), ("b.gif", GIF), ("c.png", solid_png())]
    response = upload_many(customer_client, photos, model="u2netp", format="jpg")
    assert response.status_code == 202, response.content
    body = response.json()
    batch = Batch.objects.get()
    assert body["batch_id"] == str(batch.id)
    assert body["charged_credits"] == 50
    assert body["balance"] == 950
    assert body["endpoints"] == {
        "check_status": f"/api/batch/{batch.id}",
        "download_zip": f"/api/batch/{batch.id}/download",
    }
    assert [(item["index"], item["filename"], item["status"]) for item in body["items"]] == [
        (0, "a.jpg", "pending"),
        (1, "b.gif", "refused"),
        (2, "c.png", "pending"),
    ]
    assert body["items"][1]["error"].startswith("Unsupported image format: gif")
    # The same batch as the API makes: no key, the web's options, one charge transaction.
    assert batch.api_key is None
    assert batch.options == {"format": "jpg"}
    charges = LedgerEntry.objects.filter(kind="charge")
    assert sorted(charges.values_list("amount", flat=True)) == [-25, -25]
    assert {job.batch_id for job in RemovalJob.objects.all()} == {batch.id}
    account.refresh_from_db()
    assert account.credit_balance == 950 == ledger_sum(account=account)


@pytest.mark.weights
def test_a_batch_refuses_a_background_image_by_its_label_and_charges_nothing(
    customer_client, account
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    photos = [("a.png", solid_png()), ("b.png", solid_png())]
    response = upload_many(
        customer_client,
        photos,
        model="u2netp",
        bg_image_file=SimpleUploadedFile("bg.png", solid_png()),
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{label('bg_image')} works with one photo")
    assert not Batch.objects.exists()
    assert_nothing_charged(account)


@pytest.mark.weights
def test_a_batch_the_balance_cannot_pay_for_charges_nothing(customer_client, account):
    from billing.services import adjust_credits

    adjust_credits(account=account, amount=-960, note="Leave 40 credits")
    response = upload_many(customer_client, [("a.png", solid_png()), ("b.png", solid_png())])
    assert response.status_code == 402
    assert not Batch.objects.exists()
    assert_nothing_charged(account, balance=40)
