from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import StrictCharField, StrictSerializer
from vault.cards import CardBrand


@extend_schema_field(OpenApiTypes.INT)
class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: ``"12"``, ``12.0`` and ``true`` are refused."""

    def to_internal_value(self, data):
        if type(data) is not int:
            self.fail("invalid")
        return super().to_internal_value(data)


class TokenCreateSerializer(StrictSerializer):
    """Types only; the card rules (Luhn, brand, expiry, CVC) live in the service.

    No error message built here contains the submitted value.
    """

    number = StrictCharField(
        allow_pan=True,
        max_length=32,
        trim_whitespace=False,
        help_text="Card number; spaces and dashes are ignored.",
    )
    exp_month = StrictIntegerField(help_text="1-12.")
    exp_year = StrictIntegerField(help_text="Four digits (two-digit years mean 20xx).")
    cvc = StrictCharField(
        max_length=4,
        trim_whitespace=False,
        help_text="3 digits (4 for American Express). Checked, never stored.",
    )


class TokenSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    brand = serializers.ChoiceField(choices=CardBrand.choices)
    last4 = serializers.CharField()
    exp_month = serializers.IntegerField()
    exp_year = serializers.IntegerField()
    fingerprint = serializers.CharField(
        help_text="Same card, same merchant: same fingerprint."
    )
    created_at = serializers.DateTimeField()

    def get_object(self, obj) -> str:
        return "token"
