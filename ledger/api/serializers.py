from rest_framework import serializers


class BalanceAmountSerializer(serializers.Serializer):
    amount = serializers.IntegerField(help_text="Minor units; may be negative.")
    currency = serializers.CharField(help_text="Lowercase ISO 4217.")


class BalanceSerializer(serializers.Serializer):
    object = serializers.CharField(default="balance")
    available = BalanceAmountSerializer(many=True)
    pending = BalanceAmountSerializer(many=True)
