"""The seed API's other image sources over HTTP: image_file_b64, and
image_url through the safe fetcher with its SSRF battery.

Every refusal is checked to come before the charge; image_url refusals
also before any connection to an internal address.
"""

import base64
import ipaddress
import socket

import pytest

from removal.models import RemovalJob
from tests.doors.seed_requests import PHOTO, assert_refused, default_png, post, run

pytestmark = [pytest.mark.model]


@pytest.fixture
def client(api_client, inline_worker):
    """The API client, with jobs run at once in this process."""
    return api_client


# --- Other sources: image_file_b64 ---------------------------------------------------


def test_image_file_b64_is_accepted(client):
    """Each form of base64 a client may send is decoded in test_submissions.py."""
    encoded = "data:image/jpeg;base64," + base64.b64encode(PHOTO).decode()
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
    "http://loopback.example/",  # resolves to 127.0.0.1 (fake DNS)
    "http://mixed.example/",  # one public address and one internal one
    "file:///etc/passwd",
    "gopher://127.0.0.1/",
    "ftp://10.0.0.1/image.jpg",
]


@pytest.mark.parametrize("url", SSRF_URLS)
def test_internal_addresses_are_refused_before_any_charge_or_connection(
    client, account, settings, fake_dns, connections, url
):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    fake_dns.answer("loopback.example", ["127.0.0.1"])
    fake_dns.answer("mixed.example", ["93.184.216.34", "10.0.0.1"])
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
