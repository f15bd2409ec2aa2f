"""The HTTP API. Views parse and format; services decide."""

from django.http import FileResponse, HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey
from removal import selectors, serializers, services
from revid.errors import error_response

ERRORS = {
    code: OpenApiResponse(serializers.ErrorSerializer, description=text)
    for code, text in {
        400: "Bad request (unknown model, no file, undecodable image, malformed body)",
        401: "Missing, wrong or revoked API key",
        402: "Insufficient credits",
        404: "Not found",
        413: "File or image too large",
        415: "Unsupported image format",
        429: "Rate limited",
        503: "Model not available",
    }.items()
}


class RemoveBackgroundApi(APIView):
    @extend_schema(
        operation_id="remove_background",
        request={"multipart/form-data": serializers.RemoveBackgroundInputSerializer},
        responses={202: serializers.TaskCreatedSerializer, **ERRORS},
        description="Accepts an image, charges 25 credits and queues the removal.",
    )
    def post(self, request: Request) -> Response:
        job = services.submit_job(
            account=request.auth.account,
            api_key=request.auth,
            upload=request.FILES.get("file"),
            model_name=request.data.get("model"),
        )
        return Response(serializers.task_created_payload(job), status=status.HTTP_202_ACCEPTED)


class TaskStatusApi(APIView):
    # The task id is an unguessable UUID4, as in the contract's examples,
    # which poll without a key. A caller that does present a key only sees
    # its own account's tasks.
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        operation_id="get_task",
        responses={200: serializers.TaskStatusSerializer, 401: ERRORS[401], 404: ERRORS[404]},
    )
    def get(self, request: Request, task_id: str) -> Response:
        account = request.auth.account if isinstance(request.auth, ApiKey) else None
        job = selectors.get_job(task_id=task_id, account=account)
        if job is None:
            return Response(
                {
                    "success": False,
                    "error": f"Task {task_id[:64]} not found.",
                    "code": "task_not_found",
                },
                status=status.HTTP_404_NOT_FOUND,
            )
        return Response(serializers.task_status_payload(job, request=request))


class ModelListApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes = []

    @extend_schema(
        operation_id="list_models", responses={200: serializers.ModelInfoSerializer(many=True)}
    )
    def get(self, request: Request) -> Response:
        return Response({"success": True, "models": selectors.model_catalogue()})


def download_output(request: HttpRequest, filename: str) -> HttpResponse:
    """Serves a finished PNG; only ``<uuid>_output.png`` of a live job."""
    if request.method not in ("GET", "HEAD"):
        return error_response("Method not allowed.", "method_not_allowed", 405)
    if not filename.endswith("_output.png"):
        return error_response("File not found.", "file_not_found", 404)
    job = selectors.get_job(task_id=filename[: -len("_output.png")])
    if (
        job is None
        or filename != job.output_filename
        or job.status != job.Status.COMPLETED
        or not job.output_file.name
    ):
        return error_response("File not found.", "file_not_found", 404)
    if job.is_expired:
        return error_response(
            "This result has expired and was deleted; submit the image again.", "expired", 410
        )
    try:
        handle = job.output_file.open("rb")
    except (FileNotFoundError, OSError):
        return error_response("File not found.", "file_not_found", 404)
    response = FileResponse(handle, content_type="image/png", filename=job.output_filename)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
