from dataclasses import dataclass

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.errors import InvalidRequest
from core.money import CURRENCY_EXPONENTS
from core.pan import contains_pan
from core.serializers import (
    MetadataField,
    MinorUnitsField,
    StrictCharField,
    StrictSerializer,
)
from payments.rendering import payment_card, payment_risk
from payments.services.batches import MAX_BATCH, BatchItem
from payments.services.risk import Outcome, Rule
from payments.state import PaymentStatus


class CurrencyField(StrictCharField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value not in CURRENCY_EXPONENTS:
            raise serializers.ValidationError(
                "Currency must be a supported lowercase ISO 4217 code, e.g. 'usd'."
            )
        return value


class PaymentCreateSerializer(StrictSerializer):
    """The one definition of a payment's input rules: the API's single payments,
    batch items (``BatchItemSerializer``) and the fast path below all read it."""

    amount = MinorUnitsField(max_value=settings.SURGE_MAX_AMOUNT)
    currency = CurrencyField(min_length=3, max_length=3)
    source = StrictCharField(max_length=40)
    description = StrictCharField(max_length=500, required=False, allow_blank=True)
    metadata = MetadataField(required=False)
    # The merchant's reference for its customer: risk velocity per customer.
    customer = StrictCharField(max_length=128, required=False, allow_blank=True)


class BatchItemSerializer(PaymentCreateSerializer):
    """One payment of a batch: a payment's rules, plus the merchant's reference."""

    reference = StrictCharField(max_length=128)


@dataclass(frozen=True, slots=True)
class _FastRules:
    """A serializer's limits, read from its declared fields, for the fast path."""

    names: frozenset[str]
    required: frozenset[str]
    max_amount: int
    text: dict[str, tuple[int, bool]]  # name -> (max_length, allow_blank)
    metadata: tuple[int, int, int]  # (keys, key length, value length)

    @classmethod
    def of(cls, serializer: type[StrictSerializer]) -> "_FastRules":
        fields = serializer().fields
        metadata = fields["metadata"]
        return cls(
            names=frozenset(fields),
            required=frozenset(n for n, f in fields.items() if f.required),
            max_amount=fields["amount"].max_value,
            text={
                name: (f.max_length, f.allow_blank)
                for name, f in fields.items()
                if type(f) is StrictCharField
            },
            metadata=(
                metadata.max_keys,
                metadata.key_length,
                metadata.child.max_length,
            ),
        )


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


def _fast_parse(data: object, rules: _FastRules) -> dict | None:
    """``serializer(data=data).validated_data`` for the plain case, without
    instantiating a serializer (DRF deep-copies its fields per instance, work
    the plain case does not need), or None to let the serializer decide.

    It accepts a subset of what the serializer accepts and returns the same
    dict for it (tests/payments/test_intake_fast_path.py checks both with
    generated inputs), so every refusal, and its wording, stays the serializer's.
    """
    if type(data) is not dict or not (rules.required <= data.keys() <= rules.names):
        return None
    amount, currency = data["amount"], data["currency"]
    if type(amount) is not int or not 0 < amount <= rules.max_amount:
        return None
    if type(currency) is not str or currency not in CURRENCY_EXPONENTS:
        return None
    out = {"amount": amount, "currency": currency}
    for name, (max_length, allow_blank) in rules.text.items():
        if name in data:
            if not _plain_str(data[name], max_length, allow_blank=allow_blank):
                return None
            out[name] = data[name]
    if "metadata" in data:
        metadata = data["metadata"]
        max_keys, key_length, value_length = rules.metadata
        if type(metadata) is not dict or len(metadata) > max_keys:
            return None
        for key, value in metadata.items():
            if not 0 < len(key) <= key_length or "\x00" in key or contains_pan(key):
                return None
            if not _plain_str(value, value_length, allow_blank=True):
                return None
        out["metadata"] = dict(metadata)
    return out


_PAYMENT_RULES = _FastRules.of(PaymentCreateSerializer)
_BATCH_ITEM_RULES = _FastRules.of(BatchItemSerializer)


def payment_create_parse(data: object) -> dict | None:
    """``PaymentCreateSerializer(data=data).validated_data`` for the plain case."""
    return _fast_parse(data, _PAYMENT_RULES)


def payment_create_validate(data: object) -> dict:
    """A single payment's fields, or a 400 in the serializer's words."""
    fields = _fast_parse(data, _PAYMENT_RULES)
    if fields is None:  # anything unusual: the serializer decides and words it
        serializer = PaymentCreateSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
    return fields


def batch_item_parse(data: object) -> dict | None:
    """``BatchItemSerializer(data=data).validated_data`` for the plain case."""
    return _fast_parse(data, _BATCH_ITEM_RULES)


def batch_items_validate(
    raw_items: object,
) -> tuple[list[tuple[int, BatchItem]], list[dict]]:
    """Each item of a batch through the payment's rules: (index, item) for the
    well-formed ones and an error per field of the others, so that a 400 can
    list every invalid item, not only the first."""
    if not isinstance(raw_items, list) or not raw_items:
        raise InvalidRequest("payments must be a non-empty list.", param="payments")
    if len(raw_items) > MAX_BATCH:
        raise InvalidRequest(
            f"A batch holds at most {MAX_BATCH} payments.", param="payments"
        )
    parsed: list[tuple[int, BatchItem]] = []
    errors: list[dict] = []
    for index, raw in enumerate(raw_items):
        fields = batch_item_parse(raw)
        if fields is None:
            serializer = BatchItemSerializer(data=raw)
            if not serializer.is_valid():
                for name, messages in serializer.errors.items():
                    param = "" if name == "non_field_errors" else name
                    message = messages[0] if isinstance(messages, list) else messages
                    if isinstance(message, dict):  # metadata: per-key details
                        message = next(iter(message.values()))[0]
                    errors.append(
                        {"index": index, "param": param, "message": str(message)}
                    )
                continue
            fields = serializer.validated_data
        parsed.append(
            (
                index,
                BatchItem(
                    amount=fields["amount"],
                    currency=fields["currency"],
                    source=fields["source"],
                    reference=fields["reference"],
                    description=fields.get("description", ""),
                    metadata=fields.get("metadata"),
                    customer=fields.get("customer", ""),
                ),
            )
        )
    return parsed, errors


class PaymentCardSerializer(serializers.Serializer):
    brand = serializers.CharField()
    funding = serializers.ChoiceField(
        choices=["credit", "debit", "prepaid"], allow_null=True
    )
    country = serializers.CharField(allow_null=True, help_text="ISO 3166-1 alpha-2")


class PaymentRiskSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=[o.value for o in Outcome])
    rule = serializers.ChoiceField(choices=[r.value for r in Rule], allow_null=True)


class PaymentSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=PaymentStatus.choices)
    source = serializers.CharField(source="source_id")
    description = serializers.CharField()
    metadata = serializers.DictField(child=serializers.CharField())
    customer = serializers.CharField(allow_null=True)
    card = serializers.SerializerMethodField()
    risk = serializers.SerializerMethodField()
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

    @extend_schema_field(PaymentCardSerializer(allow_null=True))
    def get_card(self, obj):
        return payment_card(obj)

    @extend_schema_field(PaymentRiskSerializer(allow_null=True))
    def get_risk(self, obj):
        return payment_risk(obj)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["customer"] = data["customer"] or None
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


class RefundListQuerySerializer(StrictSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)
    starting_after = serializers.CharField(required=False, max_length=40)


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


class RefundListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = RefundSerializer(many=True)
    has_more = serializers.BooleanField()
