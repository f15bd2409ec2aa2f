"""The ledger in the admin: read-only. Credits change through the account's
"Grant or adjust credits" form, which calls billing.services."""

from django.contrib import admin

from billing.models import LedgerEntry


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "account", "kind", "amount", "balance_after", "job", "note"]
    list_filter = ["kind", "account"]
    list_select_related = ["account", "job"]
    search_fields = ["account__name", "note"]
    date_hierarchy = "created_at"
    fields = ["created_at", "account", "kind", "amount", "balance_after", "job", "note"]
    readonly_fields = fields
    # No bulk actions: the only built-in one is delete.
    actions = None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
