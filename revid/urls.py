from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from revid.errors import error_response_for

urlpatterns = [
    path("", include("doors.urls")),
    path("", include("accounts.urls")),
    path("", include("webhooks.urls")),
    # allauth after ours: /accounts/login/ and /accounts/logout/ stay ours.
    path("accounts/", include("allauth.account.urls")),
    path("", include("billing.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("admin/", admin.site.urls),
]

_API_PREFIXES = ("/api/", "/paid/", "/output/", "/v1.0/")


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(_API_PREFIXES) or "text/html" not in request.headers.get(
        "Accept", ""
    )


def json_or_html_404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _wants_json(request):
        return error_response_for(request, "Not found.", "not_found", 404)
    return defaults.page_not_found(request, exception)


def json_or_html_500(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return error_response_for(
            request, "Internal error; nothing was charged.", "internal_error", 500
        )
    return defaults.server_error(request)


def json_or_html_400(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _wants_json(request):
        return error_response_for(request, "Bad request.", "bad_request", 400)
    return defaults.bad_request(request, exception)


handler404 = json_or_html_404
handler500 = json_or_html_500
handler400 = json_or_html_400
