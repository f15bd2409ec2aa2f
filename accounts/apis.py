"""What a key holder may read about its own account."""

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import account_summary
from revid.errors import ErrorSerializer


class ApiKeyInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The key's public prefix; the key itself is not kept")


class AccountOutputSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    account = serializers.CharField(help_text="The account's name")
    credit_balance = serializers.IntegerField(min_value=0)
    price_per_request = serializers.IntegerField(min_value=0, help_text="Credits per removal")
    requests_affordable = serializers.IntegerField(
        min_value=0, allow_null=True, help_text="Removals the balance pays for (null if free)"
    )
    api_key = ApiKeyInfoSerializer()


class AccountApi(APIView):
    @extend_schema(
        operation_id="get_account",
        responses={
            200: AccountOutputSerializer,
            401: OpenApiResponse(
                description="Missing, wrong or revoked API key.",
                response=ErrorSerializer,
            ),
        },
        description="The balance of the account that owns the presented key, and the price.",
    )
    def get(self, request: Request) -> Response:
        summary = account_summary(
            account=request.auth.account, price=settings.REMOVAL_PRICE_CREDITS
        )
        return Response(
            {
                "success": True,
                **summary,
                "api_key": {"name": request.auth.name, "prefix": request.auth.prefix},
            }
        )
