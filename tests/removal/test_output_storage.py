"""Downloads of results kept in S3-compatible storage: a redirect to a
short-lived presigned URL (OUTPUT_REDIRECT_TO_STORAGE, on by default with a
bucket), or streamed through the web server when it is off."""

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from django.utils import timezone

from removal import services
from removal.models import RemovalJob
from revid.settings import s3_storage
from tests.conftest import bucket_keys, free_port
from tests.images import photo_bytes

pytestmark = [pytest.mark.model]


@pytest.fixture
def finished_job(api_client, s3_storage_settings) -> RemovalJob:
    """A job submitted over the API and run here with the real u2netp model."""
    response = api_client.post(
        "/paid/image/remove/background",
        {"file": _upload(), "model": "u2netp"},
        format="multipart",
    )
    assert response.status_code == 202, response.json()
    job = services.process_job(job_id=response.json()["task_id"])
    assert job.status == RemovalJob.Status.COMPLETED, job.error
    return job


def _upload():
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("cat.jpg", photo_bytes("chelsea"), content_type="image/jpeg")


def test_input_and_output_are_stored_in_the_bucket(finished_job, s3_storage_settings):
    keys = bucket_keys(s3_storage_settings)
    assert keys == {finished_job.input_file.name, f"outputs/{finished_job.pk}_output.png"}


def test_a_result_in_the_bucket_is_streamed_when_redirects_are_off(
    anon_client, finished_job, settings
):
    settings.OUTPUT_REDIRECT_TO_STORAGE = False
    response = anon_client.get(f"/output/{finished_job.output_filename}")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    body = b"".join(response.streaming_content)
    assert body.startswith(b"\x89PNG")
    assert len(body) == finished_job.output_size


def test_it_redirects_to_a_short_lived_presigned_url_when_asked(
    anon_client, finished_job, settings, s3_storage_settings
):
    settings.OUTPUT_REDIRECT_TO_STORAGE = True
    response = anon_client.get(f"/output/{finished_job.output_filename}")
    assert response.status_code == 302
    assert response["Cache-Control"] == "no-store"
    location = response["Location"]
    url = urlparse(location)
    endpoint = urlparse(s3_storage_settings["AWS_S3_ENDPOINT_URL"])
    assert url.netloc == endpoint.netloc
    bucket = s3_storage_settings["AWS_STORAGE_BUCKET_NAME"]
    assert url.path == f"/{bucket}/outputs/{finished_job.output_filename}"
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == [str(settings.OUTPUT_URL_EXPIRE_SECONDS)]
    assert "X-Amz-Signature" in query

    download = requests.get(location, timeout=10)
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "image/png"
    assert finished_job.output_filename in download.headers["Content-Disposition"]
    assert len(download.content) == finished_job.output_size
    # The object itself is private: without the signature the bucket refuses.
    unsigned = requests.get(location.split("?")[0], timeout=10)
    assert unsigned.status_code == 403


def test_the_presigned_url_never_outlives_the_result(anon_client, finished_job, settings):
    settings.OUTPUT_REDIRECT_TO_STORAGE = True
    RemovalJob.objects.filter(pk=finished_job.pk).update(
        expires_at=timezone.now() + timedelta(seconds=42)
    )
    response = anon_client.get(f"/output/{finished_job.output_filename}")
    assert response.status_code == 302
    expires = int(parse_qs(urlparse(response["Location"]).query)["X-Amz-Expires"][0])
    assert 30 <= expires <= 42


def test_it_streams_from_local_files_even_if_redirect_is_asked(api_client, anon_client, settings):
    settings.OUTPUT_REDIRECT_TO_STORAGE = True  # nothing to redirect to
    response = api_client.post(
        "/paid/image/remove/background", {"file": _upload(), "model": "u2netp"}, format="multipart"
    )
    job = services.process_job(job_id=response.json()["task_id"])
    response = anon_client.get(f"/output/{job.output_filename}")
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")


def test_it_answers_503_when_storage_is_unreachable(
    anon_client, finished_job, settings, s3_storage_settings
):
    dead = {**s3_storage_settings, "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    settings.STORAGES = {**settings.STORAGES, "default": s3_storage(dead)}
    response = anon_client.get(f"/output/{finished_job.output_filename}")
    assert response.status_code == 503
    assert response.json()["code"] == "storage_unavailable"
