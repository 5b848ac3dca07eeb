from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from ledger.api.serializers import BalanceSerializer
from ledger.selectors import merchant_balance


class BalanceView(APIView):
    @extend_schema(
        operation_id="balance_retrieve",
        summary="The merchant's balance per currency, from the ledger",
        responses=BalanceSerializer,
    )
    def get(self, request):
        balances = merchant_balance(request.user.merchant.id)
        return Response(
            {
                "object": "balance",
                "available": [
                    {"amount": b["available"], "currency": cur}
                    for cur, b in balances.items()
                ],
                "pending": [
                    {"amount": b["pending"], "currency": cur}
                    for cur, b in balances.items()
                ],
            }
        )
