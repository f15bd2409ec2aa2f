"""Keys at rest, revoked keys, other accounts' tasks, task ids and the download route."""

import http.client
import uuid
from unittest import mock
from urllib.parse import urlparse

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient

from accounts.services import create_api_key, revoke_api_key
from removal import services
from removal.models import RemovalJob
from tests.images import encode, photo, solid_png
from tests.job_factory import submitted_job
from tests.removal.helpers import assert_json_error

SUBMIT = "/paid/image/remove/background"


def submit(client) -> str:
    upload = SimpleUploadedFile("a.png", solid_png())
    with mock.patch("removal.services.enqueue_job"):
        response = client.post(SUBMIT, {"file": upload, "model": "u2netp"}, format="multipart")
    assert response.status_code == 202, response.content
    return response.json()["task_id"]


def every_stored_value() -> list[str]:
    """Every cell of every table, as text."""
    values = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for cell in row:
                    if isinstance(cell, bytes | memoryview):
                        cell = bytes(cell).decode("latin-1")
                    values.append(str(cell))
    return values


def test_no_table_holds_a_usable_api_key(api_client, account, api_key):
    # Use the key so every place that could record it has had the chance.
    submit(api_client)
    api_client.get("/api/account")
    prefix, secret = api_key.split(".", 1)
    assert len(secret) >= 32

    stored = every_stored_value()
    assert stored, "the scan read nothing"
    assert not [v for v in stored if api_key in v]
    assert not [v for v in stored if secret in v]
    # The public prefix is stored (that is how a key is found); only that.
    assert any(prefix in v for v in stored)


def test_a_revoked_key_is_refused_everywhere(account, api_key):
    from accounts.models import ApiKey

    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    task_id = submit(client)
    revoke_api_key(api_key=ApiKey.objects.get(account=account))

    assert_json_error(client.post(SUBMIT, {}, format="multipart"), 401, "invalid_api_key")
    assert_json_error(client.get("/api/account"), 401, "invalid_api_key")
    assert_json_error(client.get(f"/api/get/{task_id}"), 401, "invalid_api_key")


def test_a_key_cannot_see_another_accounts_task(api_client, account, other_account):
    _, other_key = create_api_key(account=other_account, name="other")
    other = APIClient()
    other.credentials(HTTP_X_API_KEY=other_key)
    their_task = submit(other)

    body = assert_json_error(api_client.get(f"/api/get/{their_task}"), 404, "task_not_found")
    assert "progress" not in body
    assert other.get(f"/api/get/{their_task}").status_code == 200


def test_task_ids_are_random_uuid4(api_client, account):
    ids = [submit(api_client) for _ in range(5)]
    assert len(set(ids)) == 5
    for task_id in ids:
        assert uuid.UUID(task_id).version == 4
        assert str(uuid.UUID(task_id)) == task_id


def test_an_unknown_or_malformed_task_id_is_a_json_404(api_client, account):
    for task_id in (str(uuid.uuid4()), "nope", "1", "' OR 1=1 --", "%00"):
        assert_json_error(api_client.get(f"/api/get/{task_id}"), 404)


# --- the download route, over real HTTP so nothing normalises the paths ----

SECRET_MARKERS = (b"SECRET_KEY", b"root:", b"\x89PNG", b"SQLite format", b"[extensions]")


@pytest.fixture
def finished_job(live_server, account) -> RemovalJob:
    upload = SimpleUploadedFile("cat.png", encode(photo("chelsea"), "PNG"))
    with mock.patch("removal.services.enqueue_job"):
        job = submitted_job(account, data=upload.read(), filename="cat.png")
    services.process_job(job_id=job.id)  # real u2netp
    job.refresh_from_db()
    assert job.status == RemovalJob.Status.COMPLETED, job.error
    return job


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
    with mock.patch("removal.services.enqueue_job"):
        return str(submitted_job(account, data=solid_png(), filename="a.png").id)
