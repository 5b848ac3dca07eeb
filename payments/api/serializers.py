from django.conf import settings
from rest_framework import serializers

from core.money import CURRENCY_EXPONENTS
from core.serializers import (
    MetadataField,
    MinorUnitsField,
    StrictCharField,
    StrictSerializer,
)
from payments.state import PaymentStatus
from vault.logging import contains_pan


class CurrencyField(StrictCharField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value not in CURRENCY_EXPONENTS:
            raise serializers.ValidationError(
                "Currency must be a supported lowercase ISO 4217 code, e.g. 'usd'."
            )
        return value


class PaymentCreateSerializer(StrictSerializer):
    amount = MinorUnitsField(max_value=settings.SURGE_MAX_AMOUNT)
    currency = CurrencyField(min_length=3, max_length=3)
    source = StrictCharField(max_length=40)
    description = StrictCharField(max_length=500, required=False, allow_blank=True)
    metadata = MetadataField(required=False)


_CREATE_FIELDS = frozenset(("amount", "currency", "source", "description", "metadata"))


def _plain_str(value: object, max_length: int, *, allow_blank: bool) -> bool:
    """A string DRF's StrictCharField would return unchanged: no whitespace to
    trim, nothing unprintable (NUL, surrogates), within length, no card number."""
    return (
        type(value) is str
        and len(value) <= max_length
        and (allow_blank or value != "")
        and value == value.strip()
        and value.isprintable()
        and not contains_pan(value)
    )


def payment_create_parse(data: object) -> dict | None:
    """``PaymentCreateSerializer(data=data).validated_data`` for the plain case,
    without instantiating a serializer (DRF deep-copies its fields per instance:
    ~1 ms of the ~2 ms a request costs), or None to let the serializer decide.

    It accepts a subset of what the serializer accepts and returns the same
    dict for it (tests/payments/test_intake_fast_path.py checks both with
    generated inputs), so every refusal, and its wording, stays the serializer's.
    """
    if type(data) is not dict or not data.keys() <= _CREATE_FIELDS:
        return None
    amount, currency = data.get("amount"), data.get("currency")
    source = data.get("source")
    if type(amount) is not int or not 0 < amount <= settings.SURGE_MAX_AMOUNT:
        return None
    if type(currency) is not str or currency not in CURRENCY_EXPONENTS:
        return None
    if not _plain_str(source, 40, allow_blank=False):
        return None
    out = {"amount": amount, "currency": currency, "source": source}
    if "description" in data:
        if not _plain_str(data["description"], 500, allow_blank=True):
            return None
        out["description"] = data["description"]
    if "metadata" in data:
        metadata = data["metadata"]
        if type(metadata) is not dict or len(metadata) > 50:
            return None
        for key, value in metadata.items():
            if not 0 < len(key) <= 40 or "\x00" in key or contains_pan(key):
                return None
            if not _plain_str(value, 500, allow_blank=True):
                return None
        out["metadata"] = dict(metadata)
    return out


class PaymentSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=PaymentStatus.choices)
    source = serializers.CharField(source="source_id")
    description = serializers.CharField()
    metadata = serializers.DictField(child=serializers.CharField())
    amount_refunded = serializers.IntegerField()
    failure_code = serializers.CharField(allow_null=True)
    failure_message = serializers.CharField(allow_null=True)
    reference = serializers.CharField(allow_null=True)
    batch = serializers.CharField(source="batch_id", allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    settled_at = serializers.DateTimeField(allow_null=True)

    def get_object(self, obj) -> str:
        return "payment"

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["failure_code"] = data["failure_code"] or None
        data["failure_message"] = data["failure_message"] or None
        return data


class PaymentListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = PaymentSerializer(many=True)
    has_more = serializers.BooleanField()


class PaymentListQuerySerializer(StrictSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)
    starting_after = serializers.CharField(required=False, max_length=40)
    status = serializers.ChoiceField(choices=PaymentStatus.choices, required=False)


class BatchItemSerializer(serializers.Serializer):
    """Documentation of one batch item; validation is done in one pass by the
    batch service so every invalid item is reported, not only the first."""

    amount = serializers.IntegerField(min_value=1)
    currency = serializers.CharField()
    source = serializers.CharField()
    reference = serializers.CharField(max_length=128)
    description = serializers.CharField(required=False)
    metadata = serializers.DictField(child=serializers.CharField(), required=False)


class PaymentBatchCreateSerializer(serializers.Serializer):
    payments = BatchItemSerializer(many=True)


class BatchPaymentRefSerializer(serializers.Serializer):
    id = serializers.CharField()
    reference = serializers.CharField()


class PaymentBatchCreatedSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    count = serializers.IntegerField()
    total_amount = serializers.IntegerField()
    payments = BatchPaymentRefSerializer(many=True)


class StatusTotalsSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    amount = serializers.IntegerField()


class PaymentBatchSummarySerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    count = serializers.IntegerField()
    total_amount = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    completed = serializers.BooleanField()
    by_status = serializers.DictField(child=StatusTotalsSerializer())


class RefundCreateSerializer(StrictSerializer):
    amount = MinorUnitsField(required=False)


class RefundSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    payment = serializers.CharField(source="payment_id")
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.CharField()
    failure_code = serializers.CharField()
    created_at = serializers.DateTimeField()

    def get_object(self, obj) -> str:
        return "refund"
