"""Strict DRF building blocks shared by every app's API."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.pan import contains_pan


class StrictSerializer(serializers.Serializer):
    """Refuse unknown fields and non-object bodies instead of ignoring them."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["Request body must be a JSON object."]}
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {unknown[0]: [f"Received unknown parameter: {unknown[0]}."]}
            )
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.INT64)
class MinorUnitsField(serializers.Field):
    """A positive integer amount in minor units. ``10.5``, ``"100"``, ``true`` fail."""

    default_error_messages = {
        "type": "Amount must be a positive integer in minor units (e.g. 1000 = 10.00).",
        "max": "Amount must be at most {max}.",
    }

    def __init__(self, *, max_value: int | None = None, **kwargs):
        self.max_value = max_value
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if type(data) is not int or data <= 0:
            self.fail("type")
        if self.max_value is not None and data > self.max_value:
            self.fail("max", max=self.max_value)
        return data

    def to_representation(self, value):
        return value


@extend_schema_field(OpenApiTypes.STR)
class StrictCharField(serializers.CharField):
    """A string that must really be a JSON string (DRF would coerce numbers).

    Free text outside the vault must never hold a card number, so a value shaped
    like one is refused rather than stored.
    """

    default_error_messages = {
        "pan": "Looks like a card number; send cards only to /v1/tokens.",
    }

    def __init__(self, *, allow_pan: bool = False, **kwargs):
        self.allow_pan = allow_pan  # True only for the vault's card number field
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        if not self.allow_pan and contains_pan(data):
            self.fail("pan")
        return super().to_internal_value(data)


class MetadataField(serializers.DictField):
    """Up to 50 string keys (<= 40 chars) with string values (<= 500 chars)."""

    max_keys = 50
    key_length = 40
    value_length = 500

    def __init__(self, **kwargs):
        super().__init__(
            child=StrictCharField(max_length=self.value_length, allow_blank=True),
            **kwargs,
        )

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("Metadata must be an object of strings.")
        if len(data) > self.max_keys:
            raise serializers.ValidationError(
                f"Metadata may have at most {self.max_keys} keys."
            )
        for key in data:
            if not key or len(key) > self.key_length or contains_pan(key):
                raise serializers.ValidationError(
                    f"Metadata keys must be 1-{self.key_length} characters."
                )
            if "\x00" in key:  # PostgreSQL's jsonb cannot hold it
                raise serializers.ValidationError(
                    "Metadata keys must not contain null characters."
                )
        return super().to_internal_value(data)
