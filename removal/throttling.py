"""The per-key limit on submissions (REMOVAL_RATE_LIMIT)."""

import time

from django.conf import settings
from django.db import transaction
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from accounts.models import ApiKey
from removal.models import SubmissionRateBucket


def take_submission_slot(*, key: str, limit: int, period: float, now: float | None = None) -> float:
    """Records one submission under ``key``; 0 if allowed, else seconds to wait.

    A sliding window, as DRF's own throttles count: at most ``limit``
    submissions in any ``period`` seconds. The bucket row is locked for the
    read-modify-write, so concurrent requests in any number of processes
    are counted exactly.
    """
    now = time.time() if now is None else now
    SubmissionRateBucket.objects.get_or_create(key=key)
    with transaction.atomic():
        bucket = SubmissionRateBucket.objects.select_for_update().get(key=key)
        hits = [hit for hit in bucket.hits if hit > now - period]
        if len(hits) >= limit:
            wait = hits[-limit] + period - now
            if hits != bucket.hits:
                bucket.hits = hits
                bucket.save(update_fields=["hits"])
            return max(wait, 0.001)
        bucket.hits = [*hits, now]
        bucket.save(update_fields=["hits"])
    return 0.0


class SubmissionRateThrottle(BaseThrottle):
    """Counts submissions per API key in the database.

    DRF checks throttles in ``initial()``, before the body is parsed and
    long before anything is charged, so a refused request costs nothing.
    The rate is read per request so it can be changed in tests and by
    settings overrides.
    """

    def allow_request(self, request, view) -> bool:
        self._wait = None
        rate = settings.REMOVAL_RATE_LIMIT
        if not rate or not isinstance(request.auth, ApiKey):
            return True  # no limit, or refused as unauthenticated anyway
        limit, period = SimpleRateThrottle.parse_rate(None, rate)
        wait = take_submission_slot(key=f"submission:{request.auth.pk}", limit=limit, period=period)
        if wait:
            self._wait = wait
            return False
        return True

    def wait(self) -> float | None:
        return self._wait
