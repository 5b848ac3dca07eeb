"""Card metadata: a token keeps its BIN (first six digits), and the vault a
small table of BIN ranges (brand, funding type, country).

The seeded ranges are the documented test cards' BINs (Surge's and the
widely used processor test numbers; the notes name the BIN, never a whole
card number: no column holds one in clear) and one brand-wide fallback per brand
(brand only: funding and country unknown). The narrowest range holding a BIN
wins. Tokens made before this migration have no BIN: their metadata is the
token's brand alone.
"""

from django.db import migrations, models

# (low, high, brand, funding, country, note)
SEED = [
    (424242, 424242, "visa", "credit", "US", "test card BIN 424242"),
    (400000, 400000, "visa", "credit", "US", "test card BIN 400000"),
    (400005, 400005, "visa", "debit", "US", "test card BIN 400005"),
    (411111, 411111, "visa", "credit", "GB", "test card BIN 411111"),
    (555555, 555555, "mastercard", "credit", "US", "test card BIN 555555"),
    (520082, 520082, "mastercard", "debit", "US", "test card BIN 520082"),
    (510510, 510510, "mastercard", "prepaid", "US", "test card BIN 510510"),
    (378282, 378282, "amex", "credit", "US", "test card BIN 378282"),
    (371449, 371449, "amex", "credit", "US", "test card BIN 371449"),
    (601111, 601111, "discover", "credit", "US", "test card BIN 601111"),
    (356600, 356600, "jcb", "credit", "JP", "test card BIN 356600"),
    (305693, 305693, "diners", "credit", "US", "test card BIN 305693"),
    (620000, 620000, "unionpay", "credit", "CN", "test card BIN 620000"),
    (400000, 499999, "visa", "", "", "Visa (brand only)"),
    (510000, 559999, "mastercard", "", "", "Mastercard (brand only)"),
    (222100, 272099, "mastercard", "", "", "Mastercard 2-series (brand only)"),
    (340000, 349999, "amex", "", "", "American Express (brand only)"),
    (370000, 379999, "amex", "", "", "American Express (brand only)"),
    (601100, 601199, "discover", "", "", "Discover (brand only)"),
    (644000, 659999, "discover", "", "", "Discover (brand only)"),
    (352800, 358999, "jcb", "", "", "JCB (brand only)"),
    (300000, 305999, "diners", "", "", "Diners Club (brand only)"),
    (360000, 369999, "diners", "", "", "Diners Club (brand only)"),
    (380000, 399999, "diners", "", "", "Diners Club (brand only)"),
    (620000, 629999, "unionpay", "", "", "UnionPay (brand only)"),
]


def seed(apps, schema_editor):
    BinRange = apps.get_model("vault", "BinRange")
    BinRange.objects.bulk_create(
        BinRange(low=lo, high=hi, brand=b, funding=f, country=c, note=n)
        for lo, hi, b, f, c, n in SEED
    )


def unseed(apps, schema_editor):
    apps.get_model("vault", "BinRange").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("vault", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="token",
            name="bin",
            field=models.CharField(blank=True, default="", max_length=6),
        ),
        migrations.CreateModel(
            name="BinRange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("low", models.PositiveIntegerField()),
                ("high", models.PositiveIntegerField()),
                (
                    "brand",
                    models.CharField(
                        choices=[
                            ("visa", "Visa"),
                            ("mastercard", "Mastercard"),
                            ("amex", "American Express"),
                            ("discover", "Discover"),
                            ("jcb", "JCB"),
                            ("diners", "Diners Club"),
                            ("unionpay", "UnionPay"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "funding",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("credit", "Credit"),
                            ("debit", "Debit"),
                            ("prepaid", "Prepaid"),
                            ("", "unknown"),
                        ],
                        default="",
                        max_length=8,
                    ),
                ),
                ("country", models.CharField(blank=True, default="", max_length=2)),
                ("note", models.CharField(blank=True, default="", max_length=200)),
            ],
            options={
                "indexes": [
                    models.Index(
                        fields=["low", "high"], name="vault_binrange_low_high"
                    )
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("high__lte", 999999),
                            ("low__gte", 100000),
                            ("low__lte", models.F("high")),
                        ),
                        name="vault_binrange_six_digits",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("country", ""))
                        | models.Q(("country__regex", "^[A-Z]{2}$")),
                        name="vault_binrange_country_alpha2",
                    ),
                ],
            },
        ),
        migrations.RunPython(seed, unseed),
    ]
