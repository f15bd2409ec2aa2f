"""``GET /metrics``: Prometheus's text format, for operators.

Two sources, one page:

- what the database knows, read at scrape time (so it is right whatever
  process or machine did the work): jobs by status, model and door; the
  queue's depth and its oldest pending job's age (for autoscaling);
  credits charged and refunded; webhook deliveries by outcome; payments;
- what processes measure (job and stage durations, waiting clients),
  summed over this machine's processes by prometheus-client's
  multiprocess collector (``revid.observability``).

Access: with ``METRICS_TOKEN`` set, ``Authorization: Bearer <token>``;
without it, loopback clients only and only with DJANGO_DEBUG on (``make
run``), so a production host never publishes its numbers by accident.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from billing.models import LedgerEntry, Purchase
from removal.models import RemovalJob
from removal.selectors import pending_jobs
from revid.errors import error_response
from webhooks.models import WebhookDelivery


class DatabaseCollector:
    """Counts and ages read from the database at each scrape."""

    def collect(self):
        jobs = GaugeMetricFamily(
            "revid_jobs",
            "Jobs in the database by status, model and door (origin).",
            labels=["status", "model", "door"],
        )
        rows = RemovalJob.objects.values("status", "model_name", "origin").annotate(n=Count("id"))
        for row in rows.order_by():
            jobs.add_metric([row["status"], row["model_name"], row["origin"]], row["n"])
        yield jobs

        queue = pending_jobs()
        yield GaugeMetricFamily(
            "revid_queue_depth", "Jobs accepted and not yet started.", value=queue["pending"]
        )
        yield GaugeMetricFamily(
            "revid_queue_oldest_pending_seconds",
            "Age of the oldest job no worker has started (0: none waiting).",
            value=queue["oldest_pending_seconds"],
        )

        sums = LedgerEntry.objects.aggregate(
            charged=Sum("amount", filter=Q(kind=LedgerEntry.Kind.CHARGE)),
            refunded=Sum("amount", filter=Q(kind=LedgerEntry.Kind.REFUND)),
        )
        yield CounterMetricFamily(
            "revid_credits_charged", "Credits charged for jobs.", value=-(sums["charged"] or 0)
        )
        yield CounterMetricFamily(
            "revid_credits_refunded",
            "Credits refunded for jobs that failed.",
            value=sums["refunded"] or 0,
        )

        deliveries = CounterMetricFamily(
            "revid_webhook_deliveries",
            "Webhook delivery attempts by outcome (succeeded: a 2xx answer).",
            labels=["outcome"],
        )
        attempts = WebhookDelivery.objects.exclude(finished_at=None).aggregate(
            succeeded=Count("id", filter=Q(status_code__gte=200, status_code__lt=300)),
            total=Count("id"),
        )
        deliveries.add_metric(["succeeded"], attempts["succeeded"])
        deliveries.add_metric(["failed"], attempts["total"] - attempts["succeeded"])
        yield deliveries

        payments = Purchase.objects.aggregate(
            n=Count("id"), refunded=Count("id", filter=Q(amount_refunded__gt=0))
        )
        events = CounterMetricFamily(
            "revid_payment_events",
            "Paid Checkout Sessions granted, and those later refunded.",
            labels=["kind"],
        )
        events.add_metric(["purchase"], payments["n"])
        events.add_metric(["refund"], payments["refunded"])
        yield events


def _loopback(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    return settings.DEBUG and _loopback(request)


def registry() -> CollectorRegistry:
    """This machine's processes' metrics and the database's, for one scrape."""
    scrape = CollectorRegistry()
    multiprocess.MultiProcessCollector(scrape)
    scrape.register(DatabaseCollector())
    return scrape


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        message = (
            "Send Authorization: Bearer <METRICS_TOKEN>."
            if settings.METRICS_TOKEN
            else "Metrics are served to loopback with DJANGO_DEBUG on only; set METRICS_TOKEN."
        )
        status = 401 if settings.METRICS_TOKEN else 403
        return error_response(message, "metrics_forbidden", status)
    response = HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
