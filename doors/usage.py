"""The usage page and its CSV export: the ledger's rows and, per day, the
jobs charged by how they ended.

It reads with the same query as ``GET /api/usage`` (``doors.usage_api``),
so the page, the file and the API agree row for row; its chart is inline
SVG (no script, no outside asset). A door: it reports billing's ledger
together with the jobs layer's outcomes, so it sits above both.
"""

import csv
import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.guards import account_required
from accounts.selectors import api_keys_for_account
from billing.models import LedgerEntry
from billing.selectors import (
    CHART_DAYS,
    UsageQuery,
    usage_entries,
    usage_query,
    usage_row,
    usage_summary,
)
from removal.selectors import batch_usage, daily_usage
from revid.errors import ApplicationError

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

# The chart's plot, in SVG user units. The SVG stretches to the page's width
# (preserveAspectRatio="none"), so it holds shapes only; its words (the day
# labels and the axis values) are HTML placed by percentage, so they keep a
# legible size at any width instead of shrinking with the drawing.
CHART_WIDTH, CHART_HEIGHT = 720, 160
CHART_TOP = 8
# A day label every week, counted back from the last day (always labelled):
# never two labels a day or two apart, at month ends or anywhere.
LABEL_EVERY_DAYS = 7


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


def _percent(value: float, whole: float) -> float:
    return round(value / whole * 100, 3)


def bar_chart(*, days: list[dict], series: list[tuple[str, str, str]]) -> dict:
    """Geometry of a stacked bar chart, one bar per day.

    ``series``: (key in the day dict, label, colour), stacked bottom-up. The
    template only places the shapes computed here: bars in SVG units, the
    day labels (``left``, % of the width) and the axis values (``top``, % of
    the height) as HTML.
    """
    plot_height = CHART_HEIGHT - CHART_TOP
    top = _nice_ceiling(max((sum(day[key] for key, _, _ in series) for day in days), default=0))
    slot = CHART_WIDTH / max(len(days), 1)
    bar_width = round(slot * 0.7, 2)
    baseline = CHART_HEIGHT
    bars, labels = [], []
    last = len(days) - 1
    for index, day in enumerate(days):
        x = round(index * slot + (slot - bar_width) / 2, 2)
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
        if (last - index) % LABEL_EVERY_DAYS == 0:
            # Centred under their bars, so always a week's width apart (the
            # end ones reach into the card's margin, never into each other).
            labels.append(
                {"left": _percent(x + bar_width / 2, CHART_WIDTH), "text": _day_label(day["date"])}
            )
    ticks = [
        {
            "y": round(baseline - fraction * plot_height, 2),
            "top": _percent(baseline - fraction * plot_height, CHART_HEIGHT),
            "value": round(top * fraction),
        }
        for fraction in (0, 0.5, 1)
        if fraction == 0 or top * fraction == int(top * fraction)
    ]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "baseline": baseline,
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
        "batches": batch_usage(query=query),
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
