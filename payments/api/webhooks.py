"""Webhook endpoints and events API: thin views over
payments.services.webhooks.endpoints and the selectors."""

from datetime import UTC, datetime

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.error_codes import ErrorCode as CoreCode
from core.errors import InvalidRequest
from core.serializers import StrictCharField, StrictSerializer
from payments.api.views import IDEMPOTENCY_HEADER, idempotent_response
from payments.exceptions import EventNotFound, WebhookEndpointNotFound
from payments.models import WebhookEndpoint
from payments.selectors import (
    event_get,
    event_list,
    webhook_delivery_list,
    webhook_endpoint_get,
    webhook_endpoint_list,
)
from payments.services.idempotency import check_key
from payments.services.webhooks.dispatch import events_render
from payments.services.webhooks.endpoints import (
    EVENT_TYPES,
    MAX_DESCRIPTION_LENGTH,
    MAX_ROTATION_OVERLAP_SECONDS,
    MAX_URL_LENGTH,
    RESEND_MAX_EVENTS,
    ROTATION_OVERLAP_SECONDS,
    webhook_endpoint_create,
    webhook_endpoint_disable,
    webhook_endpoint_resend,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)

# Unix seconds up to the end of year 9999.
MAX_UNIX_SECONDS = 253_402_300_799

# --- Serializers -------------------------------------------------------------


def _enabled_events_field():
    return serializers.ListField(
        child=StrictCharField(max_length=64),
        required=False,
        max_length=len(EVENT_TYPES) + 1,
        help_text="Event types to receive; empty or omitted means all. One of: "
        + ", ".join(EVENT_TYPES)
        + '; or ["*"].',
    )


class WebhookEndpointCreateSerializer(StrictSerializer):
    """Shapes only; the URL and event rules are the service's."""

    url = StrictCharField(max_length=MAX_URL_LENGTH)
    enabled_events = _enabled_events_field()
    description = StrictCharField(
        max_length=MAX_DESCRIPTION_LENGTH, required=False, allow_blank=True
    )


class WebhookEndpointUpdateSerializer(StrictSerializer):
    url = StrictCharField(max_length=MAX_URL_LENGTH, required=False)
    enabled_events = _enabled_events_field()
    description = StrictCharField(
        max_length=MAX_DESCRIPTION_LENGTH, required=False, allow_blank=True
    )
    status = serializers.ChoiceField(
        choices=WebhookEndpoint.Status.values,
        required=False,
        help_text="active re-enables a disabled endpoint; disabled disables it.",
    )


class WebhookEndpointRotateSerializer(StrictSerializer):
    expires_in = serializers.IntegerField(
        min_value=0,
        max_value=MAX_ROTATION_OVERLAP_SECONDS,
        default=ROTATION_OVERLAP_SECONDS,
        help_text="Seconds the replaced secret keeps signing beside the new one "
        "(default 24 hours, at most 7 days; 0 stops it at once).",
    )


class CreatedRangeSerializer(StrictSerializer):
    gte = serializers.IntegerField(min_value=0, max_value=MAX_UNIX_SECONDS)
    lt = serializers.IntegerField(min_value=0, max_value=MAX_UNIX_SECONDS)


class WebhookEndpointResendSerializer(StrictSerializer):
    event = StrictCharField(
        max_length=40, required=False, help_text="One event to deliver again."
    )
    created = CreatedRangeSerializer(
        required=False,
        help_text="Or every event of the endpoint's types created in [gte, lt) "
        "(unix seconds).",
    )

    def validate(self, attrs):
        if ("event" in attrs) == ("created" in attrs):
            raise InvalidRequest("Give either event or created.", param="event")
        return attrs


class WebhookEndpointResendResultSerializer(serializers.Serializer):
    object = serializers.CharField(default="webhook_resend")
    endpoint = serializers.CharField()
    events = serializers.IntegerField(help_text="Events due for delivery now.")


class WebhookEndpointSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    url = serializers.CharField()
    description = serializers.CharField()
    enabled_events = serializers.ListField(child=serializers.CharField())
    status = serializers.CharField(help_text="active or disabled")
    disabled_reason = serializers.SerializerMethodField(
        help_text="Why a disabled endpoint is disabled; null while active."
    )
    rotation_ends_at = serializers.SerializerMethodField(
        help_text="While a rotated-out secret still signs (beside the current "
        "one), when it stops; else null."
    )
    created_at = serializers.DateTimeField()

    def get_object(self, obj) -> str:
        return "webhook_endpoint"

    def get_disabled_reason(self, obj) -> str | None:
        return obj.disabled_reason or None if obj.status == "disabled" else None

    def get_rotation_ends_at(self, obj) -> str | None:
        expires = obj.previous_secret_expires_at
        if expires is None or expires <= datetime.now(UTC):
            return None
        return serializers.DateTimeField().to_representation(expires)


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
    status = serializers.CharField(
        help_text="pending, paused (its endpoint was disabled for failing), "
        "succeeded or failed"
    )
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.SerializerMethodField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    last_response_body = serializers.CharField(
        help_text="The first 4 KiB of the endpoint's last answer."
    )
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


class EventDataSerializer(serializers.Serializer):
    object = serializers.DictField(
        help_text="The payment (or, for refund.* events, the refund) as the API "
        "renders it now."
    )


class EventSerializer(serializers.Serializer):
    """The shape ``events_render`` makes (also each webhook's body)."""

    id = serializers.CharField()
    object = serializers.CharField(default="event")
    type = serializers.CharField()
    created = serializers.IntegerField(help_text="Unix seconds.")
    data = EventDataSerializer()


class EventListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = EventSerializer(many=True)
    has_more = serializers.BooleanField()


class EventListQuerySerializer(StrictSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)
    starting_after = serializers.CharField(required=False, max_length=40)
    type = serializers.ChoiceField(choices=EVENT_TYPES, required=False)
    created_gte = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_UNIX_SECONDS
    )
    created_lt = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_UNIX_SECONDS
    )


# ``created[gte]`` in the query string is ``created_gte`` in the serializer.
_BRACKETED = {"created[gte]": "created_gte", "created[lt]": "created_lt"}
EVENT_LIST_PARAMETERS = [
    OpenApiParameter("limit", int, description="1-100, default 10"),
    OpenApiParameter("starting_after", str, description="an event id: older ones"),
    OpenApiParameter("type", str, enum=list(EVENT_TYPES)),
    OpenApiParameter("created[gte]", int, description="created at or after (unix s)"),
    OpenApiParameter("created[lt]", int, description="created before (unix s)"),
]


def _unix(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


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
        operation_id="webhook_endpoints_update",
        request=WebhookEndpointUpdateSerializer,
        responses={200: WebhookEndpointSerializer},
        description="Change the url, enabled_events or description; `status: "
        "active` re-enables a disabled endpoint. An endpoint Surge disabled for "
        "failing resumes where it stopped; one disabled on request receives the "
        "events made from then on.",
    )
    def patch(self, request, endpoint_id: str):
        endpoint = _endpoint_or_404(request, endpoint_id)
        serializer = WebhookEndpointUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_update(
            endpoint=endpoint, **serializer.validated_data
        )
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhook_endpoints_disable",
        responses={200: WebhookEndpointSerializer},
        description="Disable the endpoint (idempotent): nothing more is sent to it.",
    )
    def delete(self, request, endpoint_id: str):
        endpoint = webhook_endpoint_disable(
            endpoint=_endpoint_or_404(request, endpoint_id),
            reason="Disabled through the API.",
        )
        return Response(WebhookEndpointSerializer(endpoint).data)


class WebhookEndpointRotateSecretView(APIView):
    @extend_schema(
        operation_id="webhook_endpoints_rotate_secret",
        request=WebhookEndpointRotateSerializer,
        responses={200: WebhookEndpointCreatedSerializer},
        parameters=[IDEMPOTENCY_HEADER],
        description="Make a new signing secret, returned only in this response "
        "(and its idempotent replays, which show the secret in force). The "
        "replaced secret keeps signing for `expires_in` seconds: meanwhile "
        "`webhook-signature` carries both signatures, space-separated.",
    )
    def post(self, request, endpoint_id: str):
        check_key(request.headers.get("Idempotency-Key"))
        endpoint = _endpoint_or_404(request, endpoint_id)
        serializer = WebhookEndpointRotateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        def work():
            rotated, _secret = webhook_endpoint_rotate_secret(
                endpoint=endpoint, **serializer.validated_data
            )
            # As at creation: the stored response leaves the secret out.
            return 200, WebhookEndpointSerializer(rotated).data

        response = idempotent_response(request, work)
        if response.status_code == 200:
            endpoint.refresh_from_db()
            response.data = {**response.data, "secret": endpoint.secret}
        return response


class WebhookEndpointResendView(APIView):
    @extend_schema(
        operation_id="webhook_endpoints_resend",
        request=WebhookEndpointResendSerializer,
        responses={202: WebhookEndpointResendResultSerializer},
        description="Deliver again one event (`event`), or every event of the "
        "endpoint's types created in a range (`created: {gte, lt}`, unix "
        f"seconds, at most {RESEND_MAX_EVENTS} events), with the same "
        "`webhook-id` as before. Events the endpoint never had are delivered "
        "for the first time.",
    )
    def post(self, request, endpoint_id: str):
        endpoint = _endpoint_or_404(request, endpoint_id)
        serializer = WebhookEndpointResendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        created = data.get("created") or {}
        count = webhook_endpoint_resend(
            endpoint=endpoint,
            event_id=data.get("event"),
            created_gte=_unix(created.get("gte")),
            created_lt=_unix(created.get("lt")),
        )
        return Response(
            {"object": "webhook_resend", "endpoint": endpoint.pk, "events": count},
            status=202,
        )


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


class EventListView(APIView):
    @extend_schema(
        operation_id="events_list",
        parameters=EVENT_LIST_PARAMETERS,
        responses={200: EventListSerializer},
        description="The merchant's events, newest first; each as its webhook "
        "body, with `data.object` rendered as it is now.",
    )
    def get(self, request):
        params = {_BRACKETED.get(k, k): v for k, v in request.query_params.items()}
        query = EventListQuerySerializer(data=params)
        if not query.is_valid():
            field = next(iter(query.errors))
            raise InvalidRequest(
                str(query.errors[field][0]),
                param={v: k for k, v in _BRACKETED.items()}.get(field, field),
                code=CoreCode.PARAMETER_INVALID,
            )
        data = query.validated_data
        merchant = request.user.merchant
        after = data.get("starting_after")
        if after and event_get(merchant=merchant, event_id=after) is None:
            raise InvalidRequest(
                "No such event.",
                param="starting_after",
                code=CoreCode.RESOURCE_MISSING,
            )
        rows, has_more = event_list(
            merchant=merchant,
            limit=data["limit"],
            starting_after=after,
            type=data.get("type"),
            created_gte=_unix(data.get("created_gte")),
            created_lt=_unix(data.get("created_lt")),
        )
        return Response(
            {"object": "list", "data": events_render(rows), "has_more": has_more}
        )


class EventDetailView(APIView):
    @extend_schema(operation_id="events_retrieve", responses={200: EventSerializer})
    def get(self, request, event_id: str):
        event = event_get(merchant=request.user.merchant, event_id=event_id)
        if event is None:
            raise EventNotFound("No such event.", param="id")
        return Response(events_render([event])[0])
