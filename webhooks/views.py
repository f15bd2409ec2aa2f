"""The customer's webhook pages: the dashboard's settings section (URL,
secret, rotate) and the job page's "resend". Each calls a service and
redirects back with a message (post/redirect/get)."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.guards import account_required
from removal.selectors import get_job
from revid.errors import ApplicationError
from webhooks import selectors, services


def _dashboard_section() -> HttpResponse:
    return redirect(reverse("dashboard") + "#webhooks")


@require_POST
@account_required(answer="message")
def save_settings(request: HttpRequest) -> HttpResponse:
    try:
        webhook_settings = services.set_webhook_url(
            account=request.account, url=request.POST.get("url", "")
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        if webhook_settings.url:
            messages.success(request, f"Webhooks will be sent to {webhook_settings.url}.")
        else:
            messages.info(
                request,
                "No default webhook URL: webhooks are sent only to "
                "requests that name a webhook_url.",
            )
    return _dashboard_section()


@require_POST
@account_required(answer="message")
def rotate_secret(request: HttpRequest) -> HttpResponse:
    services.rotate_secret(account=request.account)
    messages.success(
        request,
        "New signing secret made. The previous one keeps signing too for 24 hours, "
        "so switch your receiver to the new one before then.",
    )
    return _dashboard_section()


@require_POST
@account_required(answer="message")
def resend_event(request: HttpRequest, task_id, event_id: str) -> HttpResponse:
    job = get_job(task_id=str(task_id), account=request.account)
    event = selectors.event_for_job(job=job, event_id=event_id) if job else None
    if event is None:
        messages.error(request, "That webhook event does not exist in your account.")
        return redirect("dashboard")
    services.resend(event=event)
    messages.success(request, f"Sending {event.type} again now.")
    return redirect(reverse("web-job", args=[job.id]) + "#webhooks")
