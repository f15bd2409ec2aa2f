"""The customer's billing pages: usage (with its CSV export), pricing,
Stripe Checkout and Stripe's webhook.

Usage reads through ``billing.selectors`` with the same query as
``GET /api/usage``, so the page, the file and the API agree row for row;
its chart is inline SVG (no script, no outside asset). Payments go through
``billing.payments``; the webhook is the only path by which a payment
becomes credits.
"""

import csv
import logging
import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from urllib.parse import urlencode

import stripe
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accounts.guards import account_required
from accounts.selectors import account_for_user, api_keys_for_account
from billing import payments
from billing.models import CreditPack, LedgerEntry
from billing.selectors import (
    CHART_DAYS,
    UsageQuery,
    active_credit_packs,
    daily_usage,
    purchases_for_account,
    usage_entries,
    usage_query,
    usage_row,
    usage_summary,
)
from revid.errors import ApplicationError, error_response

PAGE_SIZE = 50
CSV_COLUMNS = [
    "id",
    "created_at",
    "kind",
    "amount",
    "balance_after",
    "job_id",
    "job_status",
    "api_key",
    "note",
]

# The chart's drawing area, in SVG user units (it scales to the page).
CHART_WIDTH, CHART_HEIGHT = 720, 180
CHART_LEFT, CHART_BOTTOM, CHART_TOP = 44, 22, 8


def _query(request: HttpRequest, account) -> UsageQuery:
    return usage_query(
        account=account,
        start=request.GET.get("from"),
        end=request.GET.get("to"),
        api_key_prefix=request.GET.get("api_key"),
    )


def _filter_params(query: UsageQuery) -> str:
    params = {"from": query.start.isoformat(), "to": query.end.isoformat()}
    if query.api_key is not None:
        params["api_key"] = query.api_key.prefix
    return urlencode(params)


def _nice_ceiling(value: int) -> int:
    """The axis maximum: 1, 2 or 5 times a power of ten, at least ``value``."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover (the loop always returns)


def _day_label(day: date) -> str:
    return f"{day:%b} {day.day}"


def bar_chart(*, days: list[dict], series: list[tuple[str, str, str]]) -> dict:
    """Geometry of a stacked bar chart, one bar per day.

    ``series``: (key in the day dict, label, colour), stacked bottom-up. The
    template only places the shapes computed here.
    """
    plot_width = CHART_WIDTH - CHART_LEFT
    plot_height = CHART_HEIGHT - CHART_BOTTOM - CHART_TOP
    top = _nice_ceiling(max((sum(day[key] for key, _, _ in series) for day in days), default=0))
    slot = plot_width / max(len(days), 1)
    bar_width = round(slot * 0.7, 2)
    baseline = CHART_TOP + plot_height
    bars, labels = [], []
    for index, day in enumerate(days):
        x = round(CHART_LEFT + index * slot + (slot - bar_width) / 2, 2)
        y = baseline
        parts = ", ".join(f"{day[key]} {label.lower()}" for key, label, _ in series)
        for key, _, colour in series:
            height = round(day[key] / top * plot_height, 2)
            if height > 0:
                y = round(y - height, 2)
                bars.append(
                    {
                        "x": x,
                        "y": y,
                        "width": bar_width,
                        "height": height,
                        "colour": colour,
                        "series": key,
                        "title": f"{_day_label(day['date'])}: {parts}",
                    }
                )
        if index % 7 == 0 or index == len(days) - 1:
            labels.append({"x": round(x + bar_width / 2, 2), "text": _day_label(day["date"])})
    ticks = [
        {"y": round(baseline - fraction * plot_height, 2), "value": round(top * fraction)}
        for fraction in (0, 0.5, 1)
        if fraction == 0 or top * fraction == int(top * fraction)
    ]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": CHART_LEFT,
        "right": CHART_WIDTH,
        "baseline": baseline,
        "label_y": CHART_HEIGHT - 6,
        "bars": bars,
        "labels": labels,
        "ticks": ticks,
        "legend": [{"label": label, "colour": colour} for _, label, colour in series],
        "totals": {key: sum(day[key] for day in days) for key, _, _ in series},
    }


@require_GET
@account_required(title="Usage")
def usage(request: HttpRequest) -> HttpResponse:
    account = request.account
    status, error = 200, ""
    try:
        query = _query(request, account)
    except ApplicationError as exc:
        # Show the error over the default view rather than a bare page.
        status, error = 400, exc.message
        query = usage_query(account=account)
    today = timezone.localdate()
    chart_query = replace(query, start=today - timedelta(days=CHART_DAYS - 1), end=today)
    chart_days = daily_usage(query=chart_query)
    page = Paginator(usage_entries(query=query), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "account": account,
        "query": query,
        "error": error,
        "summary": usage_summary(query=query),
        "kinds": LedgerEntry.Kind.choices,
        "page": page,
        "api_keys": api_keys_for_account(account=account),
        "filter_params": _filter_params(query),
        "chart_days": CHART_DAYS,
        "images_chart": bar_chart(
            days=chart_days,
            series=[
                ("images_completed", "Completed", "#127a4a"),
                ("images_failed", "Failed", "#b42318"),
            ],
        ),
        "credits_chart": bar_chart(
            days=chart_days, series=[("credits_spent", "Credits spent", "#5b4cf0")]
        ),
    }
    return render(request, "billing/usage.html", context, status=status)


class _Echo:
    """A file-like object whose write returns the line, for streaming."""

    def write(self, value: str) -> str:
        return value


def _csv_safe(value):
    # A spreadsheet runs a cell that starts with one of these as a formula;
    # notes are free text, so quote them as text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return f"'{value}"
    return value


def _csv_lines(query: UsageQuery) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for entry in usage_entries(query=query).iterator(chunk_size=500):
        row = usage_row(entry=entry)
        yield writer.writerow([_csv_safe(row[column]) for column in CSV_COLUMNS])


@require_GET
@account_required(title="Usage")
def usage_csv(request: HttpRequest) -> HttpResponse:
    account = request.account
    try:
        query = _query(request, account)
    except ApplicationError as exc:
        return HttpResponse(exc.message, status=400, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(_csv_lines(query), content_type="text/csv; charset=utf-8")
    filename = f"usage-{query.start:%Y%m%d}-{query.end:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


logger = logging.getLogger(__name__)


def _render_pricing(request: HttpRequest, *, error: str = "", status: int = 200) -> HttpResponse:
    account = account_for_user(user=request.user) if request.user.is_authenticated else None
    context = {
        "packs": active_credit_packs(),
        "payments_enabled": payments.payments_enabled(),
        "account": account,
        "purchases": purchases_for_account(account=account) if account else [],
        "checkout_error": error,
    }
    return render(request, "billing/pricing.html", context, status=status)


@require_GET
def pricing(request: HttpRequest) -> HttpResponse:
    return _render_pricing(request)


@require_POST
@account_required(title="Pricing")
def checkout(request: HttpRequest, pack_id: int) -> HttpResponse:
    """Opens a Checkout Session for the pack and sends the browser to Stripe."""
    pack = get_object_or_404(CreditPack, pk=pack_id, active=True)
    account = request.account
    if not payments.payments_enabled():
        return _render_pricing(
            request, error="Payments are not set up here; ask the administrator.", status=503
        )
    try:
        url = payments.create_checkout_session(
            account=account,
            pack=pack,
            success_url=request.build_absolute_uri(reverse("billing-checkout-success"))
            + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=request.build_absolute_uri(reverse("billing-checkout-cancel")),
            email=request.user.email,
        )
    except stripe.StripeError:
        logger.exception("Could not create a Checkout Session for pack %s", pack.pk)
        return _render_pricing(
            request,
            error="The payment service did not answer; nothing was charged. Try again shortly.",
            status=502,
        )
    return redirect(url)


@login_required
@require_GET
def checkout_success(request: HttpRequest) -> HttpResponse:
    # Grants nothing: the signed webhook does, possibly a moment later.
    return render(
        request, "billing/pricing_success.html", {"account": account_for_user(user=request.user)}
    )


@login_required
@require_GET
def checkout_cancel(request: HttpRequest) -> HttpResponse:
    messages.info(request, "Payment cancelled; nothing was charged.")
    return redirect("pricing")


@csrf_exempt
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Stripe's events, signature-checked with STRIPE_WEBHOOK_SECRET.

    Register this URL in Stripe for checkout.session.completed and
    charge.refunded. Any non-2xx answer makes Stripe retry later.
    """
    if request.method != "POST":
        return error_response("Stripe sends events with POST.", "method_not_allowed", 405)
    if not payments.payments_enabled():
        return error_response("Payments are not enabled.", "payments_disabled", 404)
    try:
        event = payments.verify_event(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except (ValueError, stripe.SignatureVerificationError):
        return error_response("Invalid Stripe signature or payload.", "invalid_signature", 400)
    try:
        outcome = payments.handle_event(event=event)
    except Exception:
        logger.exception("Stripe event %s (%s) failed", event.get("id"), event.get("type"))
        return error_response(
            "Could not process the event; Stripe will retry.", "processing_failed", 503
        )
    logger.info("Stripe event %s (%s): %s", event.get("id"), event.get("type"), outcome)
    return JsonResponse({"received": True, "outcome": outcome})
