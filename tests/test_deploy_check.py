"""Production settings pass Django's deployment checklist; development stays on http."""

import secrets
import subprocess
import sys

from tests.conftest import ROOT


def deploy_check(**env: str) -> subprocess.CompletedProcess:
    import os

    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SECURE_", "DJANGO_", "SECRET_KEY", "ALLOWED_HOSTS"))
    }
    # A production machine has no development .env (make setup writes one).
    environment["ENV_FILE"] = ""
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def production_env(**extra: str) -> dict[str, str]:
    return {
        "DJANGO_DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "api.example.com",
        **extra,
    }


def test_check_deploy_is_clean_with_production_settings_behind_tls():
    result = deploy_check(**production_env(SECURE_HTTPS="1", SITE_URL="https://api.example.com"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_an_http_site_url_behind_tls():
    # Webhook payloads' image_url is built from SITE_URL, not from a request.
    result = deploy_check(**production_env(SECURE_HTTPS="1"))
    assert result.returncode != 0
    assert "revid.W001" in result.stdout + result.stderr


def test_check_deploy_flags_a_deployment_that_does_not_say_it_is_behind_tls():
    result = deploy_check(**production_env())
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = deploy_check(DJANGO_DEBUG="0", SECURE_HTTPS="1")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_security_headers_are_sent_on_plain_http(client):
    response = client.get("/api/models")
    assert response.status_code == 200  # no redirect to https: `make run` works on http
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response


def test_hsts_and_the_https_redirect_follow_secure_https(settings):
    from django.test import Client

    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    client = Client()
    assert client.get("/api/models").status_code == 301
    secure = client.get("/api/models", secure=True)
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
