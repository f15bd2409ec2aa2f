"""The HTTP API. Views parse and format; services decide."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework import serializers as drf
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey
from doors.common import (
    WAIT_REFUSED_HEADER,
    AsyncAPIView,
    IgnoreAcceptHeader,
    checked_then_submitted,
    client_address,
    wait_slot,
)
from doors.option_fields import input_serializer
from doors.throttling import SubmissionRateThrottle
from doors.uploads import raise_if_upload_refused
from imaging.formats import CONTENT_TYPES, SUPPORTED_NAMES
from imaging.options import SEED
from removal import downloads, health, selectors, serializers, services, submissions, waiting
from removal.models import RemovalJob
from removal.registry import MODELS
from removal.submissions import Fields
from revid.errors import ApplicationError, ErrorSerializer
from revid.parsers import API_PARSERS
from revid.serving import run_sync
from webhooks.selectors import webhook_url_for

RemoveBackgroundInputSerializer = input_serializer(
    SEED,
    name="RemoveBackgroundInputSerializer",
    doc="The seed API's multipart fields: the image (one of three sources) and the "
    "output options (from the option table). Used for the schema only; "
    "``submissions.seed_request`` parses and validates the request itself.",
    fields={
        "file": drf.FileField(
            required=False,
            help_text=f"The image: {SUPPORTED_NAMES} (format sniffed from the bytes; an animated "
            "WEBP is processed from its first frame). Exactly one of file, image_url and "
            "image_file_b64.",
        ),
        "image_url": drf.URLField(
            required=False,
            max_length=2048,
            help_text="Instead of file: an http(s) URL the service downloads the image from "
            "(at most MAX_UPLOAD_BYTES, 3 redirects, OUTBOUND_TIMEOUT_SECONDS). Loopback, "
            "private, link-local and metadata addresses are refused (400 invalid_image_url) "
            "unless OUTBOUND_ALLOWED_NETWORKS opens them; a download that fails is a 400 "
            "failed_image_download, a file too large a 413.",
        ),
        "image_file_b64": drf.CharField(
            required=False,
            help_text="Instead of file: the image in base64 (standard or URL-safe, line breaks "
            "allowed), or as a data: URL (data:image/png;base64,...). Malformed base64 is a "
            "400 invalid_image_file_b64.",
        ),
        "model": drf.ChoiceField(
            choices=list(MODELS),
            required=False,
            default=settings.REMOVAL_DEFAULT_MODEL,
            help_text="The model; GET /api/models says which are installed here.",
        ),
        "webhook_url": drf.URLField(
            required=False,
            max_length=2048,
            help_text="Optional: an http(s) URL to POST a signed event to when the task ends "
            "(default: the account's webhook URL, if set). Internal addresses are refused "
            "(400 invalid_webhook_url).",
        ),
    },
)


_ERROR_TEXT = {
    400: "Bad request: unknown model, no file, several files, an undecodable or damaged "
    "image, a malformed body or Idempotency-Key. Nothing is charged.",
    401: "Missing, wrong or revoked API key. Nothing is charged.",
    402: "Insufficient credits for this request. Nothing is charged.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "This Idempotency-Key was already used for a different request. Nothing is charged.",
    410: "The result expired and was deleted.",
    413: "File over MAX_UPLOAD_BYTES or image over MAX_IMAGE_PIXELS. Nothing is charged.",
    415: "Unsupported image format (or a body that is not multipart/form-data). "
    "Nothing is charged.",
    429: "Too many submissions with this key; retry after Retry-After seconds. Nothing is charged.",
    503: "The model's weights are not installed on this server. Nothing is charged.",
}
ERRORS = {
    code: OpenApiResponse(ErrorSerializer, description=text) for code, text in _ERROR_TEXT.items()
}


def errors(*codes: int) -> dict:
    return {code: ERRORS[code] for code in codes}


class RemoveBackgroundApi(AsyncAPIView):
    throttle_classes = [SubmissionRateThrottle]
    # Multipart as the contract says; a form or JSON body serves image_url
    # and image_file_b64 without a file part.
    parser_classes = API_PARSERS

    @extend_schema(
        operation_id="remove_background",
        request={
            "multipart/form-data": RemoveBackgroundInputSerializer,
            "application/x-www-form-urlencoded": RemoveBackgroundInputSerializer,
            "application/json": RemoveBackgroundInputSerializer,
        },
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="Optional. A retry with the same key and the same file, model and "
                "options "
                "returns the same task and is not charged again; the same key with a "
                "different request is refused with 409. Up to 255 visible ASCII characters.",
            ),
            OpenApiParameter(
                "Retry-After",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                response=[429],
                description="Seconds to wait before submitting again.",
            ),
        ],
        responses={
            202: serializers.TaskCreatedSerializer,
            **errors(400, 401, 402, 409, 413, 415, 429, 503),
        },
        description=f"Accepts an image, charges {settings.REMOVAL_PRICE_CREDITS} credits "
        "(REMOVAL_PRICE_CREDITS) and queues "
        "the removal, whatever the options. Everything is validated before the charge; a "
        "refused request costs nothing, and a job that fails later is refunded. Leaving "
        "every option out gives the RGBA PNG at the input's size.",
    )
    async def post(self, request: Request) -> Response:
        # Authentication, permission and the rate limit (in initial()) read
        # no body; this is the first read, guarded by MaxUploadSizeHandler
        # (and, under the ASGI server, by revid.asgi's bound on the body).
        def check():
            fields = Fields(request.data, request.FILES)
            raise_if_upload_refused(request)
            return submissions.check_seed_request(
                fields=fields,
                idempotency_key=request.headers.get("Idempotency-Key"),
                default_webhook_url=webhook_url_for(account=request.auth.account),
                origin=RemovalJob.Origin.API,
                door=SEED,
            )

        def submit(submission):
            return services.submit_job(
                account=request.auth.account, api_key=request.auth, request=submission
            )

        job = await checked_then_submitted(check, submit)
        return Response(serializers.task_created_payload(job), status=status.HTTP_202_ACCEPTED)


class TaskStatusApi(AsyncAPIView):
    # The task id is an unguessable UUID4, as in the contract's examples,
    # which poll without a key. A caller that does present a key only sees
    # its own account's tasks.
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        operation_id="get_task",
        parameters=[
            OpenApiParameter(
                "task_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The task_id"
            ),
            OpenApiParameter(
                "wait",
                OpenApiTypes.NUMBER,
                OpenApiParameter.QUERY,
                required=False,
                description="Optional, seconds (0 < wait <= 30, WAIT_MAX_SECONDS): answer as "
                "soon as the task completes or fails, or after this long with its current "
                "status. Replaces polling; anything else is a 400 invalid_wait.",
            ),
            OpenApiParameter(
                WAIT_REFUSED_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                description="Set when ?wait= was not honoured because this API key "
                "(WAIT_MAX_PER_KEY) or this address (WAIT_MAX_PER_ADDRESS) already has as "
                "many requests waiting as allowed: key or address. The answer is the current "
                "status, at once.",
            ),
        ],
        responses={200: serializers.TaskStatusSerializer, **errors(400, 401, 404)},
        description="The task's status, progress and, when completed, where to download the "
        "result, its format, size, subject box and the options applied (result.expired is "
        "true once the file has been deleted). Anyone with the "
        "task id may poll it; with an x-api-key, only that account's tasks are found. "
        "With ?wait=N the answer waits (up to N seconds) for the task to end.",
    )
    async def get(self, request: Request, task_id: str) -> Response:
        wait = waiting.parse_wait(request.query_params.get("wait"))
        key = request.auth if isinstance(request.auth, ApiKey) else None

        def find():
            return selectors.get_job(task_id=task_id, account=key.account if key else None)

        job = await run_sync(find)
        if job is None:
            raise ApplicationError(
                f"Task {task_id[:64]} not found.", code="task_not_found", status_code=404
            )
        headers = {}
        if wait and not job.is_finished:
            async with wait_slot(
                key=key.prefix if key else None, address=client_address(request), seconds=wait
            ) as refused:
                if refused:
                    # Not held: the current status at once, and why.
                    headers[WAIT_REFUSED_HEADER] = refused.limit
                else:
                    job = await waiting.wait_then_reload(job, timeout=wait)
        return Response(serializers.task_status_payload(job, request=request), headers=headers)


class ModelListApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes = []

    @extend_schema(
        operation_id="list_models",
        responses={200: serializers.ModelListSerializer},
        description="The six models and whether their weights are installed here.",
    )
    def get(self, request: Request) -> Response:
        return Response({"success": True, "models": selectors.model_catalogue()})


class DownloadOutputApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes = []
    content_negotiation_class = IgnoreAcceptHeader

    @extend_schema(
        operation_id="download_output",
        parameters=[
            OpenApiParameter(
                "filename",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description="<task_id>_output.<format>, as in result.image_filename",
            )
        ],
        responses={
            **{
                (200, content_type): OpenApiResponse(
                    OpenApiTypes.BINARY,
                    description="The result in the format the task asked for (result.format): "
                    "an RGBA PNG by default.",
                )
                for content_type in CONTENT_TYPES.values()
            },
            302: OpenApiResponse(
                description="With OUTPUT_REDIRECT_TO_STORAGE: a redirect to a presigned URL "
                "of the file in the bucket, valid OUTPUT_URL_EXPIRE_SECONDS."
            ),
            **errors(404, 410),
            503: OpenApiResponse(ErrorSerializer, description="The storage is not reachable."),
        },
        description="Serves a finished result until it expires (OUTPUT_TTL_HOURS); 410 after.",
    )
    def get(self, request: Request, filename: str):
        task_id, separator, _ = filename.partition("_output.")
        job = selectors.get_job(task_id=task_id) if separator else None
        if job is not None and filename != job.output_filename:
            job = None
        return downloads.output_response(job)


async def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers HTTP. Checks nothing else on purpose,
    so an orchestrator never restarts a web server for a database outage.
    Async: it needs no thread, so no amount of sync work delays it."""
    response = JsonResponse({"status": "ok"})
    response["Cache-Control"] = "no-store"
    return response


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 200 when database, broker, storage and models are all
    usable from this machine, else 503; each check's result in the body."""
    ready, results = health.readiness()
    response = JsonResponse(
        {
            "status": "ready" if ready else "not_ready",
            "checks": {
                name: {"ok": result.ok, "detail": result.detail} for name, result in results.items()
            },
        },
        status=200 if ready else 503,
    )
    response["Cache-Control"] = "no-store"
    return response
