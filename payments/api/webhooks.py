"""Webhook endpoints API: thin views over payments.services.webhooks.endpoints."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.error_codes import ErrorCode as CoreCode
from core.errors import InvalidRequest
from core.serializers import StrictCharField, StrictSerializer
from payments.api.views import IDEMPOTENCY_HEADER, idempotent_response
from payments.exceptions import WebhookEndpointNotFound
from payments.models import WebhookEndpoint
from payments.selectors import (
    webhook_delivery_list,
    webhook_endpoint_get,
    webhook_endpoint_list,
)
from payments.services.idempotency import check_key
from payments.services.webhooks.endpoints import (
    EVENT_TYPES,
    MAX_URL_LENGTH,
    webhook_endpoint_create,
    webhook_endpoint_disable,
)

# --- Serializers -------------------------------------------------------------


class WebhookEndpointCreateSerializer(StrictSerializer):
    """Shapes only; the URL and event rules are the service's."""

    url = StrictCharField(max_length=MAX_URL_LENGTH)
    enabled_events = serializers.ListField(
        child=StrictCharField(max_length=64),
        required=False,
        max_length=len(EVENT_TYPES) + 1,
        help_text="Event types to receive; empty or omitted means all. One of: "
        + ", ".join(EVENT_TYPES)
        + '; or ["*"].',
    )


class WebhookEndpointSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    url = serializers.CharField()
    enabled_events = serializers.ListField(child=serializers.CharField())
    status = serializers.CharField(help_text="active or disabled")
    created_at = serializers.DateTimeField()

    def get_object(self, obj) -> str:
        return "webhook_endpoint"


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        help_text="The signing secret (Standard Webhooks). Shown only here."
    )


class WebhookEndpointListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = WebhookEndpointSerializer(many=True)
    has_more = serializers.BooleanField()


class WebhookDeliverySerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    event = serializers.CharField(source="event_id")
    event_type = serializers.CharField()
    status = serializers.CharField(help_text="pending, succeeded or failed")
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.SerializerMethodField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)

    def get_object(self, obj) -> str:
        return "webhook_delivery"

    def get_next_attempt_at(self, obj) -> str | None:
        if obj.status != "pending" or obj.next_attempt_at is None:
            return None
        return serializers.DateTimeField().to_representation(obj.next_attempt_at)


class WebhookDeliveryListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = WebhookDeliverySerializer(many=True)
    has_more = serializers.BooleanField()


class WebhookDeliveryListQuerySerializer(StrictSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)
    starting_after = serializers.CharField(required=False, max_length=40)


# --- Views -------------------------------------------------------------------


def _endpoint_or_404(request, endpoint_id: str) -> WebhookEndpoint:
    endpoint = webhook_endpoint_get(
        merchant=request.user.merchant, endpoint_id=endpoint_id
    )
    if endpoint is None:
        raise WebhookEndpointNotFound("No such webhook endpoint.", param="id")
    return endpoint


class WebhookEndpointListCreateView(APIView):
    @extend_schema(
        operation_id="webhook_endpoints_create",
        request=WebhookEndpointCreateSerializer,
        responses={201: WebhookEndpointCreatedSerializer},
        parameters=[IDEMPOTENCY_HEADER],
        description="Events are POSTed as JSON `{id, object, type, created, data: "
        "{object}}`, signed per Standard Webhooks (`webhook-id`, "
        "`webhook-timestamp`, `webhook-signature`) with the returned `secret`, "
        "which is shown only in this response (and its idempotent replays).",
    )
    def post(self, request):
        check_key(request.headers.get("Idempotency-Key"))
        serializer = WebhookEndpointCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        merchant = request.user.merchant

        def work():
            endpoint, _secret = webhook_endpoint_create(
                merchant=merchant, **serializer.validated_data
            )
            # The stored (replayable) response leaves the secret out; it is
            # added below from the sealed column, never kept in clear.
            return 201, WebhookEndpointSerializer(endpoint).data

        response = idempotent_response(request, work)
        if response.status_code == 201:
            endpoint = _endpoint_or_404(request, response.data["id"])
            response.data = {**response.data, "secret": endpoint.secret}
        return response

    @extend_schema(
        operation_id="webhook_endpoints_list",
        responses={200: WebhookEndpointListSerializer},
    )
    def get(self, request):
        rows = webhook_endpoint_list(merchant=request.user.merchant)
        return Response(
            {
                "object": "list",
                "data": WebhookEndpointSerializer(rows, many=True).data,
                "has_more": False,
            }
        )


class WebhookEndpointDetailView(APIView):
    @extend_schema(
        operation_id="webhook_endpoints_retrieve",
        responses={200: WebhookEndpointSerializer},
    )
    def get(self, request, endpoint_id: str):
        endpoint = _endpoint_or_404(request, endpoint_id)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhook_endpoints_disable",
        responses={200: WebhookEndpointSerializer},
        description="Disable the endpoint (idempotent): nothing more is sent to it.",
    )
    def delete(self, request, endpoint_id: str):
        endpoint = webhook_endpoint_disable(
            endpoint=_endpoint_or_404(request, endpoint_id)
        )
        return Response(WebhookEndpointSerializer(endpoint).data)


class WebhookDeliveryListView(APIView):
    @extend_schema(
        operation_id="webhook_deliveries_list",
        parameters=[
            WebhookDeliveryListQuerySerializer,
            OpenApiParameter("endpoint_id", location=OpenApiParameter.PATH),
        ],
        responses={200: WebhookDeliveryListSerializer},
    )
    def get(self, request, endpoint_id: str):
        endpoint = _endpoint_or_404(request, endpoint_id)
        query = WebhookDeliveryListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        after = query.validated_data.get("starting_after")
        if after and not endpoint.deliveries.filter(pk=after).exists():
            raise InvalidRequest(
                "No such delivery.",
                param="starting_after",
                code=CoreCode.RESOURCE_MISSING,
            )
        rows, has_more = webhook_delivery_list(
            endpoint=endpoint,
            limit=query.validated_data["limit"],
            starting_after=after,
        )
        return Response(
            {
                "object": "list",
                "data": WebhookDeliverySerializer(rows, many=True).data,
                "has_more": has_more,
            }
        )
