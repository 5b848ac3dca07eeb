from django.utils.decorators import method_decorator
from django.views.decorators.debug import (
    sensitive_post_parameters,
    sensitive_variables,
)
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from vault.api.serializers import TokenCreateSerializer, TokenSerializer
from vault.exceptions import TokenNotFound
from vault.selectors import token_get_for_merchant
from vault.services import token_create


@method_decorator(sensitive_post_parameters("number", "cvc"), name="dispatch")
class TokenCreateView(APIView):
    """The only endpoint that accepts a card number."""

    @extend_schema(
        operation_id="tokens_create",
        request=TokenCreateSerializer,
        responses={201: TokenSerializer},
        description="Tokenize a card. The response never contains the number; "
        "the CVC is checked and discarded. Errors name the field in "
        "`error.param` and never echo the number.",
        examples=[
            OpenApiExample(
                "Visa test card",
                value={
                    "number": "4242 4242 4242 4242",
                    "exp_month": 12,
                    "exp_year": 2030,
                    "cvc": "123",
                },
                request_only=True,
            )
        ],
    )
    @sensitive_variables()
    def post(self, request):
        serializer = TokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = token_create(
            merchant_id=request.user.merchant.id, **serializer.validated_data
        )
        return Response(TokenSerializer(token).data, status=201)


class TokenDetailView(APIView):
    @extend_schema(operation_id="tokens_retrieve", responses={200: TokenSerializer})
    def get(self, request, token_id: str):
        token = token_get_for_merchant(
            token_id=token_id, merchant_id=request.user.merchant.id
        )
        if token is None:
            raise TokenNotFound("No such token.", param="id")
        return Response(TokenSerializer(token).data)
