from django.db import models
from django.db.models import Q

from core.ids import new_id
from vault.cards import CardBrand


def tok_id():
    return new_id("tok")


class Token(models.Model):
    """A card, sealed. The PAN exists only inside ``ciphertext`` (AES-256-GCM).

    ``ciphertext`` is bound to ``id`` and ``merchant_id`` (associated data), so
    it opens only on this row for this merchant. ``key_id`` repeats the id inside
    the ciphertext's header so rotation can find stale rows with an index.
    The CVC is never stored.
    """

    id = models.CharField(
        primary_key=True, max_length=40, default=tok_id, editable=False
    )
    merchant_id = models.CharField(max_length=40, db_index=True)
    brand = models.CharField(max_length=16, choices=CardBrand.choices)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    fingerprint = models.CharField(max_length=64)
    key_id = models.CharField(max_length=32, db_index=True)
    ciphertext = models.BinaryField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["merchant_id", "fingerprint"], name="vault_token_fingerprint"
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(exp_month__gte=1, exp_month__lte=12),
                name="vault_token_exp_month_range",
            ),
            models.CheckConstraint(
                condition=Q(last4__regex=r"^[0-9]{4}$"),
                name="vault_token_last4_digits",
            ),
            models.CheckConstraint(
                condition=~Q(key_id=""), name="vault_token_key_id_set"
            ),
        ]

    def __str__(self):
        return f"{self.brand} •••• {self.last4} ({self.id})"
