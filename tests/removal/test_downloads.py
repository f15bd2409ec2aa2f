"""Serving a job's files: the download route, over real HTTP so nothing
normalises the paths; stored files that no URL but the route reaches; and
``output_bytes``, the result for a door that answers with the image itself."""

import http.client
from urllib.parse import urlparse

import pytest

from removal import downloads
from removal.models import RemovalJob
from revid.errors import ApplicationError
from revid.settings import s3_storage
from tests.conftest import free_port
from tests.images import encode, photo, solid_png
from tests.job_factory import completed_job, processed_job, submitted_job

SECRET_MARKERS = (b"SECRET_KEY", b"root:", b"\x89PNG", b"SQLite format", b"[extensions]")


@pytest.fixture
def finished_job(live_server, account) -> RemovalJob:
    return processed_job(account, data=encode(photo("chelsea"), "PNG"), filename="cat.png")


def raw_get(live_server, path: bytes) -> tuple[int, dict, bytes]:
    url = urlparse(live_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        # putrequest(skip_host...) sends the path byte for byte.
        conn.putrequest("GET", path.decode("latin-1"), skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


TRAVERSALS = [
    b"../../revid/settings.py",
    b"..%2f..%2frevid%2fsettings.py",
    b"%2e%2e%2f%2e%2e%2frevid%2fsettings.py",
    b"%2E%2E%2F%2E%2E%2Fmanage.py",
    b"%252e%252e%252f%252e%252e%252fmanage.py",
    b"..%255c..%255cmanage.py",
    b"..\\..\\manage.py",
    b"..%5c..%5cmanage.py",
    b"%c0%ae%c0%ae%c0%afmanage.py",
    b"..%c0%af..%c0%afetc%c0%afpasswd",
    b"....//....//etc/passwd",
    b"%2fetc%2fpasswd",
    b"/etc/passwd",
    b"C:%5cWindows%5cwin.ini",
    b"file:%2f%2f%2fetc%2fpasswd",
    b"%00",
    b"..%00",
    b"manage.py%00_output.png",
    b"%u002e%u002e%u2215manage.py",
    b"{job}_output.png%00.txt",
    b"{job}_output.png/../../manage.py",
    b"..%2f{job}_output.png",
    b"outputs%2f{job}_output.png",
    b"%2e%2e%2fmedia%2foutputs%2f{job}_output.png",
    b"{job}.png",
    b"..%2finputs%2f{job}.png",
]


@pytest.mark.model
def test_the_download_route_refuses_path_traversal_in_every_encoding(live_server, finished_job):
    job_id = str(finished_job.id).encode()
    status, _, body = raw_get(live_server, b"/output/" + job_id + b"_output.png")
    assert status == 200 and body.startswith(b"\x89PNG")  # the route does work

    for attack in TRAVERSALS:
        path = b"/output/" + attack.replace(b"{job}", job_id)
        status, headers, body = raw_get(live_server, path)
        assert status in (400, 404), (path, status, body[:200])
        assert headers.get("Content-Type", "").startswith("application/json"), (path, headers)
        assert not any(marker in body for marker in SECRET_MARKERS), (path, body[:200])


@pytest.mark.weights
def test_stored_files_are_not_reachable_under_media_url(client, account):
    # In-process: Django's live test server serves MEDIA_URL for convenience,
    # the application itself (runserver, gunicorn) must not.
    task_id = submit_as(account)
    job = RemovalJob.objects.get(pk=task_id)
    for path in (f"/media/{job.input_file.name}", f"/media/outputs/{job.output_filename}"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert not response.content.startswith(b"\x89PNG")


def submit_as(account) -> str:
    return str(submitted_job(account, data=solid_png(), filename="a.png").id)


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: about 4 bytes a pixel."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(7).integers(0, 256, (side, side, 4), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@pytest.mark.weights
def test_a_streamed_download_from_the_bucket_never_holds_the_whole_object(
    client, account, settings, s3_storage_settings
):
    import tracemalloc

    from tests.conftest import s3_client
    from tests.job_factory import completed_job

    settings.OUTPUT_REDIRECT_TO_STORAGE = False  # stream through the web server
    job = completed_job(account)
    big = noise_png(2048)  # about 16 MB
    s3_client(s3_storage_settings).put_object(
        Bucket=s3_storage_settings["AWS_STORAGE_BUCKET_NAME"], Key=job.output_file.name, Body=big
    )
    RemovalJob.objects.filter(pk=job.pk).update(output_size=len(big))

    # Once before measuring: the first request imports half the project.
    assert sum(map(len, client.get(f"/output/{job.output_filename}").streaming_content)) == len(big)
    tracemalloc.start()
    try:
        response = client.get(f"/output/{job.output_filename}")
        assert response.status_code == 200
        assert response["Content-Length"] == str(len(big))
        assert response["Content-Type"] == "image/png"
        received = 0
        head = b""
        for chunk in response.streaming_content:
            head = head or chunk[:8]
            received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == len(big) and head == big[:8]
    # django-storages' own file read the whole object into memory first.
    assert peak < len(big) / 8, f"{peak} bytes held to stream {len(big)}"


@pytest.mark.weights
def test_a_missing_object_in_the_bucket_is_a_404_not_a_500(client, account, s3_storage_settings):
    from tests.conftest import s3_client
    from tests.job_factory import completed_job

    job = completed_job(account)
    s3_client(s3_storage_settings).delete_object(
        Bucket=s3_storage_settings["AWS_STORAGE_BUCKET_NAME"], Key=job.input_file.name
    )
    from removal import downloads
    from revid.errors import ApplicationError

    with pytest.raises(ApplicationError) as refused:
        downloads.input_response(job)
    assert refused.value.status_code == 404


# --- output_bytes ---------------------------------------------------------------------


def refusal_of(job) -> ApplicationError:
    with pytest.raises(ApplicationError) as refused:
        downloads.output_bytes(job)
    return refused.value


@pytest.mark.weights
def test_output_bytes_are_the_stored_result(account):
    job = completed_job(account)
    with job.output_file.open("rb") as handle:
        stored = handle.read()
    assert stored.startswith(b"\x89PNG")
    assert downloads.output_bytes(job) == stored


@pytest.mark.weights
def test_a_job_without_a_result_has_no_output_bytes(account):
    refused = refusal_of(submitted_job(account))
    assert (refused.status_code, refused.code) == (404, "file_not_found")


@pytest.mark.weights
def test_a_result_missing_from_storage_is_not_found(account):
    job = completed_job(account)
    job.output_file.storage.delete(job.output_file.name)
    refused = refusal_of(job)
    assert (refused.status_code, refused.code, refused.message) == (
        404,
        "file_not_found",
        "File not found.",
    )


@pytest.mark.weights
def test_a_result_in_a_bucket_that_cannot_be_reached_is_a_503(
    account, settings, s3_storage_settings
):
    job = completed_job(account)
    dead = {**s3_storage_settings, "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    settings.STORAGES = {**settings.STORAGES, "default": s3_storage(dead)}
    refused = refusal_of(job)
    assert (refused.status_code, refused.code) == (503, "storage_unavailable")
    assert "try again" in refused.message
