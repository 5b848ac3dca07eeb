import vault.models
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='Token',
            fields=[
                ('id', models.CharField(default=vault.models.tok_id, editable=False, max_length=40, primary_key=True, serialize=False)),
                ('merchant_id', models.CharField(db_index=True, max_length=40)),
                ('brand', models.CharField(choices=[('visa', 'Visa'), ('mastercard', 'Mastercard'), ('amex', 'American Express'), ('discover', 'Discover'), ('jcb', 'JCB'), ('diners', 'Diners Club'), ('unionpay', 'UnionPay')], max_length=16)),
                ('last4', models.CharField(max_length=4)),
                ('exp_month', models.PositiveSmallIntegerField()),
                ('exp_year', models.PositiveSmallIntegerField()),
                ('fingerprint', models.CharField(max_length=64)),
                ('key_id', models.CharField(db_index=True, max_length=32)),
                ('ciphertext', models.BinaryField(editable=False)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'indexes': [models.Index(fields=['merchant_id', 'fingerprint'], name='vault_token_fingerprint')],
                'constraints': [models.CheckConstraint(condition=models.Q(('exp_month__gte', 1), ('exp_month__lte', 12)), name='vault_token_exp_month_range'), models.CheckConstraint(condition=models.Q(('last4__regex', '^[0-9]{4}$')), name='vault_token_last4_digits'), models.CheckConstraint(condition=models.Q(('key_id', ''), _negated=True), name='vault_token_key_id_set')],
            },
        ),
    ]
