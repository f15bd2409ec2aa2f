"""One application error type, mapped to one JSON error shape.

Services raise ``ApplicationError`` (or a subclass); the API, the web page
and the admin turn it into a response or a message. The DRF exception
handler below also maps DRF's own errors (parse errors, auth, throttling) to
the same ``{"success": false, "error": ..., "code": ...}`` shape, so no
request is ever answered with HTML or a 500 page.
"""

import logging
import math
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from django.utils.deprecation import MiddlewareMixin
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    status_code: int = status.HTTP_400_BAD_REQUEST
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = {}
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code


class ErrorSerializer(serializers.Serializer):
    """Every error of the API, whatever the status code (the OpenAPI schema's shape)."""

    success = serializers.BooleanField(help_text="Always false")
    error = serializers.CharField(help_text="A sentence for humans")
    code = serializers.CharField(help_text="A stable slug for programs, e.g. insufficient_credits")


def error_body(message: str, code: str) -> dict[str, Any]:
    return {"success": False, "error": message, "code": code}


def error_response(message: str, code: str, status_code: int) -> JsonResponse:
    return JsonResponse(error_body(message, code), status=status_code)


# --- the remove.bg dialect -------------------------------------------------------
#
# Requests to /v1.0/ come from remove.bg's clients, which read
# {"errors": [{"title", "code", "detail"}]} and only know remove.bg's
# statuses (400, 402, 403, 429). The same application errors are answered
# there in that shape, with remove.bg's code where it has one.
REMOVEBG_PATH_PREFIX = "/v1.0/"
REMOVEBG_CODES = {
    "file_required": "missing_source",
    "multiple_files": "multiple_sources",
    "invalid_image": "failed_to_read_image",
    "unsupported_format": "failed_to_read_image",
    "image_too_large": "resolution_too_high",
    "invalid_image_file_b64": "failed_to_read_image",
    "missing_api_key": "auth_failed",
    "invalid_api_key": "auth_failed",
    "insufficient_credits": "insufficient_credits",
    "rate_limited": "rate_limit_exceeded",
}
REMOVEBG_TITLES = {
    "missing_source": "No image given",
    "multiple_sources": "Several images given",
    "failed_to_read_image": "Failed to read image",
    "resolution_too_high": "Resolution too high",
    "file_too_large": "File too large",
    "auth_failed": "API Key invalid",
    "insufficient_credits": "Insufficient credits",
    "rate_limit_exceeded": "Rate limit exceeded",
    "invalid_image_url": "Invalid image URL",
    "failed_image_download": "Failed to download image",
    "unknown_foreground": "Could not identify foreground in image",
    "malformed_request": "Malformed request",
}
# remove.bg's clients branch on these; any other client error is its 400.
REMOVEBG_STATUSES = {401: 403, 402: 402, 403: 403, 404: 404, 405: 405, 429: 429}


def is_removebg_request(request) -> bool:
    return getattr(request, "path", "").startswith(REMOVEBG_PATH_PREFIX)


def removebg_error_body(message: str, code: str, status_code: int) -> tuple[dict[str, Any], int]:
    """Our error as remove.bg answers it: its shape, its code, its status."""
    removebg_code = REMOVEBG_CODES.get(code, code)
    title = REMOVEBG_TITLES.get(removebg_code) or message.split(". ")[0].rstrip(".")
    status_code = REMOVEBG_STATUSES.get(status_code, 400)
    return {"errors": [{"title": title, "code": removebg_code, "detail": message}]}, status_code


def error_response_for(request, message: str, code: str, status_code: int) -> JsonResponse:
    """An error in the dialect of the door ``request`` came through."""
    if is_removebg_request(request):
        body, status_code = removebg_error_body(message, code, status_code)
        return JsonResponse(body, status=status_code)
    return error_response(message, code, status_code)


_DRF_CODES = {
    exceptions.NotAuthenticated: (
        "missing_api_key",
        "Missing API key: send it in the x-api-key header.",
    ),
    exceptions.AuthenticationFailed: ("invalid_api_key", "Invalid or revoked API key."),
    exceptions.PermissionDenied: ("forbidden", "You do not have permission to do this."),
    exceptions.NotFound: ("not_found", "Not found."),
    exceptions.MethodNotAllowed: ("method_not_allowed", None),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", None),
    exceptions.ParseError: ("malformed_request", None),
    exceptions.Throttled: ("rate_limited", None),
    exceptions.NotAcceptable: ("not_acceptable", None),
}


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    response = _seed_dialect_response(exc, context)
    if response is not None:
        for name, value in getattr(exc, "headers", {}).items():
            response[name] = value
    request = context.get("request")
    if response is not None and request is not None and is_removebg_request(request):
        body, status_code = removebg_error_body(
            response.data["error"], response.data["code"], response.status_code
        )
        response.data, response.status_code = body, status_code
    return response


def _seed_dialect_response(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.message, exc.code), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("The request body is too large.", "request_too_large"),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):
        # Too many fields or files, a bad multipart header, ...: the
        # client's fault, so a 400, never a 500.
        return Response(
            error_body(f"Malformed request: {exc}", "malformed_request"),
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = exception_handler(exc, context)
    if response is None:
        # Anything else is a bug; log it and still answer in our JSON shape.
        logger.exception("Unhandled error in API view", exc_info=exc)
        return Response(
            error_body("Internal error; nothing was charged for this request.", "internal_error"),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    code, message = "bad_request", None
    for exc_type, (drf_code, drf_message) in _DRF_CODES.items():
        if isinstance(exc, exc_type):
            code, message = drf_code, drf_message
            break
    if message is None:
        detail = getattr(exc, "detail", None)
        message = _flatten_detail(detail) if detail is not None else str(exc)
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        # Round up, and say the same number in the header and the sentence.
        seconds = max(1, math.ceil(exc.wait))
        response["Retry-After"] = str(seconds)
        message = f"Too many requests; retry in {seconds} seconds. Nothing was charged."
    response.data = error_body(message, code)
    return response


def _flatten_detail(detail: Any) -> str:
    if isinstance(detail, list):
        return " ".join(_flatten_detail(item) for item in detail)
    if isinstance(detail, dict):
        return " ".join(f"{key}: {_flatten_detail(value)}" for key, value in detail.items())
    return str(detail)


class ApplicationErrorMiddleware(MiddlewareMixin):
    """Turns an ``ApplicationError`` raised in a plain Django view (the web
    page's script endpoints) into the JSON error of the door it came to, in
    one place. DRF views answer through ``api_exception_handler`` instead.
    Sync and async (``MiddlewareMixin``), so an async view stays on the loop."""

    def process_exception(self, request, exception):
        if not isinstance(exception, ApplicationError):
            return None
        response = error_response_for(
            request, exception.message, exception.code, exception.status_code
        )
        for name, value in exception.headers.items():
            response[name] = value
        return response
