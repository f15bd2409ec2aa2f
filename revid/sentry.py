"""Optional error reporting to Sentry (or a service that speaks its protocol).

Started from the settings only when SENTRY_DSN is set, so a deployment
without it sends nothing anywhere and needs no account.
"""

from django.core.exceptions import ImproperlyConfigured


def init_sentry(*, dsn: str, environment: str, traces_sample_rate: float) -> None:
    """Reports unhandled errors of web requests and of django-q2 tasks.

    django-q2 workers catch a task's exception to record it, so Django's
    integration alone never sees them; the logging integration does, from
    the ERROR django-q2 logs for a failed task.
    """
    try:
        import sentry_sdk
        from sentry_sdk.integrations.django import DjangoIntegration
        from sentry_sdk.integrations.logging import LoggingIntegration
    except ImportError:
        raise ImproperlyConfigured("SENTRY_DSN is set but sentry-sdk is not installed") from None
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), LoggingIntegration(event_level="ERROR")],
        traces_sample_rate=traces_sample_rate,
        # Customers' images, API keys and email addresses stay out of reports.
        send_default_pii=False,
        max_request_body_size="never",
    )
