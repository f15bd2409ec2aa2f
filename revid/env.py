"""Reading settings from the environment: helpers that fail loudly on a
malformed value instead of silently falling back (as healthchecks.io's do)."""

import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {number}")
    return number


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_networks(name: str) -> list[str]:
    import ipaddress

    networks = env_list(name, "")
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must be comma-separated networks in CIDR form "
                f"(e.g. 10.0.0.0/8,fd00::/8), got {network!r}"
            ) from None
    return networks


def s3_storage(environ: Mapping[str, str]) -> dict | None:
    """The S3-compatible default storage that ``environ`` asks for, or None.

    A function (not inline) so a test can configure its own process exactly
    as the worker processes it starts are configured from their environment.
    """
    bucket = environ.get("AWS_STORAGE_BUCKET_NAME", "")
    if not bucket:
        return None
    addressing_style = environ.get("AWS_S3_ADDRESSING_STYLE", "auto") or "auto"
    if addressing_style not in ("auto", "path", "virtual"):
        raise ImproperlyConfigured(
            f"AWS_S3_ADDRESSING_STYLE must be auto, path or virtual, got {addressing_style!r}"
        )
    from botocore.config import Config

    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": environ.get("AWS_S3_REGION_NAME") or None,
            # Unset keys fall back to boto3's own chain (instance or pod role).
            "access_key": environ.get("AWS_ACCESS_KEY_ID") or None,
            "secret_key": environ.get("AWS_SECRET_ACCESS_KEY") or None,
            "location": environ.get("AWS_LOCATION", "").strip("/"),
            # Inputs and outputs are private: no public ACL, and every URL
            # the storage makes is signed and short-lived.
            "default_acl": None,
            "querystring_auth": True,
            # Presigned download URLs live OUTPUT_URL_EXPIRE_SECONDS.
            "querystring_expire": int(environ.get("OUTPUT_URL_EXPIRE_SECONDS") or 300),
            # Names are job UUIDs; a second write of the same name is the
            # same job's retry and may replace the first.
            "file_overwrite": True,
            # django-storages ignores its own addressing_style and
            # signature_version options once a client config is given.
            "client_config": Config(
                s3={"addressing_style": addressing_style},
                signature_version="s3v4",
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        },
    }
