"""PUBLIC_BASE_URL: the scheme and host of every absolute URL, behind a proxy."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse


class PublicBaseUrlMiddleware:
    """Gives each request PUBLIC_BASE_URL's scheme and host.

    Django builds absolute URLs (``request.build_absolute_uri``: results'
    ``image_url``, allauth's email links, Stripe's return URLs) and checks
    CSRF origins from the request's scheme and Host header, which a proxy in
    front may not pass on (nginx sends its upstream's address by default).
    With PUBLIC_BASE_URL set, every request is taken as made to that address;
    unset, Django drops this middleware and requests are left as they come.

    Sync and async: under the ASGI server a sync middleware would hold a
    thread for the whole of every request below it, waiting ones included.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        if not settings.PUBLIC_BASE_URL:
            raise MiddlewareNotUsed
        self.get_response = get_response
        self.scheme, _, self.host = settings.PUBLIC_BASE_URL.partition("://")
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.META["HTTP_HOST"] = self.host
        request.META["wsgi.url_scheme"] = self.scheme
        scope = getattr(request, "scope", None)
        if scope is not None:
            # An ASGI request takes its scheme from the scope, not wsgi.url_scheme.
            scope["scheme"] = self.scheme
        # The proxy's own scheme header would win over both.
        if settings.SECURE_PROXY_SSL_HEADER:
            request.META.pop(settings.SECURE_PROXY_SSL_HEADER[0], None)
        return self.get_response(request)
