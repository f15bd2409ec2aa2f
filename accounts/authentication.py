from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from accounts.models import ApiKey

# Recording last use on every request would turn each read into a write;
# once a minute is precise enough for "last used".
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates ``x-api-key`` (any case, as HTTP headers are)."""

    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        raw_key = request.META.get("HTTP_X_API_KEY")
        if raw_key is None:
            return None
        raw_key = raw_key.strip()
        if not raw_key or len(raw_key) > 200:
            raise exceptions.AuthenticationFailed()
        try:
            api_key = ApiKey.objects.get_from_key(raw_key)
        except ApiKey.DoesNotExist:
            raise exceptions.AuthenticationFailed() from None
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed()
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
        # The key's public prefix for the request's log line (never the key).
        request._request.api_key_prefix = api_key.prefix
        return (None, api_key)

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when the key is missing or wrong.
        return "x-api-key"


class HasApiKey(permissions.BasePermission):
    def has_permission(self, request: Request, view) -> bool:
        return isinstance(request.auth, ApiKey)
