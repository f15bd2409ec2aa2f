"""The per-key limit on submissions (REMOVAL_RATE_LIMIT)."""

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from accounts.models import ApiKey
from removal.models import SubmissionRateBucket


@dataclass(frozen=True)
class RateState:
    """Where a key stands against the limit, for the X-RateLimit-* headers."""

    limit: int
    remaining: int
    reset_at: float  # UNIX time at which the oldest counted submission leaves the window
    wait: float  # 0 when this submission was allowed, else seconds until one would be


def take_submission_slot(
    *, key: str, limit: int, period: float, now: float | None = None
) -> RateState:
    """Records one submission under ``key``, if the limit allows it.

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
        wait = 0.0
        if len(hits) >= limit:
            wait = max(hits[-limit] + period - now, 0.001)
        else:
            hits.append(now)
        if hits != bucket.hits:
            bucket.hits = hits
            bucket.save(update_fields=["hits"])
    return RateState(
        limit=limit,
        remaining=max(limit - len(hits), 0),
        reset_at=(hits[0] + period) if hits else now,
        wait=wait,
    )


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
        # The key's prefix (unique, 8 characters): its pk, prefix.hash, is
        # too long for the bucket's 100-character key on PostgreSQL.
        state = take_submission_slot(
            key=f"submission:{request.auth.prefix}", limit=limit, period=period
        )
        # For doors that report the limit in headers (the remove.bg dialect).
        request._request.submission_rate = state
        if state.wait:
            self._wait = state.wait
            return False
        return True

    def wait(self) -> float | None:
        return self._wait
