"""Request ids, one JSON log line per request and per job, never a secret in them."""

import io
import json
import logging

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from pythonjsonlogger.json import JsonFormatter

from accounts.models import ApiKey
from removal.models import RemovalJob
from revid.observability import RequestIdFilter, door_of, request_id_from
from tests.conftest import wait_for
from tests.images import photo_bytes
from tests.speed import job_seconds, model_load_seconds

URL = "/paid/image/remove/background"


@pytest.fixture
def json_lines():
    """The lines the "revid.requests" logger writes with the configured JSON formatter."""
    config = dict(settings.LOGGING["formatters"]["json"])
    config.pop("()")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(**config))
    handler.addFilter(RequestIdFilter())
    request_logger = logging.getLogger("revid.requests")
    request_logger.addHandler(handler)
    request_logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    request_logger.removeHandler(handler)


def test_each_request_gets_an_id_and_a_client_id_that_looks_like_one_is_kept(anon_client):
    fresh = anon_client.get("/healthz")["X-Request-Id"]
    assert len(fresh) == 32
    assert anon_client.get("/healthz")["X-Request-Id"] != fresh
    kept = anon_client.get("/healthz", HTTP_X_REQUEST_ID="abc-123-def-456")
    assert kept["X-Request-Id"] == "abc-123-def-456"
    refused = anon_client.get("/healthz", HTTP_X_REQUEST_ID="<script>alert(1)</script>")
    assert refused["X-Request-Id"] != "<script>alert(1)</script>"
    assert request_id_from("x" * 65) != "x" * 65


def test_a_request_is_one_json_line_with_its_door_key_prefix_status_and_duration(
    api_client, api_key, account, json_lines
):
    response = api_client.post(
        URL,
        {"file": SimpleUploadedFile("a.gif", b"GIF89a" + b"\0" * 64)},
        HTTP_X_REQUEST_ID="req-0000-1111",
    )
    assert response.status_code == 415

    (line,) = [line for line in json_lines() if line.get("event") == "request"]
    assert line["request_id"] == "req-0000-1111"
    assert line["method"] == "POST" and line["path"] == URL and line["status"] == 415
    assert line["door"] == "api"
    assert line["key_prefix"] == ApiKey.objects.get(account=account).prefix
    assert line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["logger"] == "revid.requests" and line["time"]
    assert api_key not in json.dumps(line)


def test_doors_are_named_by_path():
    assert door_of("/v1.0/removebg") == "removebg"
    assert door_of("/api/get/x") == "api"
    assert door_of("/jobs/") == "web"


def test_json_logs_are_chosen_by_an_environment_variable():
    from tests.conftest import django_start_error

    assert "LOG_FORMAT must be text or json" in django_start_error({"LOG_FORMAT": "xml"})


@pytest.mark.e2e
@pytest.mark.model
def test_the_request_id_reaches_the_workers_json_line_for_the_job(
    api_client, api_key, start_worker
):
    worker = start_worker(LOG_FORMAT="json")
    response = api_client.post(
        URL,
        {"file": SimpleUploadedFile("astronaut.jpg", photo_bytes("astronaut")), "model": "u2netp"},
        HTTP_X_REQUEST_ID="carried-into-the-worker",
    )
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    wait_for(
        lambda: RemovalJob.objects.get(pk=task_id).is_finished,
        timeout=20 * job_seconds(photo_bytes("astronaut"), model="u2netp")
        + 10 * model_load_seconds("u2netp")
        + 30,
        message="the worker never finished the job",
    )

    def job_line():
        for text in worker.log().splitlines():
            if text.startswith("{") and '"event": "job"' in text:
                return json.loads(text)
        return None

    line = wait_for(job_line, timeout=10, message="no JSON line for the job")
    assert line["request_id"] == "carried-into-the-worker"
    assert line["task_id"] == task_id and line["status"] == "completed"
    assert line["door"] == "api" and line["model"] == "u2netp"
    assert line["key_prefix"] == RemovalJob.objects.get(pk=task_id).api_key.prefix
    assert line["stage_seconds"]["model"] > 0
    assert api_key not in worker.log()
