"""The per-key limit on submissions (REMOVAL_RATE_LIMIT)."""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import ApiKey


class SubmissionRateThrottle(SimpleRateThrottle):
    """Counts submissions per API key in the cache.

    DRF checks throttles in ``initial()``, before the body is parsed and
    long before anything is charged, so a refused request costs nothing.
    The rate is read per request so it can be changed in tests and by
    settings overrides.
    """

    scope = "submission"

    def __init__(self):
        # SimpleRateThrottle reads DEFAULT_THROTTLE_RATES here; we read our
        # own setting in allow_request instead.
        pass

    def allow_request(self, request, view) -> bool:
        self.rate = settings.REMOVAL_RATE_LIMIT or None
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None  # refused as unauthenticated anyway
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
