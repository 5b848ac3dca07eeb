from django.db import models
from django.db.models import F, Q

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
    # The issuer identification number: the first six digits, which card
    # truncation rules allow in the clear (as last4); blank for tokens made
    # before BIN data existed. Read against ``BinRange`` for card metadata.
    bin = models.CharField(max_length=6, blank=True, default="")
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


class BinRange(models.Model):
    """What the vault knows of a BIN range: brand, funding type, country.

    A card's metadata comes from the narrowest range holding its BIN; a blank
    ``funding`` or ``country`` means the range does not say. Ranges are data:
    migration 0002 seeds the documented test ranges and brand-wide fallbacks;
    an operator adds a processor's BIN table the same way.
    """

    class Funding(models.TextChoices):
        CREDIT = "credit"
        DEBIT = "debit"
        PREPAID = "prepaid"
        UNKNOWN = "", "unknown"

    low = models.PositiveIntegerField()  # six-digit BINs, inclusive
    high = models.PositiveIntegerField()
    brand = models.CharField(max_length=16, choices=CardBrand.choices)
    funding = models.CharField(
        max_length=8, choices=Funding.choices, blank=True, default=""
    )
    country = models.CharField(max_length=2, blank=True, default="")  # ISO 3166-1
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["low", "high"], name="vault_binrange_low_high")]
        constraints = [
            models.CheckConstraint(
                condition=Q(low__gte=100000, high__lte=999999, low__lte=F("high")),
                name="vault_binrange_six_digits",
            ),
            models.CheckConstraint(
                condition=Q(country="") | Q(country__regex=r"^[A-Z]{2}$"),
                name="vault_binrange_country_alpha2",
            ),
        ]

    def __str__(self):
        return f"{self.low}-{self.high} {self.brand} {self.funding} {self.country}"
