"""The HTTP contract, field for field (seed: remove-background-api.txt)."""

import base64
import io
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from accounts.services import create_api_key, revoke_api_key
from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from removal.models import RemovalJob
from removal.services import process_job
from tests.images import photo_bytes, solid_png
from tests.removal.helpers import (
    accepted_task,
    assert_json_error,
    assert_nothing_charged,
    multipart_body,
)

URL = "/paid/image/remove/background"
TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$"


def post_image(client, data=None, name="photo.jpg", **fields):
    payload = dict(fields)
    if data is not None:
        payload["file"] = io.BytesIO(data)
        payload["file"].name = name
    return client.post(URL, payload, format="multipart")


@pytest.mark.django_db
class TestSubmit:
    @pytest.mark.weights
    def test_it_accepts_an_image_and_answers_with_the_contract_fields(self, api_client, account):
        response = post_image(api_client, photo_bytes("chelsea"), model="u2netp")
        assert response.status_code == 202
        body = response.json()
        assert set(body) == {"success", "task_id", "status", "message", "endpoints"}
        assert body["success"] is True
        assert body["status"] == "pending"
        assert body["message"] == "Background removal started"
        task_id = body["task_id"]
        assert uuid.UUID(task_id).version == 4
        assert body["endpoints"] == {
            "check_status": f"/api/get/{task_id}",
            "download_image": f"/output/{task_id}_output.png (after completion)",
        }

    @pytest.mark.weights
    def test_it_charges_25_credits_in_the_ledger(self, api_client, account):
        response = post_image(api_client, photo_bytes("chelsea"))
        job = RemovalJob.objects.get(pk=response.json()["task_id"])
        account.refresh_from_db()
        assert account.credit_balance == 975
        charge = LedgerEntry.objects.get(job=job)
        assert (charge.kind, charge.amount, charge.balance_after) == ("charge", -25, 975)
        assert ledger_sum(account=account) == account.credit_balance

    @pytest.mark.weights
    def test_the_default_model_is_u2net(self, api_client):
        response = post_image(api_client, photo_bytes("chelsea"))
        assert RemovalJob.objects.get(pk=response.json()["task_id"]).model_name == "u2net"

    @pytest.mark.weights
    def test_it_stores_the_upload_and_its_facts(self, api_client, account):
        data = photo_bytes("coffee")
        response = post_image(api_client, data, name="My Photo.JPG", model="u2netp")
        job = RemovalJob.objects.get(pk=response.json()["task_id"])
        assert job.account == account
        assert (job.input_format, job.input_size, job.width, job.height) == (
            "jpeg",
            len(data),
            600,
            400,
        )
        assert job.original_filename == "My Photo.JPG"
        with job.input_file.open("rb") as handle:
            assert handle.read() == data

    @pytest.mark.weights
    def test_it_queues_the_worker_task_after_commit(
        self, api_client, django_capture_on_commit_callbacks, monkeypatch
    ):
        queued = []
        monkeypatch.setattr(
            "django_q.tasks.async_task", lambda func, *args, **kwargs: queued.append((func, args))
        )
        with django_capture_on_commit_callbacks(execute=True):
            response = post_image(api_client, photo_bytes("chelsea"))
        assert queued == [("removal.tasks.process_removal_job", (response.json()["task_id"],))]

    @pytest.mark.weights
    def test_the_header_name_is_case_insensitive(self, anon_client, api_key):
        # Django folds header names; X-API-KEY and x-api-key reach us the same.
        response = anon_client.post(
            URL,
            {"file": io.BytesIO(solid_png())},
            format="multipart",
            headers={"X-API-KEY": api_key},
        )
        assert response.status_code == 202

    @pytest.mark.weights
    def test_it_accepts_odd_spacing_in_headers_and_fields(self, account, api_key, anon_client):
        body = multipart_body([("file", "a.png", solid_png()), ("model", None, b"  u2netp  ")])
        with mock.patch("removal.services.enqueue_job"):
            response = anon_client.generic(
                "POST",
                URL,
                body,
                content_type='multipart/form-data ;  boundary="XyZ123"  ',
                HTTP_X_API_KEY=f"   {api_key}\t ",
            )
        assert response.status_code == 202, response.content
        assert RemovalJob.objects.get(account=account).model_name == "u2netp"

    @pytest.mark.model
    @pytest.mark.parametrize("name", ["PHOTO.JPG", "Фото отпуска 日本.png", "CAPS.WEBP"])
    def test_upper_case_and_unicode_file_names_are_shown_not_stored(
        self, api_client, account, name
    ):
        """The name is kept for display only; storage uses the job id."""
        with mock.patch("removal.services.enqueue_job"):
            response = post_image(
                api_client, photo_bytes("chelsea", "PNG"), name=name, model="u2netp"
            )
        assert response.status_code == 202, response.content
        job = RemovalJob.objects.get(pk=response.json()["task_id"])
        assert job.original_filename == name
        assert job.input_file.name == f"inputs/{job.id}.png"

        process_job(job_id=job.id)
        job.refresh_from_db()
        assert job.status == RemovalJob.Status.COMPLETED, job.error
        with job.output_file.open("rb") as handle:
            out = Image.open(handle)
            out.load()
        assert out.mode == "RGBA" and out.size == (451, 300)


@pytest.mark.django_db
class TestSubmitRefusals:
    def test_it_refuses_a_missing_key(self, anon_client, account):
        body = assert_json_error(post_image(anon_client, solid_png()), 401, "missing_api_key")
        assert "x-api-key" in body["error"]
        assert_nothing_charged(account)

    def test_it_refuses_a_wrong_key(self, anon_client, account, api_key):
        anon_client.credentials(HTTP_X_API_KEY=api_key[:-1] + ("A" if api_key[-1] != "A" else "B"))
        assert_json_error(post_image(anon_client, solid_png()), 401, "invalid_api_key")
        assert_nothing_charged(account)

    def test_it_refuses_a_revoked_key(self, anon_client, account):
        key_obj, key = create_api_key(account=account, name="old")
        revoke_api_key(api_key=key_obj)
        anon_client.credentials(HTTP_X_API_KEY=key)
        assert_json_error(post_image(anon_client, solid_png()), 401, "invalid_api_key")
        assert_nothing_charged(account)

    def test_it_refuses_an_unknown_model(self, api_client, account):
        body = assert_json_error(
            post_image(api_client, solid_png(), model="u3net"), 400, "unknown_model"
        )
        assert "u2net" in body["error"]
        assert_nothing_charged(account)

    def test_it_answers_503_for_a_model_without_weights(
        self, api_client, account, settings, tmp_path
    ):
        settings.U2NET_HOME = tmp_path  # an empty weights folder
        body = assert_json_error(
            post_image(api_client, solid_png(), model="silueta"), 503, "model_unavailable"
        )
        assert "silueta" in body["error"]
        assert_nothing_charged(account)

    @pytest.mark.weights
    def test_it_refuses_two_file_parts(self, api_client, account):
        parts = [("file", "a.png", solid_png()), ("file", "b.png", solid_png(10, 10))]
        response = api_client.generic(
            "POST", URL, multipart_body(parts), content_type="multipart/form-data; boundary=XyZ123"
        )
        assert_json_error(response, 400, "multiple_files")
        assert_nothing_charged(account)

    @pytest.mark.weights
    def test_it_refuses_a_request_without_a_file(self, api_client, account):
        assert_json_error(post_image(api_client, None, model="u2net"), 400, "file_required")
        assert_nothing_charged(account)

    def test_it_refuses_a_file_over_the_byte_limit(self, api_client, account, settings):
        settings.MAX_UPLOAD_BYTES = 1000
        body = assert_json_error(
            post_image(api_client, photo_bytes("chelsea")), 413, "file_too_large"
        )
        assert "limit" in body["error"]
        assert_nothing_charged(account)

    @pytest.mark.weights
    def test_it_refuses_a_gif_with_the_contract_message(self, api_client, account):
        gif = io.BytesIO()
        Image.new("RGB", (10, 10), "red").save(gif, "GIF")
        body = assert_json_error(
            post_image(api_client, gif.getvalue(), name="cat.png"), 415, "unsupported_format"
        )
        assert body["error"] == (
            "Unsupported image format: gif. Supported: png, jpg, jpeg, webp, bmp"
        )
        assert_nothing_charged(account)

    @pytest.mark.weights
    def test_it_sniffs_the_format_instead_of_trusting_the_name(self, api_client, account):
        body = assert_json_error(
            post_image(api_client, b"hello, I am text" * 20, name="photo.png"),
            415,
            "unsupported_format",
        )
        assert body["error"].startswith("Unsupported image format: unknown.")
        assert_nothing_charged(account)

    @pytest.mark.weights
    def test_it_accepts_a_png_named_jpg(self, api_client):
        response = post_image(api_client, solid_png(), name="actually-a-png.jpg")
        assert response.status_code == 202
        assert RemovalJob.objects.get().input_format == "png"

    @pytest.mark.weights
    def test_it_refuses_a_truncated_jpeg(self, api_client, account):
        data = photo_bytes("astronaut")
        assert_json_error(post_image(api_client, data[: len(data) // 2]), 400, "invalid_image")
        assert_nothing_charged(account)

    @pytest.mark.weights
    def test_it_refuses_an_image_over_the_pixel_limit(self, api_client, account, settings):
        settings.MAX_IMAGE_PIXELS = 100 * 100
        body = assert_json_error(
            post_image(api_client, solid_png(200, 100)), 413, "image_too_large"
        )
        assert "200x100" in body["error"]
        assert_nothing_charged(account)

    @pytest.mark.weights
    def test_it_answers_402_when_the_balance_is_short(self, api_client, account):
        from billing.services import adjust_credits

        adjust_credits(account=account, amount=-980, note="leave 20")
        body = assert_json_error(post_image(api_client, solid_png()), 402, "insufficient_credits")
        assert "25" in body["error"] and "20" in body["error"]
        assert_nothing_charged(account, balance=20)

    @pytest.mark.weights
    def test_the_last_25_credits_can_be_spent(self, api_client, account):
        from billing.services import adjust_credits

        adjust_credits(account=account, amount=-975, note="leave 25")
        assert post_image(api_client, solid_png()).status_code == 202
        account.refresh_from_db()
        assert account.credit_balance == 0


@pytest.mark.django_db
class TestStatus:
    def submit(self, api_client, model="u2netp", data=None):
        response = post_image(api_client, data or photo_bytes("chelsea"), model=model)
        return RemovalJob.objects.get(pk=response.json()["task_id"])

    @pytest.mark.weights
    def test_a_pending_task(self, api_client):
        job = self.submit(api_client)
        body = api_client.get(f"/api/get/{job.id}").json()
        assert set(body) == {
            "status",
            "message",
            "progress",
            "created_at",
            "completed_at",
            "result",
        }
        assert body["status"] == "pending"
        assert body["progress"] == 0
        assert body["completed_at"] is None
        assert body["result"] is None
        assert body["created_at"] == job.created_at.strftime("%Y-%m-%dT%H:%M:%S.%f")

    @pytest.mark.weights
    def test_a_processing_task_shows_the_workers_progress(self, api_client):
        job = self.submit(api_client)
        assert job.mark_processing()
        job.set_progress(50, "Removing background from image...")
        body = api_client.get(f"/api/get/{job.id}").json()
        assert body["status"] == "processing"
        assert body["progress"] == 50
        assert body["message"] == "Removing background from image..."
        assert body["result"] is None

    @pytest.mark.model
    def test_a_completed_task_has_every_result_field(self, api_client):
        data = photo_bytes("chelsea")
        job = self.submit(api_client, data=data)
        process_job(job_id=job.id)
        body = api_client.get(f"/api/get/{job.id}").json()
        assert body["status"] == "completed"
        assert body["message"] == "Background removal completed successfully"
        assert body["progress"] == 100
        assert body["completed_at"] is not None
        result = body["result"]
        assert set(result) == {
            "image_url",
            "image_filename",
            "input_size",
            "output_size",
            "input_size_kb",
            "output_size_kb",
            "elapsed_seconds",
            "model",
            "format",
            "width",
            "height",
            "foreground",
            "options",
        }
        assert (result["format"], result["width"], result["height"]) == ("png", 451, 300)
        assert result["options"] == {}
        assert set(result["foreground"]) == {"top", "left", "width", "height"}
        assert result["image_filename"] == f"{job.id}_output.png"
        assert result["image_url"] == f"http://testserver/output/{job.id}_output.png"
        assert result["input_size"] == len(data)
        job.refresh_from_db()
        assert result["output_size"] == job.output_size > 0
        assert result["input_size_kb"] == round(len(data) / 1024, 1)
        assert result["output_size_kb"] == round(job.output_size / 1024, 1)
        assert 0 < result["elapsed_seconds"] < 60
        assert result["model"] == "u2netp"

    @pytest.mark.model
    def test_the_image_url_uses_the_requests_host(self, api_client):
        job = self.submit(api_client)
        process_job(job_id=job.id)
        body = api_client.get(f"/api/get/{job.id}", HTTP_HOST="localhost").json()
        assert body["result"]["image_url"].startswith("http://localhost/output/")

    @pytest.mark.weights
    def test_a_failed_task_says_why(self, api_client, account):
        job = self.submit(api_client)
        job.input_file.storage.delete(job.input_file.name)  # the worker cannot read it
        process_job(job_id=job.id)
        body = api_client.get(f"/api/get/{job.id}").json()
        assert body["status"] == "failed"
        assert body["progress"] == 0
        assert body["message"].startswith("Background removal failed: ")
        assert body["completed_at"] is not None
        assert set(body["result"]) == {"error"}
        assert body["result"]["error"]
        account.refresh_from_db()
        assert account.credit_balance == 1000  # refunded

    def test_an_unknown_task_is_404(self, api_client):
        assert_json_error(api_client.get(f"/api/get/{uuid.uuid4()}"), 404, "task_not_found")

    def test_a_malformed_task_id_is_404(self, api_client):
        assert_json_error(api_client.get("/api/get/not-a-uuid"), 404, "task_not_found")

    @pytest.mark.weights
    def test_polling_without_a_key_works_as_in_the_contract(self, api_client, anon_client):
        job = self.submit(api_client)
        assert anon_client.get(f"/api/get/{job.id}").json()["status"] == "pending"

    @pytest.mark.weights
    def test_another_accounts_key_cannot_see_the_task(self, api_client, other_account, anon_client):
        job = self.submit(api_client)
        _, other_key = create_api_key(account=other_account)
        anon_client.credentials(HTTP_X_API_KEY=other_key)
        assert_json_error(anon_client.get(f"/api/get/{job.id}"), 404, "task_not_found")


@pytest.mark.django_db
class TestDownload:
    def completed_job(self, api_client):
        response = post_image(api_client, photo_bytes("chelsea"), model="u2netp")
        job = process_job(job_id=response.json()["task_id"])
        assert job.status == "completed"
        return job

    @pytest.mark.weights
    def test_it_serves_the_png(self, api_client, anon_client):
        job = self.completed_job(api_client)
        response = anon_client.get(f"/output/{job.id}_output.png")
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        png = b"".join(response.streaming_content)
        img = Image.open(io.BytesIO(png))
        assert (img.format, img.mode, img.size) == ("PNG", "RGBA", (451, 300))

    def test_an_unknown_file_is_404(self, anon_client, db):
        assert_json_error(
            anon_client.get(f"/output/{uuid.uuid4()}_output.png"), 404, "file_not_found"
        )

    @pytest.mark.weights
    def test_other_names_are_404(self, api_client, anon_client):
        job = self.completed_job(api_client)
        for name in (f"{job.id}.jpeg", f"{job.id}_output.PNG", f"{str(job.id).upper()}_output.png"):
            assert_json_error(anon_client.get(f"/output/{name}"), 404, "file_not_found")

    @pytest.mark.weights
    def test_a_task_that_is_not_finished_has_no_file(self, api_client, anon_client):
        response = post_image(api_client, solid_png())
        task_id = response.json()["task_id"]
        assert_json_error(anon_client.get(f"/output/{task_id}_output.png"), 404, "file_not_found")

    @pytest.mark.weights
    def test_an_expired_result_is_gone(self, api_client, anon_client):
        job = self.completed_job(api_client)
        RemovalJob.objects.filter(pk=job.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        assert_json_error(anon_client.get(f"/output/{job.id}_output.png"), 410, "expired")
        body = anon_client.get(f"/api/get/{job.id}").json()
        assert body["status"] == "completed"
        assert body["result"]["expired"] is True


@pytest.mark.django_db
def test_the_models_endpoint_lists_the_six_models(anon_client, settings, tmp_path):
    (tmp_path / "u2netp.onnx").write_bytes(b"weights")
    settings.U2NET_HOME = tmp_path
    body = anon_client.get("/api/models").json()
    assert body["success"] is True
    assert [m["name"] for m in body["models"]] == [
        "u2net",
        "u2net_human_seg",
        "u2netp",
        "u2net_cloth_seg",
        "silueta",
        "isnet-general-use",
    ]
    available = {m["name"]: m["available"] for m in body["models"]}
    assert available == {
        "u2net": False,
        "u2net_human_seg": False,
        "u2netp": True,
        "u2net_cloth_seg": False,
        "silueta": False,
        "isnet-general-use": False,
    }


@pytest.mark.weights
@pytest.mark.django_db
def test_a_json_body_submits_a_base64_image(api_client, account):
    body = {"image_file_b64": base64.b64encode(solid_png()).decode(), "model": "u2netp"}
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 202, response.content
    job = RemovalJob.objects.get(pk=response.json()["task_id"])
    assert (job.input_format, job.width, job.height) == ("png", 64, 48)
    account.refresh_from_db()
    assert account.credit_balance == 1000 - 25


@pytest.mark.django_db
def test_a_json_body_with_a_list_where_a_value_belongs_is_a_400(api_client, account):
    response = api_client.post(URL, {"model": ["u2netp", "u2net"]}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_field"
    account.refresh_from_db()
    assert account.credit_balance == 1000


# --- task ids and other accounts' tasks -------------------------------------


@pytest.mark.weights
def test_a_key_cannot_see_another_accounts_task(api_client, account, other_account):
    _, other_key = create_api_key(account=other_account, name="other")
    other = APIClient()
    other.credentials(HTTP_X_API_KEY=other_key)
    their_task = accepted_task(other)

    body = assert_json_error(api_client.get(f"/api/get/{their_task}"), 404, "task_not_found")
    assert "progress" not in body
    assert other.get(f"/api/get/{their_task}").status_code == 200


@pytest.mark.weights
def test_task_ids_are_random_uuid4(api_client, account):
    ids = [accepted_task(api_client) for _ in range(5)]
    assert len(set(ids)) == 5
    for task_id in ids:
        assert uuid.UUID(task_id).version == 4
        assert str(uuid.UUID(task_id)) == task_id


def test_an_unknown_or_malformed_task_id_is_a_json_404(api_client, account):
    for task_id in (str(uuid.uuid4()), "nope", "1", "' OR 1=1 --", "%00"):
        assert_json_error(api_client.get(f"/api/get/{task_id}"), 404)
