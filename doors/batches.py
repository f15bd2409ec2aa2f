"""The batch door: many images in one request, one ZIP back.

``POST /paid/image/remove/background/batch`` reads its items (repeated
multipart ``files``, one ``archive`` ZIP, or a JSON body's ``items``) and
the same option fields as the seed API; ``removal.batch_submissions``
checks each item, ``removal.batches.submit_batch`` charges the accepted
ones in one transaction and queues them. ``GET /api/batch/<id>`` (with
``?wait=``) reports; ``GET /api/batch/<id>/download`` streams the ZIP.
"""

from __future__ import annotations

import io
import json
import posixpath
import time
import zipfile

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework import serializers as drf
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey
from doors.common import (
    WAIT_REFUSED_HEADER,
    AsyncAPIView,
    IgnoreAcceptHeader,
    client_address,
    wait_slot,
)
from doors.option_fields import input_serializer
from doors.throttling import SubmissionRateThrottle
from doors.uploads import raise_if_upload_refused
from imaging.formats import OUTPUT_FORMATS, SUPPORTED_NAMES
from imaging.options import BATCH
from removal import batch_submissions, batches, downloads, selectors, serializers, waiting
from removal.models import Batch, RemovalJob
from removal.registry import MODELS
from removal.submissions import Fields, MultipleSources
from revid.errors import ApplicationError, ErrorSerializer
from revid.parsers import JSONObjectParser
from revid.serving import release_request_thread, run_sync
from webhooks.selectors import webhook_url_for

BatchInputSerializer = input_serializer(
    BATCH,
    name="BatchInputSerializer",
    doc="A batch: its images and the output options every image gets (from the option table).",
    fields={
        "files": drf.ListField(
            child=drf.FileField(),
            required=False,
            help_text=f"The images ({SUPPORTED_NAMES}), as repeated multipart 'files' fields. "
            "Or one 'archive', or a JSON body with 'items'.",
        ),
        "archive": drf.FileField(
            required=False,
            help_text="Instead of files: one ZIP of images (folders allowed; names kept).",
        ),
        "items": drf.ListField(
            child=drf.DictField(),
            required=False,
            help_text='JSON bodies: [{"image_url": "..."} or {"image_file_b64": "..."}, ...], '
            'each with an optional "filename".',
        ),
        "model": drf.ChoiceField(
            choices=list(MODELS), required=False, default=settings.REMOVAL_DEFAULT_MODEL
        ),
        "webhook_url": drf.URLField(
            required=False,
            help_text="Where to POST one signed batch.completed event when every item ended.",
        ),
    },
)


class BatchNotFound(ApplicationError):
    status_code = 404
    code = "batch_not_found"


class BatchNotEnded(ApplicationError):
    status_code = 409
    code = "batch_not_ended"


def read_items(request: Request) -> list[batch_submissions.BatchItem]:
    """The items, from whichever of the three forms the request used."""
    if isinstance(request.data, dict) and "items" in request.data:
        if request.FILES:
            raise MultipleSources("Send items as files, an archive or JSON items, not several.")
        return batch_submissions.items_from_json(request.data.get("items"))
    files = request.FILES.getlist("files")
    archives = request.FILES.getlist("archive")
    if archives and files:
        raise MultipleSources("Send either 'files' or one 'archive', not both.")
    if len(archives) > 1:
        raise MultipleSources("Send one 'archive' ZIP.")
    if archives:
        return batch_submissions.items_from_archive(archives[0])
    return batch_submissions.items_from_uploads(files)


def batch_created_payload(batch: Batch) -> dict:
    """The 202: each item with its task id, or the reason it was refused."""
    items = [
        {"index": job.batch_index, "filename": job.original_filename, "task_id": str(job.id)}
        for job in batch.jobs.all()
    ]
    items += [
        {"index": item["index"], "filename": item["filename"], "error": item["error"]}
        for item in batch.refused
    ]
    items.sort(key=lambda item: item["index"])
    return {
        "success": True,
        "batch_id": str(batch.id),
        "status": "pending",
        "items": items,
        "charged_credits": batch.item_count * settings.REMOVAL_PRICE_CREDITS,
        "endpoints": {
            "check_status": serializers.batch_status_url(batch),
            "download_zip": serializers.batch_download_path(batch),
        },
    }


class BatchSubmitApi(AsyncAPIView):
    throttle_classes = [SubmissionRateThrottle]
    # A JSON body must be one object (revid.parsers); multipart bodies may
    # reach BATCH_MAX_BYTES (doors.uploads).
    parser_classes = [MultiPartParser, FormParser, JSONObjectParser]

    @extend_schema(
        operation_id="remove_background_batch",
        tags=["batches"],
        request={
            "multipart/form-data": BatchInputSerializer,
            "application/json": BatchInputSerializer,
        },
        parameters=[
            OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER),
        ],
        responses={
            202: OpenApiTypes.OBJECT,
            **{code: ErrorSerializer for code in (400, 401, 402, 409, 413, 429, 503)},
        },
        description=f"Up to BATCH_MAX_ITEMS ({settings.BATCH_MAX_ITEMS}) images with the same "
        "model and options. Every item is checked before anything is charged; refused items "
        f"are listed with their reason and cost nothing; the accepted ones are charged "
        f"{settings.REMOVAL_PRICE_CREDITS} credits each in one transaction (402 and nothing "
        "charged if the balance cannot cover them all).",
    )
    async def post(self, request: Request) -> Response:
        # The body and the batch-wide fields on the request's thread; the
        # items' URLs on the event loop with that thread released (slow
        # remotes hold none); each item's checks and the charge on a thread.
        def check() -> tuple[batch_submissions.BatchFields, list]:
            data = request.data
            raise_if_upload_refused(request)
            fields = Fields(
                {k: v for k, v in data.items() if k != "items"} if isinstance(data, dict) else data,
                {},
            )
            items = read_items(request)
            batch = batch_submissions.check_batch_fields(
                fields=fields,
                items=items,
                door=BATCH,
                idempotency_key=request.headers.get("Idempotency-Key"),
                default_webhook_url=webhook_url_for(account=request.auth.account),
            )
            return batch, items

        batch_fields, items = await run_sync(check)
        if any(item.url is not None for item in items):
            await release_request_thread()
            items = await batch_submissions.afetch_items(items)

        def submit() -> dict:
            batch_request = batch_submissions.check_items(batch_fields, items)
            batch = batches.submit_batch(
                account=request.auth.account, api_key=request.auth, request=batch_request
            )
            return batch_created_payload(batch)

        return Response(await run_sync(submit), status=status.HTTP_202_ACCEPTED)


def _find(request: Request, batch_id: str) -> Batch:
    account = request.auth.account if isinstance(request.auth, ApiKey) else None
    batch = selectors.get_batch(batch_id=batch_id, account=account)
    if batch is None:
        raise BatchNotFound(f"Batch {batch_id[:64]} not found.")
    return batch


async def wait_for_batch(batch: Batch, *, timeout: float) -> Batch:
    """Waits (up to ``timeout``) until every item ended, on the event loop: no
    thread while it waits.

    It waits for the last unfinished item: items run in order, so the wait
    usually wakes once, when the batch is nearly done, instead of at every
    item's end (each wake costs queries on the cores the worker needs).
    """

    def next_unfinished() -> RemovalJob | None:
        job = batch.jobs.exclude(status__in=batches.FINISHED).order_by("-batch_index").first()
        if job is None:
            batches.end_if_done(batch_id=batch.id)
        return job

    deadline = time.monotonic() + timeout
    while not batch.has_ended and (left := deadline - time.monotonic()) > 0:
        job = await run_sync(next_unfinished)
        if job is not None:
            await waiting.wait_then_reload(job, timeout=left)
        await run_sync(batch.refresh_from_db)
    return batch


class BatchStatusApi(AsyncAPIView):
    # Like a task, a batch's id is an unguessable UUID4 and may be polled
    # without a key; with a key, only that account's batches are found.
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        operation_id="get_batch",
        tags=["batches"],
        parameters=[
            OpenApiParameter("batch_id", OpenApiTypes.STR, OpenApiParameter.PATH),
            OpenApiParameter(
                "wait",
                OpenApiTypes.NUMBER,
                OpenApiParameter.QUERY,
                required=False,
                description="Seconds (as on /api/get/): answer when the batch ends, or then.",
            ),
        ],
        responses={200: OpenApiTypes.OBJECT, 400: ErrorSerializer, 404: ErrorSerializer},
        description="Counts per status, overall progress, and each item's status, progress, "
        "result URL or error.",
    )
    async def get(self, request: Request, batch_id: str) -> Response:
        wait = waiting.parse_wait(request.query_params.get("wait"))
        batch = await run_sync(_find, request, batch_id)
        headers = {}
        if wait and not batch.has_ended:
            key = request.auth if isinstance(request.auth, ApiKey) else None
            async with wait_slot(
                key=key.prefix if key else None, address=client_address(request), seconds=wait
            ) as refused:
                if refused:
                    # Not held: the current status at once, and why.
                    headers[WAIT_REFUSED_HEADER] = refused.limit
                else:
                    batch = await wait_for_batch(batch, timeout=wait)

        def payload() -> dict:
            counts = batches.batch_counts(batch=batch)
            return serializers.batch_status_payload(batch, counts=counts, request=request)

        return Response(await run_sync(payload), headers=headers)


class _Sink(io.RawIOBase):
    """Where zipfile writes; the response takes what it wrote after each piece."""

    def __init__(self):
        self.pieces: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.pieces.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.pieces)
        self.pieces.clear()
        return data


def zip_name(filename: str, index: int, extension: str, taken: set[str]) -> str:
    """The original's name (folders kept, made safe) with the output's extension;
    a clash gets " (2)", " (3)", ..."""
    path = posixpath.normpath("/" + filename.replace("\\", "/")).lstrip("/")
    stem = posixpath.splitext(path)[0] if path and path != "." else f"item-{index}"
    name, number = f"{stem}.{extension}", 1
    while name in taken:
        number += 1
        name = f"{stem} ({number}).{extension}"
    taken.add(name)
    return name


def zip_stream(batch: Batch):
    """The ZIP, piece by piece: each completed cut-out (stored, not deflated:
    images are compressed already), then ``manifest.json``."""
    sink = _Sink()
    extension = OUTPUT_FORMATS[batch.output_format].extension
    price = settings.REMOVAL_PRICE_CREDITS
    manifest, taken = [], {"manifest.json"}
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for job in batch.jobs.order_by("batch_index"):
            entry = {
                "index": job.batch_index,
                "original_name": job.original_filename,
                "task_id": str(job.id),
                "status": job.status,
                "output_name": None,
                "size": None,
                "error": job.error or None,
                "credits_charged": price,
                "credits_refunded": price if job.status == RemovalJob.Status.FAILED else 0,
            }
            if job.status == RemovalJob.Status.COMPLETED and job.has_live_output:
                name = zip_name(job.original_filename, job.batch_index, extension, taken)
                with archive.open(zipfile.ZipInfo(name), "w", force_zip64=True) as member:
                    for chunk in downloads.output_chunks(job):
                        member.write(chunk)
                        yield sink.take()
                entry.update(output_name=name, size=job.output_size)
            elif job.status == RemovalJob.Status.COMPLETED:
                entry.update(status="expired", error="The result expired and was deleted.")
            manifest.append(entry)
        for refused in batch.refused:
            manifest.append(
                {
                    "index": refused["index"],
                    "original_name": refused["filename"],
                    "status": "refused",
                    "output_name": None,
                    "size": None,
                    "error": refused["error"],
                    "credits_charged": 0,
                    "credits_refunded": 0,
                }
            )
        manifest.sort(key=lambda entry: entry["index"])
        body = {"batch_id": str(batch.id), "model": batch.model_name, "items": manifest}
        archive.writestr("manifest.json", json.dumps(body, indent=2))
    yield sink.take()


class BatchDownloadApi(APIView):
    permission_classes = [permissions.AllowAny]
    content_negotiation_class = IgnoreAcceptHeader

    @extend_schema(
        operation_id="download_batch",
        tags=["batches"],
        parameters=[OpenApiParameter("batch_id", OpenApiTypes.STR, OpenApiParameter.PATH)],
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="The completed cut-outs, named after their originals, and "
                "manifest.json (every item: name, status, output name, size, error, credits).",
            ),
            404: ErrorSerializer,
            409: ErrorSerializer,
        },
        description="A streamed ZIP, as soon as every item has ended; 409 with the counts "
        "before that.",
    )
    def get(self, request: Request, batch_id: str):
        batch = _find(request, batch_id)
        if not batch.has_ended:
            counts = batches.batch_counts(batch=batch)
            shown = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
            raise BatchNotEnded(f"The batch has not ended yet ({shown}); try again later.")
        response = StreamingHttpResponse(zip_stream(batch), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="batch-{batch.id}.zip"'
        return response
