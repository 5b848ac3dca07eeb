from django.contrib import admin

from vault.models import Token


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    """Read-only. The ciphertext is never loaded, shown, filtered or searched."""

    list_display = (
        "id",
        "merchant_id",
        "brand",
        "last4",
        "expiry",
        "fingerprint",
        "key_id",
        "created_at",
    )
    fields = list_display
    readonly_fields = list_display
    list_filter = ("brand", "key_id")
    search_fields = ("=id", "=merchant_id", "=fingerprint")
    ordering = ("-created_at",)
    show_full_result_count = False

    @admin.display(description="Expiry")
    def expiry(self, obj: Token) -> str:
        return f"{obj.exp_month:02d}/{obj.exp_year}"

    def get_queryset(self, request):
        return super().get_queryset(request).defer("ciphertext")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
