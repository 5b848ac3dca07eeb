"""Operators' roles: escalation on dead letters, audit records tied to their
payment with a reason, the custom permissions that gate every admin action,
and the ``support`` and ``payments_ops`` groups (payments/roles.py)."""

from django.db import migrations, models

from payments.roles import ROLES, install_roles


def install(apps, schema_editor):
    install_roles(apps)


def remove(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("payments", "0013_webhooks_complete"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="apikey",
            options={"permissions": [("revoke_apikey", "Can revoke API keys")]},
        ),
        migrations.AlterModelOptions(
            name="deadletter",
            options={
                "permissions": [
                    ("retry_deadletter", "Can retry a dead letter's payment"),
                    ("refund_deadletter", "Can refund a dead letter's payment"),
                    ("resolve_deadletter", "Can resolve a dead letter"),
                    ("escalate_deadletter", "Can escalate a dead letter"),
                ]
            },
        ),
        migrations.AlterModelOptions(
            name="webhookdelivery",
            options={
                "permissions": [
                    ("retry_webhookdelivery", "Can retry webhook deliveries")
                ],
                "verbose_name_plural": "webhook deliveries",
            },
        ),
        migrations.AlterModelOptions(
            name="webhookendpoint",
            options={
                "permissions": [
                    ("disable_webhookendpoint", "Can disable webhook endpoints")
                ]
            },
        ),
        migrations.AlterModelOptions(
            name="paymentbatch",
            options={"verbose_name_plural": "payment batches"},
        ),
        migrations.AddField(
            model_name="auditlog",
            name="payment_id",
            field=models.CharField(blank=True, default="", max_length=40),
        ),
        migrations.AddField(
            model_name="auditlog",
            name="reason",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddField(
            model_name="deadletter",
            name="escalated_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="deadletter",
            name="escalated_to",
            field=models.CharField(blank=True, default="", max_length=150),
        ),
        migrations.AddField(
            model_name="deadletter",
            name="escalation_note",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddIndex(
            model_name="auditlog",
            index=models.Index(
                fields=["object_type", "object_id"], name="audit_object"
            ),
        ),
        migrations.AddIndex(
            model_name="auditlog",
            index=models.Index(
                condition=~models.Q(payment_id=""),
                fields=["payment_id"],
                name="audit_payment",
            ),
        ),
        migrations.RunPython(install, remove),
    ]
