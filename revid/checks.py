"""Deployment checks of our own settings, run by `manage.py check --deploy`."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def site_url_matches_tls(app_configs, **kwargs) -> list[Warning]:
    """Webhook payloads carry absolute URLs built from SITE_URL (there is no
    request to take the scheme from): behind TLS it must be https too."""
    if settings.SECURE_HTTPS and not settings.SITE_URL.startswith("https://"):
        return [
            Warning(
                f"SITE_URL is {settings.SITE_URL!r} while SECURE_HTTPS is on: webhook "
                "payloads would link results over plain http.",
                hint="Set SITE_URL to the public https address, e.g. https://api.example.com.",
                id="revid.W001",
            )
        ]
    return []
