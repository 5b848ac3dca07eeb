"""Admin: merchants and keys, payments (no card data), dead letters with
retry / refund / resolve actions, webhook endpoints (never their secret) and
deliveries with "retry now"; every action calls a service and is audited."""

from django.contrib import admin, messages

from core.money import Money
from payments.models import (
    ApiKey,
    AuditLog,
    DeadLetter,
    Event,
    Merchant,
    Payment,
    WebhookDelivery,
    WebhookEndpoint,
)
from payments.services import operations
from payments.services.keys import api_key_revoke


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ApiKeyInline(ReadOnlyMixin, admin.TabularInline):
    model = ApiKey
    fields = ("id", "__str__", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    extra = 0

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "status", "primary_gateway", "secondary_gateway")
    list_filter = ("status",)
    search_fields = ("id", "name")
    readonly_fields = ("id", "created_at")
    inlines = [ApiKeyInline]
    actions = ["revoke_keys"]

    @admin.action(description="Revoke all API keys of the selected merchants")
    def revoke_keys(self, request, queryset):
        for key in ApiKey.objects.filter(
            merchant__in=queryset, revoked_at__isnull=True
        ):
            api_key_revoke(key=key)
            operations.audit(
                actor=request.user.get_username(), action="key.revoke", obj=key
            )
        self.message_user(request, "Keys revoked.")


@admin.register(Payment)
class PaymentAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Shows the token id only: the card lives in the vault, masked there too."""

    list_display = ("id", "merchant", "money", "status", "failure_code", "created_at")
    list_filter = ("status", "currency", "gateway")
    search_fields = ("id", "reference", "gateway_reference")
    list_select_related = ("merchant",)
    show_full_result_count = False
    readonly_fields = [f.name for f in Payment._meta.fields]

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="amount")
    def money(self, obj):
        return str(Money(obj.amount, obj.currency))


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "stage",
        "error_class",
        "payment",
        "attempts",
        "status",
        "last_seen",
    )
    list_filter = ("status", "stage", "error_class")
    search_fields = ("id", "payment__id", "message")
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
    actions = ["retry", "refund", "resolve"]

    def _run(self, request, queryset, fn, **kwargs):
        actor = request.user.get_username()
        for dead_letter in queryset.select_related("payment__merchant"):
            outcome = fn(dead_letter=dead_letter, actor=actor, **kwargs)
            self.message_user(request, f"{dead_letter.pk}: {outcome}", messages.INFO)

    @admin.action(description="Retry: re-drive the payment if it is not final")
    def retry(self, request, queryset):
        self._run(request, queryset, operations.dead_letter_retry)

    @admin.action(description="Refund the settled payment in full")
    def refund(self, request, queryset):
        self._run(request, queryset, operations.dead_letter_refund)

    @admin.action(description="Resolve (reviewed, no further action)")
    def resolve(self, request, queryset):
        self._run(
            request, queryset, operations.dead_letter_close,
            note=f"resolved in admin by {request.user.get_username()}",
        )  # fmt: skip


@admin.register(Event)
class EventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "type", "payment_id", "created_at", "published_at")
    list_filter = ("type",)
    search_fields = ("id", "payment__id")
    show_full_result_count = False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "actor", "action", "object_type", "object_id")
    list_filter = ("action",)

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Read-only: endpoints are created through the API (the secret is shown
    once, there); the secret column is never rendered here."""

    list_display = ("id", "merchant", "url", "status", "disabled_reason", "created_at")
    list_filter = ("status",)
    search_fields = ("id", "merchant__id", "url")
    list_select_related = ("merchant",)
    fields = readonly_fields = (
        "id",
        "merchant",
        "url",
        "enabled_events",
        "status",
        "cursor",
        "created_at",
        "disabled_at",
        "disabled_reason",
    )
    actions = ["disable"]

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Disable: stop sending events to these endpoints")
    def disable(self, request, queryset):
        actor = request.user.get_username()
        for endpoint in queryset.filter(status=WebhookEndpoint.Status.ACTIVE):
            operations.webhook_endpoint_disable(endpoint=endpoint, actor=actor)
            self.message_user(request, f"{endpoint.pk}: disabled", messages.INFO)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "endpoint",
        "event_type",
        "event_id",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
    )
    list_filter = ("status", "event_type")
    search_fields = ("id", "event_id", "payment_id", "endpoint__id")
    show_full_result_count = False
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["retry_now"]

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Retry now: one more attempt for failed deliveries")
    def retry_now(self, request, queryset):
        actor = request.user.get_username()
        for delivery in queryset:
            outcome = operations.webhook_delivery_retry_now(
                delivery=delivery, actor=actor
            )
            self.message_user(request, f"{delivery.pk}: {outcome}", messages.INFO)
