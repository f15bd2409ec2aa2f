"""The web upload page and the JSON endpoints its script calls.

These views parse and format only: accepting an upload is
``services.submit_job`` (the same validation, charge and refund as the
API); several photos at once are a batch, checked by
``batch_submissions.build_web_batch_request`` and charged in one
transaction by ``batches.submit_batch``, like the batch API's. The JSON
endpoints authenticate with the login session and Django's CSRF check
instead of an API key, and only ever show the owner's jobs (a batch's
status and ZIP are the batch API's, found by the batch's unguessable id).
An ``ApplicationError`` raised here becomes the JSON error in one place
(``revid.errors.ApplicationErrorMiddleware``).
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.guards import account_required
from accounts.models import Account
from doors.option_fields import web_panel
from doors.uploads import raise_if_upload_refused
from imaging.formats import INPUT_CONTENT_TYPES, SUPPORTED_NAMES
from imaging.options import WEB, summarize
from removal import (
    batch_submissions,
    batches,
    downloads,
    selectors,
    serializers,
    services,
    submissions,
    waiting,
)
from removal.models import RemovalJob
from removal.submissions import Fields
from revid.errors import ApplicationError
from webhooks.selectors import webhook_url_for


class JobNotFound(ApplicationError):
    status_code = 404
    code = "task_not_found"

    def __init__(self):
        super().__init__("This job does not exist in your account.")


def default_model_choice(catalogue: list[dict]) -> str | None:
    """The default model if it is installed, else the first one that is."""
    available = [model["name"] for model in catalogue if model["available"]]
    if settings.REMOVAL_DEFAULT_MODEL in available:
        return settings.REMOVAL_DEFAULT_MODEL
    return available[0] if available else None


@require_GET
@account_required(title="Remove a background")
def upload_page(request: HttpRequest) -> HttpResponse:
    catalogue = selectors.model_catalogue()
    return render(
        request,
        "removal/upload.html",
        {
            "account": request.account,
            "models": catalogue,
            "default_model": default_model_choice(catalogue),
            "price": settings.REMOVAL_PRICE_CREDITS,
            "max_upload_mb": round(settings.MAX_UPLOAD_BYTES / 1048576),
            "batch_max_items": settings.BATCH_MAX_ITEMS,
            "accepted_types": ",".join(INPUT_CONTENT_TYPES.values()),
            "supported_names": SUPPORTED_NAMES.upper(),
            "options_panel": web_panel(),
        },
    )


@require_GET
@account_required(title="Job")
def job_page(request: HttpRequest, task_id: str) -> HttpResponse:
    job = selectors.get_job(task_id=task_id, account=request.account)
    if job is None:
        return render(request, "removal/job_missing.html", status=404)
    return render(request, "removal/job.html", {"account": request.account, "job": job})


@require_POST
@account_required(answer="json")
def submit_upload(request: HttpRequest) -> JsonResponse:
    """Accepts the upload form (the file and the same option fields as the API);
    answers 202 with the job, or the error."""
    account = request.account
    raise_if_upload_refused(request)
    submission = submissions.seed_request(
        account=account,
        fields=Fields(request.POST, request.FILES),
        idempotency_key=request.headers.get("Idempotency-Key"),
        default_webhook_url=webhook_url_for(account=account),
        origin=RemovalJob.Origin.WEB,
        door=WEB,
    )
    job = services.submit_job(account=account, request=submission)
    account.refresh_from_db(fields=["credit_balance"])
    return JsonResponse(job_payload(job, request=request, account=account), status=202)


@require_POST
@account_required(answer="json")
def submit_batch_upload(request: HttpRequest) -> JsonResponse:
    """Several photos from the upload form (repeated ``files`` parts and the
    same option fields): one batch, charged once; answers 202 with the batch's
    status (each item's task id or refusal, the status and ZIP endpoints of the
    batch API, which the page then polls) and the balance."""
    account = request.account
    # Parse the body first (the CSRF check usually has), so a photo the size
    # guard cut off is known before anything else is read.
    uploads = request.FILES.getlist("files")
    raise_if_upload_refused(request)
    batch_request = batch_submissions.build_web_batch_request(
        fields=Fields(request.POST, request.FILES),
        uploads=uploads,
        idempotency_key=request.headers.get("Idempotency-Key"),
        default_webhook_url=webhook_url_for(account=account),
    )
    batch = batches.submit_batch(account=account, request=batch_request)
    account.refresh_from_db(fields=["credit_balance"])
    payload = serializers.batch_status_payload(
        batch, counts=batches.batch_counts(batch=batch), request=request
    )
    payload.update(
        charged_credits=batch.item_count * settings.REMOVAL_PRICE_CREDITS,
        balance=account.credit_balance,
    )
    return JsonResponse(payload, status=202)


@require_GET
@account_required(answer="json")
def job_status(request: HttpRequest, task_id: str) -> JsonResponse:
    wait = waiting.parse_wait(request.GET.get("wait"))
    account = request.account
    job = selectors.get_job(task_id=task_id, account=account)
    if job is None:
        raise JobNotFound()
    if wait and not job.is_finished:
        job = waiting.wait_then_reload(job, timeout=wait)
        account.refresh_from_db(fields=["credit_balance"])
    return JsonResponse(job_payload(job, request=request, account=account))


@require_GET
@account_required(answer="json")
def job_input(request: HttpRequest, task_id: str) -> HttpResponse:
    """The uploaded photo, for its owner only (the 'before' picture)."""
    job = selectors.get_job(task_id=task_id, account=request.account)
    if job is None:
        raise JobNotFound()
    return downloads.input_response(job)


def job_payload(job: RemovalJob, *, request: HttpRequest, account: Account) -> dict:
    """The API's status JSON plus what the page shows: image links and the balance."""
    payload = serializers.task_status_payload(job, request=request)
    payload.update(
        task_id=str(job.id),
        model=job.model_name,
        original_filename=job.original_filename,
        width=job.width,
        height=job.height,
        input_size=job.input_size,
        output_size=job.output_size,
        elapsed_seconds=job.elapsed_seconds,
        error=job.error,
        expired=job.is_expired,
        status_url=reverse("web-job-status", args=[job.id]),
        page_url=reverse("web-job", args=[job.id]),
        input_url=reverse("web-job-input", args=[job.id]) if job.has_live_input else None,
        output_url=serializers.download_path(job) if job.has_live_output else None,
        output_filename=job.output_filename,
        output_format=job.output_format,
        options_summary=summarize(options=job.options, output_format=job.output_format),
        balance=account.credit_balance,
    )
    return payload
