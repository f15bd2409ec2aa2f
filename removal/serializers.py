"""Input and output shapes of the API, field for field as the contract says.

The output serializers are also what drf-spectacular turns into the
OpenAPI schema.
"""

from django.conf import settings
from rest_framework import serializers

from imaging.formats import FORMATS
from imaging.subject import FOREGROUND_MIN_ALPHA
from removal.models import RemovalJob

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"  # UTC, as in the contract's examples


class EndpointsSerializer(serializers.Serializer):
    check_status = serializers.CharField()
    download_image = serializers.CharField()


class TaskCreatedSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    task_id = serializers.UUIDField()
    status = serializers.CharField()
    message = serializers.CharField()
    endpoints = EndpointsSerializer()


class ForegroundSerializer(serializers.Serializer):
    top = serializers.IntegerField()
    left = serializers.IntegerField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()


class ResultSerializer(serializers.Serializer):
    image_url = serializers.URLField(
        required=False, help_text="Where to download the result; its extension is format's."
    )
    image_filename = serializers.CharField(required=False)
    input_size = serializers.IntegerField(required=False)
    output_size = serializers.IntegerField(required=False)
    input_size_kb = serializers.FloatField(required=False)
    output_size_kb = serializers.FloatField(required=False)
    elapsed_seconds = serializers.FloatField(required=False)
    model = serializers.CharField(required=False)
    format = serializers.ChoiceField(
        choices=list(FORMATS),
        required=False,
        help_text="The output file's format (its Content-Type on download).",
    )
    width = serializers.IntegerField(
        required=False, allow_null=True, help_text="The output's width in pixels."
    )
    height = serializers.IntegerField(
        required=False, allow_null=True, help_text="The output's height in pixels."
    )
    foreground = ForegroundSerializer(
        required=False,
        allow_null=True,
        help_text="The subject's bounding box in output pixels (alpha >= "
        f"{FOREGROUND_MIN_ALPHA}); null when no subject was found.",
    )
    options = serializers.DictField(
        required=False,
        child=serializers.JSONField(),
        help_text="The output options that were applied, those that differ from the "
        "defaults only (an empty object: the default PNG).",
    )
    error = serializers.CharField(required=False)
    expired = serializers.BooleanField(required=False)


class TaskStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=RemovalJob.Status.choices)
    message = serializers.CharField()
    progress = serializers.IntegerField(min_value=0, max_value=100)
    created_at = serializers.CharField()
    completed_at = serializers.CharField(allow_null=True)
    result = ResultSerializer(allow_null=True)


class ModelInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    available = serializers.BooleanField()
    best_for = serializers.CharField()
    speed = serializers.CharField()
    quality = serializers.CharField()


class ModelListSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    models = ModelInfoSerializer(many=True)


def _time(value) -> str | None:
    return value.strftime(TIME_FORMAT) if value is not None else None


def _kb(size: int) -> float:
    return round(size / 1024, 1)


def status_url(job: RemovalJob) -> str:
    return f"/api/get/{job.id}"


def download_path(job: RemovalJob) -> str:
    return f"/output/{job.output_filename}"


def task_created_payload(job: RemovalJob) -> dict:
    return {
        "success": True,
        "task_id": str(job.id),
        "status": job.status,
        "message": "Background removal started",
        "endpoints": {
            "check_status": status_url(job),
            "download_image": f"{download_path(job)} (after completion)",
        },
    }


def absolute_url(path: str, *, request=None) -> str:
    """From the request's host, or SITE_URL where there is none (a webhook)."""
    if request is not None:
        return request.build_absolute_uri(path)
    return f"{settings.SITE_URL}{path}"


def task_status_payload(job: RemovalJob, *, request=None) -> dict:
    result = None
    if job.status == RemovalJob.Status.COMPLETED:
        result = {
            "image_url": absolute_url(download_path(job), request=request),
            "image_filename": job.output_filename,
            "input_size": job.input_size,
            "output_size": job.output_size,
            "input_size_kb": _kb(job.input_size),
            "output_size_kb": _kb(job.output_size or 0),
            "elapsed_seconds": round(job.elapsed_seconds or 0.0, 2),
            "model": job.model_name,
            "format": job.output_format,
            "width": job.output_width,
            "height": job.output_height,
            "foreground": job.foreground,
            "options": job.options or {},
        }
        if job.is_expired:
            result["expired"] = True
    elif job.status == RemovalJob.Status.FAILED:
        result = {"error": job.error}
    message = job.message
    if job.status == RemovalJob.Status.PENDING:
        message = "Waiting for a worker..."
    elif job.status == RemovalJob.Status.COMPLETED and job.is_expired:
        message = (
            f"Background removal completed successfully; the result expired after "
            f"{settings.OUTPUT_TTL_HOURS} hours and was deleted"
        )
    return {
        "status": job.status,
        "message": message,
        "progress": job.progress,
        "created_at": _time(job.created_at),
        "completed_at": _time(job.completed_at),
        "result": result,
    }


# --- Batches ---------------------------------------------------------------------------


def batch_status_url(batch) -> str:
    return f"/api/batch/{batch.id}"


def batch_download_path(batch) -> str:
    return f"/api/batch/{batch.id}/download"


def batch_status_payload(batch, *, counts: dict[str, int], request=None) -> dict:
    """``GET /api/batch/<id>``: counts, overall progress and each item, in request order."""
    items = []
    for job in batch.jobs.order_by("batch_index"):
        item = {
            "index": job.batch_index,
            "filename": job.original_filename,
            "task_id": str(job.id),
            "status": job.status,
            "progress": job.progress,
        }
        if job.status == RemovalJob.Status.COMPLETED and not job.is_expired:
            item["image_url"] = absolute_url(download_path(job), request=request)
        if job.status == RemovalJob.Status.FAILED:
            item["error"] = job.error
        items.append(item)
    for refused in batch.refused:
        items.append(
            {
                "index": refused["index"],
                "filename": refused["filename"],
                "status": "refused",
                "error": refused["error"],
            }
        )
    items.sort(key=lambda item: item["index"])
    ended = counts["completed"] + counts["failed"]
    # An item that ended, completed or failed, is done: 100 toward the whole.
    progress = sum(
        100 if item["status"] in ("completed", "failed") else item["progress"]
        for item in items
        if "task_id" in item
    )
    return {
        "batch_id": str(batch.id),
        "status": "ended"
        if batch.has_ended
        else ("processing" if ended or counts["processing"] else "pending"),
        "counts": counts,
        "progress": round(progress / batch.item_count) if batch.item_count else 100,
        "created_at": _time(batch.created_at),
        "ended_at": _time(batch.ended_at),
        "items": items,
        "endpoints": {
            "check_status": batch_status_url(batch),
            "download_zip": batch_download_path(batch),
        },
    }
