"""GET /api/usage: the key holder's ledger rows and per-day totals."""

from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.models import LedgerEntry
from billing.selectors import (
    CHART_DAYS,
    FIRST_DAY,
    LAST_DAY,
    MAX_PERIOD_DAYS,
    usage_entries,
    usage_query,
    usage_row,
    usage_summary,
)
from removal.selectors import daily_usage
from revid.errors import ApplicationError, ErrorSerializer

API_PAGE_SIZE = 500


class UsageRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    kind = serializers.ChoiceField(choices=LedgerEntry.Kind.choices)
    amount = serializers.IntegerField(help_text="Signed: charges are negative")
    balance_after = serializers.IntegerField(help_text="The account's balance after this row")
    job_id = serializers.UUIDField(allow_null=True)
    job_status = serializers.CharField(allow_null=True)
    api_key = serializers.CharField(allow_null=True, help_text="Prefix of the job's API key")
    note = serializers.CharField(allow_blank=True)


class UsageDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    images_completed = serializers.IntegerField(min_value=0)
    images_failed = serializers.IntegerField(min_value=0)
    credits_spent = serializers.IntegerField(help_text="Charges less refunds booked that day")
    credits_added = serializers.IntegerField(help_text="Grants, adjustments and purchases, net")


# Built with type(): "from" is a Python keyword, and the keys match the
# query string's.
UsagePeriodSerializer = type(
    "UsagePeriodSerializer",
    (serializers.Serializer,),
    {
        "from": serializers.DateField(help_text="First day, included"),
        "to": serializers.DateField(help_text="Last day, included"),
    },
)


class UsageOutputSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    account = serializers.CharField()
    period = UsagePeriodSerializer()
    api_key = serializers.CharField(allow_null=True, help_text="The key filter, if any")
    balance = serializers.IntegerField(min_value=0, help_text="The balance now")
    opening_balance = serializers.IntegerField(help_text="The balance before the period")
    closing_balance = serializers.IntegerField(
        help_text="The balance at the end of the period: opening_balance plus its rows"
    )
    totals = serializers.DictField(
        child=serializers.IntegerField(), help_text="Sum of the rows by kind"
    )
    days = UsageDaySerializer(many=True)
    rows = UsageRowSerializer(many=True, help_text="Newest first")
    row_count = serializers.IntegerField(min_value=0)
    page = serializers.IntegerField(min_value=1)
    pages = serializers.IntegerField(min_value=1)


class UsageApi(APIView):
    @extend_schema(
        operation_id="get_usage",
        parameters=[
            OpenApiParameter(
                "from",
                OpenApiTypes.DATE,
                description=f"First day (YYYY-MM-DD, UTC). Default: {CHART_DAYS - 1} days "
                "before `to`.",
            ),
            OpenApiParameter(
                "to", OpenApiTypes.DATE, description="Last day, included. Default: today."
            ),
            OpenApiParameter(
                "api_key",
                OpenApiTypes.STR,
                description="Only the rows of this key's jobs (its prefix).",
            ),
            OpenApiParameter(
                "page", OpenApiTypes.INT, description=f"{API_PAGE_SIZE} rows a page; default 1."
            ),
        ],
        responses={
            200: UsageOutputSerializer,
            400: OpenApiResponse(
                description=f"A malformed date or one outside {FIRST_DAY}..{LAST_DAY}, "
                f"`from` after `to`, a period over "
                f"{MAX_PERIOD_DAYS} days, an unknown key or page.",
                response=ErrorSerializer,
            ),
            401: OpenApiResponse(
                description="Missing, wrong or revoked API key.", response=ErrorSerializer
            ),
        },
        description="The account's ledger rows in a period (charges, refunds, grants, "
        "adjustments, purchases), per-day totals and the balance. Without a key filter, "
        "`opening_balance` plus the period's rows is `closing_balance`.",
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        query = usage_query(
            account=request.auth.account,
            start=params.get("from"),
            end=params.get("to"),
            api_key_prefix=params.get("api_key"),
        )
        paginator = Paginator(usage_entries(query=query), API_PAGE_SIZE)
        try:
            page = paginator.page(params.get("page") or 1)
        except (EmptyPage, PageNotAnInteger):
            raise ApplicationError(
                f"'page' must be a number from 1 to {paginator.num_pages}.", code="invalid_page"
            ) from None
        summary = usage_summary(query=query)
        data = {
            "success": True,
            "account": query.account.name,
            "period": {"from": query.start, "to": query.end},
            "api_key": query.api_key.prefix if query.api_key else None,
            "balance": summary["balance"],
            "opening_balance": summary["opening_balance"],
            "closing_balance": summary["closing_balance"],
            "totals": summary["by_kind"],
            "days": daily_usage(query=query),
            "rows": [usage_row(entry=entry) for entry in page.object_list],
            "row_count": paginator.count,
            "page": page.number,
            "pages": paginator.num_pages,
        }
        return Response(UsageOutputSerializer(data).data)
