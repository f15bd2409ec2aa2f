"""The OpenAPI schema describes every endpoint, and the live server keeps to it.

schemathesis generates requests from /api/schema/ (bounded: a few dozen
examples per operation, no deadline) and sends them over real HTTP to the
live test server; no answer may be a 5xx or break the schema (status code,
content type, headers, body).
"""

import socket
from urllib.parse import urlparse

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.images import solid_png

pytestmark = pytest.mark.e2e


@schemathesis.check
def no_server_error_but_a_missing_model(ctx, response, case):
    """No 5xx, except the documented 503 for a model whose weights this server lacks.

    The schema lists every model name; the fuzzer picks ones not installed here.
    """
    if response.status_code == 503:
        try:
            code = response.json().get("code")
        except ValueError:
            code = None
        if code == "model_unavailable":
            return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_server_error_but_a_missing_model,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def fuzz(live_server, *, headers: dict[str, str], max_examples: int) -> list[str]:
    """Runs every operation of the live schema; returns the operations run."""
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    operations = []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            derandomize=True,  # the same examples on every run: no flaky CI
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

        run()
    return operations


def test_every_operation_keeps_to_its_schema_with_a_key(live_server, account, api_key):
    operations = fuzz(live_server, headers={"x-api-key": api_key}, max_examples=40)
    # Six of ours, remove.bg's two and the batch door's three.
    assert len(operations) == 11, operations


def test_every_operation_keeps_to_its_schema_without_a_key(live_server, account):
    fuzz(live_server, headers={}, max_examples=10)


def test_the_schema_lists_every_endpoint_with_its_errors(client):
    import yaml

    document = yaml.safe_load(client.get("/api/schema/").content)
    paths = document["paths"]
    expected = {
        "/paid/image/remove/background": {
            "post": {"202", "400", "401", "402", "409", "413", "415", "429", "503"}
        },
        "/api/get/{task_id}": {"get": {"200", "400", "401", "404"}},
        "/output/{filename}": {"get": {"200", "404", "410"}},
        "/api/models": {"get": {"200"}},
        "/api/account": {"get": {"200", "401"}},
        "/api/usage": {"get": {"200", "400", "401"}},
    }
    for path, methods in expected.items():
        for method, codes in methods.items():
            assert codes <= set(paths[path][method]["responses"]), (path, method)
    assert paths["/output/{filename}"]["get"]["responses"]["200"]["content"].keys() == {
        "image/png",
        "image/jpeg",
        "image/webp",
        "application/zip",
        "image/avif",
    }
    assert document["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }
    assert client.get("/api/docs/").status_code == 200


def test_odd_header_spacing_over_a_raw_socket(live_server, account, api_key):
    """Extra blanks around header values and a header name in odd case."""
    boundary = "b0und4ry"
    data = solid_png()
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data;   name="file";  filename="a.png"\r\n'
        "Content-Type:image/png\r\n\r\n"
    ).encode()
    body += data + f"\r\n--{boundary}\r\n".encode()
    body += b'Content-Disposition: form-data; name="model"\r\n\r\nu2netp\r\n'
    body += f"--{boundary}--\r\n".encode()
    head = (
        "POST /paid/image/remove/background HTTP/1.1\r\n"
        f"Host:{urlparse(live_server.url).netloc}\r\n"
        f"X-API-KEY:    {api_key}   \r\n"
        f"Content-Type:   multipart/form-data;boundary={boundary}\r\n"
        f"Content-Length:  {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    url = urlparse(live_server.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line = reply.split(b"\r\n", 1)[0]
    assert b" 202 " in status_line, reply[:500]
    assert b'"task_id"' in reply
