"""The sandbox gateway's own records: what the "processor" saw, for inquiry and
reconciliation across processes. No card data is stored."""

from django.db import models
from django.db.models import Q


class SandboxCharge(models.Model):
    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        DECLINED = "declined"

    idempotency_key = models.CharField(max_length=255, unique=True)
    reference = models.CharField(max_length=64, unique=True)
    payment_id = models.CharField(max_length=64, db_index=True)
    merchant_id = models.CharField(max_length=64)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices)
    decline_code = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="sandbox_charge_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["succeeded", "declined"]),
                name="sandbox_charge_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.reference


class SandboxRefund(models.Model):
    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    idempotency_key = models.CharField(max_length=255, unique=True)
    reference = models.CharField(max_length=64, unique=True)
    charge = models.ForeignKey(
        SandboxCharge, on_delete=models.PROTECT, related_name="refunds"
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="sandbox_refund_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.reference
