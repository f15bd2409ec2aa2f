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

import asyncio
import base64
import contextvars
import math
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from doors.common import (
    AsyncAPIView,
    IgnoreAcceptHeader,
    checked_then_submitted,
    client_address,
    wait_slot,
)
from doors.option_fields import input_serializer
from doors.throttling import SubmissionRateThrottle
from doors.uploads import raise_if_upload_refused
from imaging.formats import CONTENT_TYPES
from imaging.options import REMOVEBG, OutputOptions
from removal import downloads, registry, services, submissions, wait_limits, waiting
from removal.models import RemovalJob
from removal.submissions import Fields, InvalidOption
from revid.errors import ApplicationError
from revid.parsers import API_PARSERS
from revid.serving import close_db_connections, run_sync
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


def validate_type_level(fields: Fields) -> str:
    """remove.bg's ``type_level`` (default 1): how finely X-Type names the
    subject; ``none`` leaves the header out. The model does not depend on it."""
    type_level = (fields.text("type_level") or "1").lower()
    if type_level not in TYPE_LEVELS:
        raise InvalidOption(
            f"type_level must be one of {', '.join(TYPE_LEVELS)}.", field_name="type_level"
        )
    return type_level


# X-Type at type_level 1: remove.bg's coarse classes; 2 and latest name more.
COARSE_TYPES = {"person": "person", "product": "product", "animal": "animal", "car": "car"}
FINE_TYPES = {**COARSE_TYPES, "transportation": "transportation", "graphic": "graphics"}


def reported_type(type_name: str, type_level: str) -> str | None:
    """The X-Type header: the type asked for, in the classes of ``type_level``
    (``other`` for auto or a type the level does not name); None for none."""
    if type_level == "none":
        return None
    classes = COARSE_TYPES if type_level == "1" else FINE_TYPES
    return classes.get(type_name, "other")


def parse_options(fields: Fields) -> OutputOptions:
    """remove.bg's options, read by the option table (its defaults: size=preview, format=auto)."""
    validate_type_level(fields)
    return submissions.parse_options(fields, door=REMOVEBG)


def check_removebg_request(
    *, fields: Fields, idempotency_key: str | None, default_webhook_url: str = ""
) -> submissions.CheckedRequest:
    """A submission to ``/v1.0/removebg``, checked up to its image source (the
    options by the table); ``submissions.finish_request`` checks the image."""
    _, model = model_for_type(fields)
    validate_type_level(fields)
    return submissions.check_request(
        fields=fields,
        door=REMOVEBG,
        model_name=model,
        idempotency_key=idempotency_key,
        webhook_url=fields.text("webhook_url"),
        default_webhook_url=default_webhook_url,
        origin=RemovalJob.Origin.REMOVEBG,
        upload_field="image_file",
    )


async def wait_for_end(job: RemovalJob, *, queue_deadline: float) -> RemovalJob:
    """Waits until the job has ended, failing it (refunded) if no worker starts it in time.

    A job that started is bounded by REMOVAL_JOB_TIMEOUT (plus the reaper's
    grace for a worker that died) from its start. One no worker has taken
    within REMOVEBG_QUEUE_WAIT_SECONDS is failed and refunded rather than
    left for a client that has stopped waiting. Between those moments the
    wait is one notification away: nothing reads the job meanwhile.
    """
    loop = asyncio.get_running_loop()
    run_bound = timedelta(seconds=settings.REMOVAL_JOB_TIMEOUT + settings.REMOVAL_STALE_GRACE)
    while not job.is_finished:
        if job.status == RemovalJob.Status.PENDING:
            timeout = queue_deadline - loop.time()
            if timeout <= 0:
                await run_sync(
                    services.fail_job,
                    job=job,
                    error=services.QUEUE_TIMEOUT_ERROR,
                    unstarted_only=True,
                )
                # Failed now, or taken by a worker just in time.
                await run_sync(job.refresh_from_db)
                continue
        else:
            started = job.started_at or timezone.now()
            timeout = (started + run_bound - timezone.now()).total_seconds()
            if timeout <= 0:
                # Its worker is gone; the reaper fails and refunds it shortly.
                return job
        # A server that stops still lets this call finish (within its grace).
        job = await waiting.wait_then_reload(job, timeout=timeout, until_shutdown=False)
    return job


# Deadlines of callers that hung up, kept until they pass (a task needs a reference).
_deadlines: set[asyncio.Task] = set()


def refund_if_never_started(job: RemovalJob, *, queue_deadline: float) -> None:
    """At ``queue_deadline``, fails and refunds the job if no worker has started it,
    as ``wait_for_end`` would have for a caller still there. A coroutine on the
    loop, not a thread; lost with the process (the job then simply runs)."""

    def fail_unstarted() -> None:
        try:
            services.fail_job(job=job, error=services.QUEUE_TIMEOUT_ERROR, unstarted_only=True)
        finally:
            close_db_connections()

    async def at_the_deadline() -> None:
        await asyncio.sleep(max(0.0, queue_deadline - asyncio.get_running_loop().time()))
        await sync_to_async(fail_unstarted, thread_sensitive=False)()

    task = asyncio.get_running_loop().create_task(at_the_deadline(), context=contextvars.Context())
    _deadlines.add(task)
    task.add_done_callback(_deadlines.discard)


def rate_limit_headers(request: Request) -> dict[str, str]:
    state = getattr(request._request, "submission_rate", None)
    if state is None:
        return {}
    return {
        "X-RateLimit-Limit": str(state.limit),
        "X-RateLimit-Remaining": str(state.remaining),
        "X-RateLimit-Reset": str(math.ceil(state.reset_at)),
    }


def result_response(
    request: Request, job: RemovalJob, type_name: str, type_level: str = "1"
) -> HttpResponse:
    data = downloads.output_bytes(job)
    foreground = job.foreground or {"top": 0, "left": 0, "width": 0, "height": 0}
    headers = {
        "X-Type": reported_type(type_name, type_level),
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
        if value is not None:
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
        "type_level": serializers.ChoiceField(
            choices=list(TYPE_LEVELS),
            required=False,
            default="1",
            help_text="How X-Type names the subject: none (no X-Type), 1 (person, product, "
            "animal, car, other), 2 or latest (also transportation, graphics).",
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


class RemoveBgApi(AsyncAPIView):
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
    async def post(self, request: Request) -> HttpResponse:
        key = request.auth
        seconds = (
            settings.REMOVEBG_QUEUE_WAIT_SECONDS
            + settings.REMOVAL_JOB_TIMEOUT
            + settings.REMOVAL_STALE_GRACE
        )
        async with wait_slot(
            key=key.prefix, address=client_address(request), seconds=seconds
        ) as refused:
            if refused:
                raise wait_refused(refused)
            answer_as = []  # remove.bg's type and type_level, for the result's headers

            def check():
                fields = Fields(request.data, request.FILES)
                raise_if_upload_refused(request)
                answer_as.extend((model_for_type(fields)[0], validate_type_level(fields)))
                return check_removebg_request(
                    fields=fields,
                    idempotency_key=request.headers.get("Idempotency-Key"),
                    default_webhook_url=webhook_url_for(account=key.account),
                )

            def submit(submission):
                return services.submit_job(account=key.account, api_key=key, request=submission)

            job = await checked_then_submitted(check, submit)
            queue_deadline = (
                asyncio.get_running_loop().time() + settings.REMOVEBG_QUEUE_WAIT_SECONDS
            )
            try:
                job = await wait_for_end(job, queue_deadline=queue_deadline)
            except asyncio.CancelledError:
                # The caller hung up: its wait is dropped at once, but the
                # queue's deadline still holds for its job.
                refund_if_never_started(job, queue_deadline=queue_deadline)
                raise
        if job.status == RemovalJob.Status.COMPLETED:
            return await run_sync(result_response, request, job, *answer_as)
        raise ended_without_result(job)


def wait_refused(refused) -> ApplicationError:
    """429 before anything is charged: this key or address has its WAIT_MAX_* calls waiting."""
    whose = "this API key" if refused.limit == "key" else "your address"
    error = ApplicationError(
        f"Too many calls from {whose} are waiting for their result already (at most "
        f"{refused.maximum} at once); retry when one has ended. Nothing was charged.",
        code="rate_limited",
        status_code=429,
    )
    error.headers = {"Retry-After": str(wait_limits.RETRY_AFTER_SECONDS)}
    return error


def ended_without_result(job: RemovalJob) -> ApplicationError:
    """The error for a job that failed, or that is still running when the wait gives up."""
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
    return error


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
