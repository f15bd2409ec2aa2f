"""Billing in the admin: the read-only ledger, and the account page's credits.

Nothing here changes a balance directly: the "Grant or adjust credits" form
calls ``billing.services`` (which writes the ledger row under the account's
row lock), and the ledger itself can be neither added to, edited nor
deleted from the admin. ``AccountCreditsAdmin`` is mixed into the account
admin (``accounts.admin``), so the account page shows billing's part
without the accounts app knowing how credits work.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse

from accounts.admin import AccountAdmin
from accounts.models import Account
from billing.models import LedgerEntry
from billing.services import adjust_credits, grant_credits
from revid.errors import ApplicationError

LEDGER_ROWS_SHOWN = 25


class CreditsForm(forms.Form):
    OPERATIONS = [
        ("grant", "Grant credits (adds to the balance)"),
        ("adjust", "Adjust the balance (a signed correction)"),
    ]
    operation = forms.ChoiceField(choices=OPERATIONS, initial="grant", widget=forms.RadioSelect)
    amount = forms.IntegerField(
        help_text="A grant is a positive number; an adjustment may be negative (e.g. -50)."
    )
    reason = forms.CharField(
        max_length=500,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Recorded in the ledger with the amount and your username.",
    )


class AccountCreditsAdmin:
    """The account admin's billing part: the credits button, the latest
    ledger rows and the grant/adjust form (a ModelAdmin mixin)."""

    @admin.display(description="Credits")
    def credits(self, account: Account) -> str:
        if account.pk is None:
            return "-"
        return render_to_string("admin/billing/account/credits_button.html", {"account": account})

    @admin.display(description=f"Ledger (latest {LEDGER_ROWS_SHOWN})")
    def ledger(self, account: Account) -> str:
        entries = LedgerEntry.objects.filter(account=account).order_by("-created_at", "-id")
        return render_to_string(
            "admin/billing/account/ledger.html",
            {
                "account": account,
                "entries": entries[:LEDGER_ROWS_SHOWN],
                "total": entries.count(),
            },
        )

    def get_urls(self):
        return [
            path(
                "<int:account_id>/credits/",
                self.admin_site.admin_view(self.credits_view),
                name="accounts_account_credits",
            ),
            *super().get_urls(),
        ]

    def credits_view(self, request: HttpRequest, account_id: int) -> HttpResponse:
        """Grants or adjusts credits through billing.services, with a reason."""
        account = get_object_or_404(Account, pk=account_id)
        if not self.has_change_permission(request, account):
            raise PermissionDenied
        form = CreditsForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            operation = form.cleaned_data["operation"]
            amount = form.cleaned_data["amount"]
            note = f"{form.cleaned_data['reason'].strip()} (by {request.user.get_username()})"
            try:
                if operation == "grant":
                    entry = grant_credits(account=account, amount=amount, note=note)
                else:
                    entry = adjust_credits(account=account, amount=amount, note=note)
            except ApplicationError as exc:
                form.add_error("amount", exc.message)
            else:
                self.message_user(
                    request,
                    f"{entry.get_kind_display()} of {entry.amount:+d} credits recorded; "
                    f"{account.name} now has {entry.balance_after} credits.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:accounts_account_change", args=[account.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": account,
            "account": account,
            "form": form,
            "title": f"Grant or adjust credits: {account.name}",
        }
        return TemplateResponse(request, "admin/billing/account/credits.html", context)


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

from billing.models import CreditPack, Purchase, RejectedPayment  # noqa: E402


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


# The account page with its billing part: billing sits above accounts, so it
# extends accounts' page rather than accounts importing billing.
admin.site.unregister(Account)


@admin.register(Account)
class AccountWithCreditsAdmin(AccountCreditsAdmin, AccountAdmin):
    list_display = [*AccountAdmin.list_display, "credits"]
    fields = ["name", "credit_balance", "created_at", "credits", "users", "keys", "ledger"]
    readonly_fields = ["credit_balance", "created_at", "credits", "users", "keys", "ledger"]


@admin.register(RejectedPayment)
class RejectedPaymentAdmin(admin.ModelAdmin):
    """Paid Checkout Sessions that granted nothing (not the pack's price),
    read-only: refund them in Stripe, or grant credits from the account's page."""

    list_display = ["created_at", "account", "pack", "paid", "reason", "checkout_session_id"]
    list_filter = ["currency"]
    list_select_related = ["account", "pack"]
    search_fields = ["account__name", "checkout_session_id", "payment_intent_id"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "account",
        "pack",
        "paid",
        "reason",
        "checkout_session_id",
        "payment_intent_id",
        "event_id",
    ]
    readonly_fields = fields
    actions = None

    @admin.display(description="Paid", ordering="amount_paid")
    def paid(self, rejected: RejectedPayment) -> str:
        return rejected.paid_display

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
