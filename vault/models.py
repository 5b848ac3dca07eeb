from django.db import models

from core.ids import new_id


def tok_id():
    return new_id("tok")


class Token(models.Model):
    """A card, sealed. The PAN exists only inside ``ciphertext`` (AES-256-GCM)."""

    id = models.CharField(
        primary_key=True, max_length=40, default=tok_id, editable=False
    )
    merchant_id = models.CharField(max_length=40, db_index=True)
    brand = models.CharField(max_length=16)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    fingerprint = models.CharField(max_length=64, db_index=True)
    key_id = models.CharField(max_length=32, db_index=True)
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.brand} •••• {self.last4} ({self.id})"
