"""The remove.bg dialect: ``POST /v1.0/removebg`` and ``GET /v1.0/account``.

A team moving off remove.bg changes only the base URL and the key in its
client. The request is read into the same ``RemovalRequest`` as every
other door (``submissions``), charged and queued by the same services,
processed by the same worker; this door then waits for the job's end (a
notification, not a database loop: ``waiting``) and answers as remove.bg
does: the image's bytes with its headers, or ``{"data": {...}}`` with
``Accept: application/json``, or ``{"errors": [...]}``.
"""

from __future__ import annotations

import base64
import math
import time

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from doors.common import IgnoreAcceptHeader
from doors.option_fields import input_serializer
from doors.throttling import SubmissionRateThrottle
from doors.uploads import raise_if_upload_refused
from imaging.formats import CONTENT_TYPES
from imaging.options import REMOVEBG, OutputOptions
from removal import downloads, registry, services, submissions, waiting
from removal.models import RemovalJob
from removal.submissions import Fields, InvalidOption
from revid.errors import ApplicationError
from revid.parsers import API_PARSERS
from webhooks.selectors import webhook_url_for

# remove.bg's ``type`` to our models: the first one installed here wins.
# ``auto`` and the types without a model of their own use the default model.
TYPE_MODELS: dict[str, tuple[str, ...]] = {
    "auto": (),
    "person": ("u2net_human_seg",),
    "product": ("isnet-general-use",),
    "car": (),
    "animal": (),
    "graphic": ("isnet-general-use",),
    "transportation": (),
}
TYPE_LEVELS = ("none", "latest", "1", "2")


class UnsupportedOption(ApplicationError):
    code = "unsupported_option"


def model_for_type(fields: Fields) -> tuple[str, str]:
    """(remove.bg type, our model name); our own ``model`` field wins over ``type``."""
    type_name = (fields.text("type") or "auto").lower()
    if type_name not in TYPE_MODELS:
        raise InvalidOption(
            f"type must be one of {', '.join(TYPE_MODELS)}; got {type_name[:40]!r}.",
            field_name="type",
        )
    model = fields.text("model")
    if model is None:
        preferred = [name for name in TYPE_MODELS[type_name] if registry.is_available(name)]
        model = preferred[0] if preferred else settings.REMOVAL_DEFAULT_MODEL
    return type_name, model


def refuse_what_cannot_be_honoured(fields: Fields) -> None:
    """remove.bg options we do not build: a clear 400 rather than a silent default."""
    if fields.has("bg_image_url") or fields.has("bg_image_file"):
        raise UnsupportedOption(
            "bg_image_url and bg_image_file are not supported by this server; use bg_color "
            "for a plain background."
        )
    if fields.value("add_shadow") is not None and submissions.flag(fields, "add_shadow"):
        raise UnsupportedOption("add_shadow=true is not supported by this server.")
    if fields.value("semitransparency") is not None and not submissions.flag(
        fields, "semitransparency"
    ):
        raise UnsupportedOption(
            "semitransparency=false is not supported by this server: its cut-outs keep the "
            "soft edges the model finds."
        )
    type_level = fields.text("type_level")
    if type_level is not None and type_level.lower() not in TYPE_LEVELS:
        raise InvalidOption(
            f"type_level must be one of {', '.join(TYPE_LEVELS)}.", field_name="type_level"
        )


def parse_options(fields: Fields) -> OutputOptions:
    """remove.bg's options, read by the option table (its defaults: size=preview, format=auto)."""
    refuse_what_cannot_be_honoured(fields)
    return submissions.parse_options(fields, door=REMOVEBG)


def removebg_request(
    *, account, fields: Fields, idempotency_key: str | None, default_webhook_url: str = ""
):
    """A submission to ``/v1.0/removebg``, validated (the options by the table)."""
    _, model = model_for_type(fields)
    refuse_what_cannot_be_honoured(fields)
    return submissions.build_request(
        account=account,
        fields=fields,
        door=REMOVEBG,
        model_name=model,
        idempotency_key=idempotency_key,
        webhook_url=fields.text("webhook_url"),
        default_webhook_url=default_webhook_url,
        origin=RemovalJob.Origin.REMOVEBG,
        upload_field="image_file",
    )


def wait_for_end(job: RemovalJob) -> RemovalJob:
    """Waits until the job has ended, failing it (refunded) if no worker starts it in time.

    A job that started is bounded by REMOVAL_JOB_TIMEOUT (plus the reaper's
    grace for a worker that died). One no worker has taken within
    REMOVEBG_QUEUE_WAIT_SECONDS is failed and refunded rather than left
    for a client that has stopped waiting.
    """
    queue_deadline = time.monotonic() + settings.REMOVEBG_QUEUE_WAIT_SECONDS
    run_bound = settings.REMOVAL_JOB_TIMEOUT + settings.REMOVAL_STALE_GRACE
    run_deadline = None
    job.refresh_from_db()
    while not job.is_finished:
        now = time.monotonic()
        if job.status == RemovalJob.Status.PENDING and now >= queue_deadline:
            services.fail_job(job=job, error=services.QUEUE_TIMEOUT_ERROR)
            job.refresh_from_db()  # failed now, or taken by a worker just in time
            continue
        if job.status == RemovalJob.Status.PROCESSING and run_deadline is None:
            run_deadline = now + run_bound
        deadline = run_deadline if run_deadline is not None else queue_deadline
        if now >= deadline:
            # Its worker is gone; the reaper fails and refunds it shortly.
            return job
        job = waiting.wait_then_reload(job, timeout=min(deadline - now, 5.0))
    return job


def rate_limit_headers(request: Request) -> dict[str, str]:
    state = getattr(request._request, "submission_rate", None)
    if state is None:
        return {}
    return {
        "X-RateLimit-Limit": str(state.limit),
        "X-RateLimit-Remaining": str(state.remaining),
        "X-RateLimit-Reset": str(math.ceil(state.reset_at)),
    }


def result_response(request: Request, job: RemovalJob, type_name: str) -> HttpResponse:
    data = downloads.output_bytes(job)
    foreground = job.foreground or {"top": 0, "left": 0, "width": 0, "height": 0}
    headers = {
        "X-Type": "other" if type_name == "auto" else type_name,
        "X-Model": job.model_name,
        "X-Width": str(job.output_width),
        "X-Height": str(job.output_height),
        "X-Credits-Charged": str(settings.REMOVAL_PRICE_CREDITS),
        "X-Foreground-Top": str(foreground["top"]),
        "X-Foreground-Left": str(foreground["left"]),
        "X-Foreground-Width": str(foreground["width"]),
        "X-Foreground-Height": str(foreground["height"]),
        "X-Task-Id": str(job.id),
        **rate_limit_headers(request),
    }
    if "application/json" in request.headers.get("Accept", ""):
        response = JsonResponse(
            {
                "data": {
                    "result_b64": base64.b64encode(data).decode("ascii"),
                    "foreground_top": foreground["top"],
                    "foreground_left": foreground["left"],
                    "foreground_width": foreground["width"],
                    "foreground_height": foreground["height"],
                }
            }
        )
    else:
        response = HttpResponse(data, content_type=CONTENT_TYPES[job.output_format])
        response["Content-Disposition"] = f'inline; filename="{job.output_filename}"'
    for name, value in headers.items():
        response[name] = value
    return response


RemoveBgInputSerializer = input_serializer(
    REMOVEBG,
    name="RemoveBgInputSerializer",
    doc="remove.bg's parameters, as its API reference names them (for the schema).",
    fields={
        "image_file": serializers.FileField(required=False),
        "image_file_b64": serializers.CharField(required=False),
        "image_url": serializers.URLField(required=False),
        "type": serializers.ChoiceField(choices=list(TYPE_MODELS), required=False),
        "type_level": serializers.ChoiceField(choices=list(TYPE_LEVELS), required=False),
        "add_shadow": serializers.BooleanField(required=False, help_text="Only false is supported"),
        "semitransparency": serializers.BooleanField(
            required=False, help_text="Only true is supported"
        ),
        "model": serializers.ChoiceField(
            choices=list(registry.MODELS), required=False, help_text="Our extension: the model"
        ),
        "webhook_url": serializers.URLField(required=False, help_text="Our extension"),
    },
)


class RemoveBgErrorSerializer(serializers.Serializer):
    class Item(serializers.Serializer):
        title = serializers.CharField()
        code = serializers.CharField()
        detail = serializers.CharField()

    errors = Item(many=True)


class RemoveBgApi(APIView):
    throttle_classes = [SubmissionRateThrottle]
    parser_classes = API_PARSERS
    # The answer is the image (or remove.bg's JSON) whatever the client accepts.
    content_negotiation_class = IgnoreAcceptHeader

    @extend_schema(
        operation_id="removebg",
        tags=["remove.bg"],
        request={
            "multipart/form-data": RemoveBgInputSerializer,
            "application/x-www-form-urlencoded": RemoveBgInputSerializer,
            "application/json": RemoveBgInputSerializer,
        },
        parameters=[
            OpenApiParameter("X-Api-Key", OpenApiTypes.STR, OpenApiParameter.HEADER),
        ],
        responses={
            (200, "image/png"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The result (type by format)."
            ),
            400: RemoveBgErrorSerializer,
            402: RemoveBgErrorSerializer,
            403: RemoveBgErrorSerializer,
            429: RemoveBgErrorSerializer,
        },
        description="remove.bg's endpoint: the same charge, queue and worker as "
        "POST /paid/image/remove/background, answered when the job ends.",
    )
    def post(self, request: Request) -> HttpResponse:
        fields = Fields(request.data, request.FILES)
        raise_if_upload_refused(request)
        type_name, _ = model_for_type(fields)
        submission = removebg_request(
            account=request.auth.account,
            fields=fields,
            idempotency_key=request.headers.get("Idempotency-Key"),
            default_webhook_url=webhook_url_for(account=request.auth.account),
        )
        job = services.submit_job(
            account=request.auth.account, api_key=request.auth, request=submission
        )
        job = wait_for_end(job)
        if job.status == RemovalJob.Status.COMPLETED:
            return result_response(request, job, type_name)
        if job.status == RemovalJob.Status.FAILED and job.error == services.QUEUE_TIMEOUT_ERROR:
            # The queue is too long right now: remove.bg's clients back off on a 429.
            error = ApplicationError(
                "The service is busy: no worker could start this image in time. The charge "
                "was refunded; try again shortly.",
                code="service_busy",
                status_code=429,
            )
        elif job.status == RemovalJob.Status.FAILED:
            error = ApplicationError(
                f"{job.error}. The credits for this image were refunded.",
                code="unknown_foreground"
                if job.error.startswith("No subject")
                else "processing_failed",
            )
        else:
            error = ApplicationError(
                "The image is still being processed; fetch the result later with "
                f"GET /api/get/{job.id}.",
                code="still_processing",
                status_code=429,
            )
        error.headers = {"X-Task-Id": str(job.id)}
        if error.status_code == 429:
            error.headers["Retry-After"] = "5"
        raise error


class RemoveBgAccountApi(APIView):
    @extend_schema(
        operation_id="removebg_account",
        tags=["remove.bg"],
        responses={200: OpenApiTypes.OBJECT, 403: RemoveBgErrorSerializer},
        description="remove.bg's account endpoint, from our ledger: credits.total and "
        "credits.payg are the account's credit balance (REMOVAL_PRICE_CREDITS per image, the "
        "number X-Credits-Charged reports); subscription, enterprise and free_calls are 0.",
    )
    def get(self, request: Request) -> JsonResponse:
        account = request.auth.account
        account.refresh_from_db(fields=["credit_balance"])
        return JsonResponse(
            {
                "data": {
                    "attributes": {
                        "credits": {
                            "total": account.credit_balance,
                            "subscription": 0,
                            "payg": account.credit_balance,
                            "enterprise": 0,
                        },
                        "api": {"free_calls": 0, "sizes": "all"},
                    }
                }
            }
        )
