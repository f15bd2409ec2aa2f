"""The web upload page and the JSON endpoints its script calls.

These views parse and format only: accepting an upload is
``services.submit_job`` (the same validation, charge and refund as the
API). The JSON endpoints authenticate with the login session and Django's
CSRF check instead of an API key, and only ever show the owner's jobs.
"""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Account
from accounts.selectors import account_for_user
from imaging.formats import INPUT_CONTENT_TYPES, SUPPORTED_NAMES
from imaging.options import WEB, summarize
from removal import downloads, selectors, serializers, services, submissions, waiting
from removal.models import RemovalJob
from removal.option_fields import web_panel
from removal.submissions import Fields
from removal.uploads import raise_if_upload_refused
from revid.errors import ApplicationError, error_response

NO_ACCOUNT_MESSAGE = (
    "Your login is not linked to a customer account yet; ask an administrator to add you to one."
)


def _session_account(request: HttpRequest) -> Account | None:
    if not request.user.is_authenticated:
        return None
    return account_for_user(user=request.user)


def _json_login_required(request: HttpRequest) -> JsonResponse | None:
    """A script gets a JSON answer, not the login page's HTML, when signed out."""
    if not request.user.is_authenticated:
        return error_response("Your session has ended; log in again.", "login_required", 401)
    if account_for_user(user=request.user) is None:
        return error_response(NO_ACCOUNT_MESSAGE, "no_account", 403)
    return None


def default_model_choice(catalogue: list[dict]) -> str | None:
    """The default model if it is installed, else the first one that is."""
    available = [model["name"] for model in catalogue if model["available"]]
    if settings.REMOVAL_DEFAULT_MODEL in available:
        return settings.REMOVAL_DEFAULT_MODEL
    return available[0] if available else None


@login_required
@require_GET
def upload_page(request: HttpRequest) -> HttpResponse:
    catalogue = selectors.model_catalogue()
    return render(
        request,
        "removal/upload.html",
        {
            "account": _session_account(request),
            "no_account_message": NO_ACCOUNT_MESSAGE,
            "models": catalogue,
            "default_model": default_model_choice(catalogue),
            "price": settings.REMOVAL_PRICE_CREDITS,
            "max_upload_mb": round(settings.MAX_UPLOAD_BYTES / 1048576),
            "accepted_types": ",".join(INPUT_CONTENT_TYPES.values()),
            "supported_names": SUPPORTED_NAMES.upper(),
            "options_panel": web_panel(),
        },
    )


@login_required
@require_GET
def job_page(request: HttpRequest, task_id: str) -> HttpResponse:
    account = _session_account(request)
    job = selectors.get_job(task_id=task_id, account=account) if account else None
    if job is None:
        return render(request, "removal/job_missing.html", status=404)
    return render(request, "removal/job.html", {"account": account, "job": job})


@require_POST
def submit_upload(request: HttpRequest) -> JsonResponse:
    """Accepts the upload form (the file and the same option fields as the API);
    answers 202 with the job, or the error."""
    refusal = _json_login_required(request)
    if refusal is not None:
        return refusal
    account = _session_account(request)
    try:
        raise_if_upload_refused(request)
        submission = submissions.seed_request(
            account=account,
            fields=Fields(request.POST, request.FILES),
            idempotency_key=request.headers.get("Idempotency-Key"),
            origin=RemovalJob.Origin.WEB,
            door=WEB,
        )
        job = services.submit_job(account=account, request=submission)
    except ApplicationError as exc:
        return error_response(exc.message, exc.code, exc.status_code)
    account.refresh_from_db(fields=["credit_balance"])
    return JsonResponse(job_payload(job, request=request, account=account), status=202)


@require_GET
def job_status(request: HttpRequest, task_id: str) -> JsonResponse:
    refusal = _json_login_required(request)
    if refusal is not None:
        return refusal
    try:
        wait = waiting.parse_wait(request.GET.get("wait"))
    except ApplicationError as exc:
        return error_response(exc.message, exc.code, exc.status_code)
    account = _session_account(request)
    job = selectors.get_job(task_id=task_id, account=account)
    if job is None:
        return error_response("This job does not exist in your account.", "task_not_found", 404)
    if wait and not job.is_finished:
        waiting.wait_for_job(job_id=job.id, timeout=wait)
        job.refresh_from_db()
        account.refresh_from_db(fields=["credit_balance"])
    return JsonResponse(job_payload(job, request=request, account=account))


@login_required
@require_GET
def job_input(request: HttpRequest, task_id: str) -> HttpResponse:
    """The uploaded photo, for its owner only (the 'before' picture)."""
    account = _session_account(request)
    job = selectors.get_job(task_id=task_id, account=account) if account else None
    if job is None:
        return error_response("This job does not exist in your account.", "task_not_found", 404)
    try:
        return downloads.input_response(job)
    except ApplicationError as exc:
        return error_response(exc.message, exc.code, exc.status_code)


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
