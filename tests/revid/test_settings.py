"""Settings read from the environment: S3 storage, the download mode, the local .env."""

import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from revid.settings import s3_storage
from tests.conftest import django_start_error, run_with_settings


def test_there_is_no_s3_storage_without_a_bucket():
    assert s3_storage({}) is None
    assert s3_storage({"AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000"}) is None


def test_a_bucket_selects_private_s3_storage_with_its_settings():
    storage = s3_storage(
        {
            "AWS_STORAGE_BUCKET_NAME": "revid-files",
            "AWS_S3_ENDPOINT_URL": "https://s3.example.com",
            "AWS_S3_REGION_NAME": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "key-id",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_S3_ADDRESSING_STYLE": "path",
            "AWS_LOCATION": "/revid/",
        }
    )
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    options = storage["OPTIONS"]
    assert options["bucket_name"] == "revid-files"
    assert options["endpoint_url"] == "https://s3.example.com"
    assert options["region_name"] == "eu-west-1"
    assert (options["access_key"], options["secret_key"]) == ("key-id", "secret")
    assert options["location"] == "revid"
    assert options["default_acl"] is None
    assert options["querystring_auth"] is True
    assert options["client_config"].s3 == {"addressing_style": "path"}
    assert options["client_config"].signature_version == "s3v4"


def test_missing_keys_are_left_to_boto3s_own_credential_chain():
    options = s3_storage({"AWS_STORAGE_BUCKET_NAME": "revid-files"})["OPTIONS"]
    assert options["access_key"] is None
    assert options["secret_key"] is None
    assert options["endpoint_url"] is None


def test_it_refuses_an_unknown_addressing_style():
    with pytest.raises(ImproperlyConfigured, match="AWS_S3_ADDRESSING_STYLE"):
        s3_storage({"AWS_STORAGE_BUCKET_NAME": "b", "AWS_S3_ADDRESSING_STYLE": "sideways"})


def test_redirecting_downloads_without_a_bucket_fails_loudly_at_start():
    stderr = django_start_error({"OUTPUT_REDIRECT_TO_STORAGE": "1"})
    assert "OUTPUT_REDIRECT_TO_STORAGE needs S3 storage" in stderr


def settings_in_a_subprocess(
    env: dict[str, str],
    fields: str = "{'DEBUG': settings.DEBUG, 'SECRET_KEY': settings.SECRET_KEY}",
) -> dict:
    """``fields`` (a Python expression over ``settings``) as Django sees them under ``env``."""
    script = (
        "import json, django; from django.conf import settings; django.setup(); "
        f"print(json.dumps({fields}))"
    )
    result = run_with_settings(script, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_local_env_file_fills_in_what_the_environment_does_not_set(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DJANGO_DEBUG=1\nSECRET_KEY=from-the-env-file\n")
    assert settings_in_a_subprocess({"ENV_FILE": str(env_file)}) == {
        "DEBUG": True,
        "SECRET_KEY": "from-the-env-file",
    }


def test_real_environment_variables_win_over_the_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DJANGO_DEBUG=1\nSECRET_KEY=from-the-env-file\n")
    seen = settings_in_a_subprocess(
        {"ENV_FILE": str(env_file), "DJANGO_DEBUG": "0", "SECRET_KEY": "from-production"}
    )
    assert seen == {"DEBUG": False, "SECRET_KEY": "from-production"}


def test_an_unknown_model_engine_fails_loudly_at_start():
    stderr = django_start_error({"MODEL_ENGINE": "tensorrt"})
    assert "MODEL_ENGINE must be openvino or openvino-bf16 or onnxruntime, got 'tensorrt'" in stderr


def test_the_default_engine_is_openvino_in_fp32_and_onnxruntime_one_setting_away():
    fields = "{'MODEL_ENGINE': settings.MODEL_ENGINE}"
    assert settings_in_a_subprocess({}, fields) == {"MODEL_ENGINE": "openvino"}
    assert settings_in_a_subprocess({"MODEL_ENGINE": "onnxruntime"}, fields) == {
        "MODEL_ENGINE": "onnxruntime"
    }


DATABASE_FIELDS = (
    "{k: settings.DATABASES['default'][k] for k in ('CONN_MAX_AGE', 'CONN_HEALTH_CHECKS')}"
)


@pytest.mark.parametrize(
    "database_url", ["", "postgres://postgres@127.0.0.1:5432/revid"], ids=["sqlite", "postgres"]
)
def test_database_connections_are_kept_between_requests_and_checked_before_reuse(database_url):
    # A new connection per request cost 2-5 ms on PostgreSQL, 6 on SQLite
    # (its PRAGMAs): bench/notes.md, "Per-job overhead".
    env = {"DATABASE_URL": database_url} if database_url else {}

    kept = settings_in_a_subprocess(env, DATABASE_FIELDS)
    per_request = settings_in_a_subprocess({**env, "DB_CONN_MAX_AGE": "0"}, DATABASE_FIELDS)

    assert kept == {"CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True}
    assert per_request["CONN_MAX_AGE"] == 0


PUBLIC_URLS = (
    "print(settings.PUBLIC_BASE_URL, settings.SITE_URL, 'bg.example.com' in settings.ALLOWED_HOSTS)"
)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, " http://127.0.0.1:8000 False"),
        # `make run PORT=8010` sets SITE_URL; request URLs follow their Host.
        ({"SITE_URL": "http://127.0.0.1:8010/"}, " http://127.0.0.1:8010 False"),
        (
            {"PUBLIC_BASE_URL": "https://bg.example.com/", "SITE_URL": "http://127.0.0.1:8010"},
            "https://bg.example.com https://bg.example.com True",
        ),
    ],
    ids=["default", "site-url", "public-base-url"],
)
def test_the_public_base_url_wins_over_site_url_and_is_an_allowed_host(env, expected):
    result = run_with_settings(
        f"import django; django.setup(); from django.conf import settings; {PUBLIC_URLS}",
        {"DJANGO_DEBUG": "1", **env},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip("\n") == expected


@pytest.mark.parametrize(
    "url", ["bg.example.com", "ftp://bg.example.com", "https://bg.example.com/api"]
)
def test_a_malformed_public_base_url_fails_loudly_at_start(url):
    assert "PUBLIC_BASE_URL must be a scheme and a host" in django_start_error(
        {"PUBLIC_BASE_URL": url}
    )
