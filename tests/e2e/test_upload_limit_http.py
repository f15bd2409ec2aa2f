"""Over real HTTP, an upload over MAX_UPLOAD_BYTES is answered 413 at once, uncharged."""

import pytest
import requests

from tests.removal.helpers import assert_nothing_charged

pytestmark = pytest.mark.e2e


def test_a_30_mb_upload_gets_a_json_413_and_no_charge(live_server, account, api_key):
    data = b"\x89PNG\r\n\x1a\n" + b"\0" * (30 * 1024 * 1024)
    response = requests.post(
        f"{live_server.url}/paid/image/remove/background",
        headers={"x-api-key": api_key},
        files={"file": ("big.png", data, "image/png")},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json() == {
        "success": False,
        "error": "File too large: 30.0 MB; the limit is 20.0 MB.",
        "code": "file_too_large",
    }
    assert_nothing_charged(account, balance=1000)
