"""The enrich stage and risk rules (issue #20): the ``enriched`` and ``review``
statuses, a payment's ``customer`` reference, its ``enrichment`` (card data,
route, risk verdict), the merchants' risk rules, the velocity entries, and
the permission that lets ``payments_ops`` approve or decline a review."""

from django.db import migrations, models

from payments.roles import install_roles


def install(apps, schema_editor):
    install_roles(apps)


class Migration(migrations.Migration):

    dependencies = [
        ('payments', '0015_refund_retries'),
    ]

    operations = [
        migrations.CreateModel(
            name='VelocityEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('merchant_id', models.CharField(max_length=40)),
                ('kind', models.CharField(choices=[('card', 'Card'), ('customer', 'Customer')], max_length=8)),
                ('key', models.CharField(max_length=128)),
                ('payment_id', models.CharField(max_length=40)),
                ('amount', models.BigIntegerField()),
                ('created_at', models.DateTimeField()),
            ],
            options={
                'verbose_name_plural': 'velocity entries',
            },
        ),
        migrations.AlterModelOptions(
            name='deadletter',
            options={'permissions': [('retry_deadletter', "Can retry a dead letter's payment"), ('refund_deadletter', "Can refund a dead letter's payment"), ('resolve_deadletter', 'Can resolve a dead letter'), ('escalate_deadletter', 'Can escalate a dead letter'), ('review_deadletter', 'Can approve or decline a payment in risk review')]},
        ),
        migrations.RemoveConstraint(
            model_name='payment',
            name='payment_status_valid',
        ),
        migrations.AddField(
            model_name='merchant',
            name='risk_amount_ceiling',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='merchant',
            name='risk_blocked_bins',
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name='merchant',
            name='risk_blocked_countries',
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name='merchant',
            name='risk_card_velocity_amount',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='merchant',
            name='risk_card_velocity_count',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='merchant',
            name='risk_card_velocity_window',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='merchant',
            name='risk_customer_velocity_amount',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='merchant',
            name='risk_customer_velocity_count',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='merchant',
            name='risk_customer_velocity_window',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='merchant',
            name='risk_outcomes',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name='payment',
            name='customer',
            field=models.CharField(blank=True, default='', max_length=128),
        ),
        migrations.AddField(
            model_name='payment',
            name='enrichment',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name='payment',
            name='status',
            field=models.CharField(choices=[('pending', 'Pending'), ('validated', 'Validated'), ('enriched', 'Enriched'), ('review', 'Review'), ('processing', 'Processing'), ('succeeded', 'Succeeded'), ('settled', 'Settled'), ('declined', 'Declined'), ('failed', 'Failed')], default='pending', max_length=16),
        ),
        migrations.AddConstraint(
            model_name='merchant',
            constraint=models.CheckConstraint(condition=models.Q(('risk_card_velocity_count__isnull', True), ('risk_card_velocity_count__gt', 0), _connector='OR'), name='merchant_risk_card_velocity_count_gt_0'),
        ),
        migrations.AddConstraint(
            model_name='merchant',
            constraint=models.CheckConstraint(condition=models.Q(('risk_card_velocity_amount__isnull', True), ('risk_card_velocity_amount__gt', 0), _connector='OR'), name='merchant_risk_card_velocity_amount_gt_0'),
        ),
        migrations.AddConstraint(
            model_name='merchant',
            constraint=models.CheckConstraint(condition=models.Q(('risk_card_velocity_window__isnull', True), ('risk_card_velocity_window__gt', 0), _connector='OR'), name='merchant_risk_card_velocity_window_gt_0'),
        ),
        migrations.AddConstraint(
            model_name='merchant',
            constraint=models.CheckConstraint(condition=models.Q(('risk_customer_velocity_count__isnull', True), ('risk_customer_velocity_count__gt', 0), _connector='OR'), name='merchant_risk_customer_velocity_count_gt_0'),
        ),
        migrations.AddConstraint(
            model_name='merchant',
            constraint=models.CheckConstraint(condition=models.Q(('risk_customer_velocity_amount__isnull', True), ('risk_customer_velocity_amount__gt', 0), _connector='OR'), name='merchant_risk_customer_velocity_amount_gt_0'),
        ),
        migrations.AddConstraint(
            model_name='merchant',
            constraint=models.CheckConstraint(condition=models.Q(('risk_customer_velocity_window__isnull', True), ('risk_customer_velocity_window__gt', 0), _connector='OR'), name='merchant_risk_customer_velocity_window_gt_0'),
        ),
        migrations.AddConstraint(
            model_name='merchant',
            constraint=models.CheckConstraint(condition=models.Q(('risk_amount_ceiling__isnull', True), ('risk_amount_ceiling__gt', 0), _connector='OR'), name='merchant_risk_amount_ceiling_gt_0'),
        ),
        migrations.AddConstraint(
            model_name='payment',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['pending', 'validated', 'enriched', 'review', 'processing', 'succeeded', 'settled', 'declined', 'failed'])), name='payment_status_valid'),
        ),
        migrations.AddIndex(
            model_name='velocityentry',
            index=models.Index(fields=['merchant_id', 'kind', 'key', 'created_at'], name='velocity_window'),
        ),
        migrations.AddIndex(
            model_name='velocityentry',
            index=models.Index(fields=['created_at'], name='velocity_created'),
        ),
        migrations.AddConstraint(
            model_name='velocityentry',
            constraint=models.UniqueConstraint(fields=('payment_id', 'kind'), name='velocity_once_per_payment'),
        ),
        migrations.RunPython(install, migrations.RunPython.noop),
    ]
