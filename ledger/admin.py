"""Read-only admin: the ledger is corrected by new entries, never by edits."""

from django.contrib import admin

from ledger.models import Account, JournalEntry, Posting


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("code", "currency", "type", "balance", "no_overdraft")
    list_filter = ("type", "currency", "no_overdraft")
    search_fields = ("code",)
    ordering = ("code", "currency")


class PostingInline(admin.TabularInline):
    model = Posting
    fields = ("account", "direction", "amount", "currency")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "reference", "payment_id", "created_at")
    list_filter = ("kind",)
    search_fields = ("=reference", "=payment_id")
    ordering = ("-id",)
    inlines = [PostingInline]
    show_full_result_count = False
