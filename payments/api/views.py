from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from core import logs
from core.error_codes import ErrorCode as CoreCode
from core.errors import InvalidRequest, NotFound
from payments import metrics
from payments.api.serializers import (
    PaymentBatchCreatedSerializer,
    PaymentBatchCreateSerializer,
    PaymentBatchSummarySerializer,
    PaymentCreateSerializer,
    PaymentListQuerySerializer,
    PaymentListSerializer,
    PaymentSerializer,
    RefundCreateSerializer,
    RefundListQuerySerializer,
    RefundListSerializer,
    RefundSerializer,
    batch_items_validate,
    payment_create_validate,
)
from payments.exceptions import PaymentNotFound
from payments.models import PaymentBatch
from payments.rendering import payment_render, refund_render
from payments.selectors import payment_get, payment_list, refund_get, refund_list
from payments.services.batches import payment_batch_submit, payment_batch_summary
from payments.services.idempotency import check_key, idempotent_call, request_hash
from payments.services.intake import payment_accept
from payments.services.refunds import refund_create

logger = logs.get_logger(__name__)

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=True,
    description="Unique per request (<= 255 chars); a retry with the same key and "
    "body replays the stored response for 24 hours.",
)


def idempotent_response(request, work) -> Response:
    """Validate the key, run ``work`` once per key, replay afterwards."""
    merchant = request.user.merchant
    key = check_key(request.headers.get("Idempotency-Key"))
    result = idempotent_call(
        merchant=merchant,
        key=key,
        method=request.method,
        path=request.path,
        req_hash=request_hash(request.data),
        work=work,
    )
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    if (
        not result.replayed
        and result.status < 300
        and request.path.endswith("payments")
    ):
        metrics.payments_initiated(1)
    return Response(result.body, status=result.status, headers=headers)


class PaymentListCreateView(APIView):
    def payments_requested(self, request) -> int:
        """What this request counts against the merchant's payment quotas."""
        return 1 if request.method == "POST" else 0

    @extend_schema(
        operation_id="payments_create",
        request=PaymentCreateSerializer,
        responses={202: PaymentSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request):
        key = check_key(request.headers.get("Idempotency-Key"))
        data = request.data
        fields = payment_create_validate(data)
        result = payment_accept(
            merchant=request.user.merchant,
            key=key,
            path=request.path,
            req_hash=request_hash(data),
            **fields,
        )
        if result.replayed:
            return Response(
                result.body,
                status=result.status,
                headers={"Idempotent-Replayed": "true"},
            )
        metrics.payments_initiated(1)
        logger.info("payment.accepted", payment_id=result.body["id"])
        return Response(result.body, status=result.status)

    @extend_schema(
        operation_id="payments_list",
        parameters=[PaymentListQuerySerializer],
        responses={200: PaymentListSerializer},
    )
    def get(self, request):
        query = PaymentListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        merchant = request.user.merchant
        after = query.validated_data.get("starting_after")
        if after and payment_get(merchant=merchant, payment_id=after) is None:
            raise InvalidRequest(
                "No such payment.",
                param="starting_after",
                code=CoreCode.RESOURCE_MISSING,
            )
        rows, has_more = payment_list(
            merchant=merchant,
            limit=query.validated_data["limit"],
            starting_after=after,
            status=query.validated_data.get("status"),
        )
        return Response(
            {
                "object": "list",
                "data": [payment_render(p) for p in rows],
                "has_more": has_more,
            }
        )


class PaymentDetailView(APIView):
    @extend_schema(operation_id="payments_retrieve", responses={200: PaymentSerializer})
    def get(self, request, payment_id: str):
        payment = payment_get(merchant=request.user.merchant, payment_id=payment_id)
        if payment is None:
            raise PaymentNotFound("No such payment.", param="id")
        return Response(payment_render(payment))


class PaymentBatchCreateView(APIView):
    def payments_requested(self, request) -> int:
        """A batch counts its payments (a malformed one counts as one request:
        its 400 comes after)."""
        items = request.data.get("payments") if isinstance(request.data, dict) else None
        return len(items) if isinstance(items, list) and items else 1

    @extend_schema(
        operation_id="payment_batches_create",
        request=PaymentBatchCreateSerializer,
        responses={202: PaymentBatchCreatedSerializer},
        parameters=[IDEMPOTENCY_HEADER],
        description="Up to 1,000 payments, all or nothing: a 400 lists every "
        "invalid item by index and field in `error.errors`.",
    )
    def post(self, request):
        check_key(request.headers.get("Idempotency-Key"))
        data = request.data
        if not isinstance(data, dict) or set(data) != {"payments"}:
            raise InvalidRequest(
                "Body must be an object with exactly one field, payments.",
                param="payments",
            )
        merchant = request.user.merchant

        items, errors = batch_items_validate(data["payments"])

        def work():
            batch, payments = payment_batch_submit(
                merchant=merchant, items=items, errors=errors
            )
            logger.info(
                "payment_batch.accepted",
                batch_id=batch.pk,
                payment_ids=[p.pk for p in payments],
            )
            return 202, {
                "id": batch.pk,
                "object": "payment_batch",
                "count": batch.count,
                "total_amount": batch.total_amount,
                "payments": [{"id": p.pk, "reference": p.reference} for p in payments],
            }

        return idempotent_response(request, work)


class PaymentBatchDetailView(APIView):
    @extend_schema(
        operation_id="payment_batches_retrieve",
        responses={200: PaymentBatchSummarySerializer},
    )
    def get(self, request, batch_id: str):
        batch = PaymentBatch.objects.filter(
            pk=batch_id, merchant=request.user.merchant
        ).first()
        if batch is None:
            raise PaymentNotFound("No such payment batch.", param="id")
        return Response(payment_batch_summary(batch=batch))


class PaymentRefundsView(APIView):
    @extend_schema(
        operation_id="refunds_list",
        parameters=[RefundListQuerySerializer],
        responses={200: RefundListSerializer},
        description="The payment's refunds, newest first. `starting_after` is the "
        "last refund id of the previous page.",
    )
    def get(self, request, payment_id: str):
        query = RefundListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        merchant = request.user.merchant
        payment = payment_get(merchant=merchant, payment_id=payment_id)
        if payment is None:
            raise PaymentNotFound("No such payment.", param="id")
        after = query.validated_data.get("starting_after")
        if after:
            cursor = refund_get(merchant=merchant, refund_id=after)
            if cursor is None or cursor.payment_id != payment.pk:
                raise InvalidRequest(
                    "No such refund of this payment.",
                    param="starting_after",
                    code=CoreCode.RESOURCE_MISSING,
                )
        rows, has_more = refund_list(
            payment=payment, limit=query.validated_data["limit"], starting_after=after
        )
        return Response(
            {
                "object": "list",
                "data": [refund_render(r) for r in rows],
                "has_more": has_more,
            }
        )

    @extend_schema(
        operation_id="refunds_create",
        request=RefundCreateSerializer,
        responses={202: RefundSerializer},
        parameters=[IDEMPOTENCY_HEADER],
        description="Refund a settled payment, in full by default. The refund is "
        "reserved at once (status pending) and executed at the gateway in the "
        "background, like a payment.",
    )
    def post(self, request, payment_id: str):
        check_key(request.headers.get("Idempotency-Key"))
        serializer = RefundCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        merchant = request.user.merchant

        def work():
            refund = refund_create(
                merchant=merchant,
                payment_id=payment_id,
                amount=serializer.validated_data.get("amount"),
            )
            return 202, refund_render(refund)

        return idempotent_response(request, work)


class RefundDetailView(APIView):
    @extend_schema(operation_id="refunds_retrieve", responses={200: RefundSerializer})
    def get(self, request, refund_id: str):
        refund = refund_get(merchant=request.user.merchant, refund_id=refund_id)
        if refund is None:
            raise NotFound("No such refund.", param="id")
        return Response(refund_render(refund))
