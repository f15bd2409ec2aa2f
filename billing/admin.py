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


# --- Credit packs and Stripe purchases -----------------------------------------

from billing.models import CreditPack, Purchase  # noqa: E402


@admin.register(CreditPack)
class CreditPackAdmin(admin.ModelAdmin):
    """Packs on the pricing page. Retire a pack by unticking "active": past
    purchases keep their name, credits and price."""

    list_display = ["name", "credits", "price_shown", "currency", "active", "ordering"]
    list_editable = ["active", "ordering"]
    list_filter = ["active", "currency"]
    fields = ["name", "credits", "price", "currency", "active", "ordering"]

    @admin.display(description="Price", ordering="price")
    def price_shown(self, pack: CreditPack) -> str:
        return pack.price_display

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class NeedsReviewFilter(admin.SimpleListFilter):
    title = "needs review"
    parameter_name = "needs_review"

    def lookups(self, request, model_admin):
        return [("yes", "Refund larger than the balance")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(credits_shortfall__gt=0)
        return queryset


@admin.register(Purchase)
class PurchaseAdmin(admin.ModelAdmin):
    """Paid Checkout Sessions, read-only: they are written by the Stripe webhook."""

    list_display = [
        "created_at",
        "account",
        "pack_name",
        "credits",
        "paid",
        "refunded",
        "credits_reclaimed",
        "credits_shortfall",
    ]
    list_filter = [NeedsReviewFilter, "currency"]
    list_select_related = ["account"]
    search_fields = ["account__name", "checkout_session_id", "payment_intent_id"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "account",
        "pack",
        "pack_name",
        "credits",
        "paid",
        "refunded",
        "credits_reclaimed",
        "credits_shortfall",
        "checkout_session_id",
        "payment_intent_id",
        "ledger_entry",
    ]
    readonly_fields = fields
    actions = None

    @admin.display(description="Paid", ordering="amount_paid")
    def paid(self, purchase: Purchase) -> str:
        return purchase.paid_display

    @admin.display(description="Refunded", ordering="amount_refunded")
    def refunded(self, purchase: Purchase) -> str:
        return purchase.refunded_display if purchase.amount_refunded else "-"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
