from accounts.models import Account
from removal.models import RemovalJob
from webhooks.models import WebhookDelivery, WebhookEvent, WebhookSettings


def deliveries_for_job(*, job: RemovalJob) -> list[WebhookDelivery]:
    """Every attempt for the job's events, newest first."""
    return list(
        WebhookDelivery.objects.filter(event__job=job)
        .select_related("event")
        .order_by("-created_at", "-attempt")
    )


def event_for_job(*, job: RemovalJob, event_id: str) -> WebhookEvent | None:
    return WebhookEvent.objects.filter(job=job, pk=event_id).first()


def webhook_url_for(*, account: Account) -> str:
    """The account's default webhook URL, or "" (used when a request names none)."""
    url = WebhookSettings.objects.filter(account=account).values_list("url", flat=True).first()
    return url or ""
