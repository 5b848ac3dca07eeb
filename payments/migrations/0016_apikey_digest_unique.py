from django.db import migrations, models


class Migration(migrations.Migration):
    """API keys are found by their digest (payments/services/keys.py), so that
    a wrong key takes the same time whether or not its prefix exists."""

    dependencies = [
        ("payments", "0015_refund_retries"),
    ]

    operations = [
        migrations.AlterField(
            model_name="apikey",
            name="digest",
            field=models.CharField(max_length=64, unique=True),
        ),
    ]
