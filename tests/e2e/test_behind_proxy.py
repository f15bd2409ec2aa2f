"""Production settings behind a TLS-terminating proxy, as docs/deploy.md sets
them: `make serve` with SECURE_HTTPS=1 receives plain http from the proxy
with ``X-Forwarded-Proto: https``, and everything it hands out is https."""

import re

import pytest
import requests

from tests.conftest import CUSTOMER_PASSWORD
from tests.e2e.conftest import serve_process
from tests.job_factory import completed_job

pytestmark = [pytest.mark.e2e]

HOST = "api.example.com"
FROM_PROXY = {"Host": HOST, "X-Forwarded-Proto": "https"}


@pytest.fixture
def server(transactional_db, tmp_path):
    with serve_process(
        tmp_path,
        headers={"Host": HOST},  # the only host it serves
        WEB_CONCURRENCY="1",
        SECURE_HTTPS="1",
        ALLOWED_HOSTS=HOST,
        CSRF_TRUSTED_ORIGINS=f"https://{HOST}",
        SITE_URL=f"https://{HOST}",
    ) as (_process, url, _log):
        yield url


def test_results_links_and_headers_are_https_behind_the_proxy(server, account):
    job = completed_job(account)
    status = requests.get(f"{server}/api/get/{job.id}", headers=FROM_PROXY, timeout=10)
    assert status.status_code == 200, status.text
    assert status.json()["result"]["image_url"] == (f"https://{HOST}/output/{job.output_filename}")
    hsts = status.headers["Strict-Transport-Security"]
    assert hsts == "max-age=31536000; includeSubDomains; preload"

    # Plain http that did not come through the proxy's TLS is sent there.
    plain = requests.get(
        f"{server}/api/get/{job.id}", headers={"Host": HOST}, allow_redirects=False, timeout=10
    )
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://{HOST}/api/get/{job.id}"
    # The machines' probes are not redirected.
    probe = requests.get(f"{server}/healthz", headers={"Host": HOST}, timeout=10)
    assert probe.status_code == 200


def cookie(response: requests.Response, name: str):
    return next(item for item in response.cookies if item.name == name)


def test_cookies_are_secure_behind_the_proxy(server, alice):
    login_page = requests.get(f"{server}/accounts/login/", headers=FROM_PROXY, timeout=10)
    assert login_page.status_code == 200
    csrf_cookie = cookie(login_page, "csrftoken")
    assert csrf_cookie.secure  # a browser sends it back over https only

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text).group(1)
    logged_in = requests.post(
        f"{server}/accounts/login/",
        data={"username": "alice", "password": CUSTOMER_PASSWORD, "csrfmiddlewaretoken": token},
        # What the proxy passes on from the browser's https request.
        cookies={"csrftoken": csrf_cookie.value},
        headers={**FROM_PROXY, "Referer": f"https://{HOST}/accounts/login/"},
        allow_redirects=False,
        timeout=10,
    )
    assert logged_in.status_code == 302, logged_in.text[:500]
    session_cookie = cookie(logged_in, "sessionid")
    assert session_cookie.secure
    assert session_cookie.has_nonstandard_attr("HttpOnly")
