"""Admin for accounts and API keys.

Nothing here changes credits or keys directly: grants and adjustments go
through ``billing.services`` (which writes the ledger row), keys are made
and revoked by ``accounts.services``. An API key's primary key embeds its
hash, so key pages are addressed by the public prefix and the admin never
links to, shows or edits the hash.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from rest_framework_api_key.models import APIKey

from accounts.models import Account, ApiKey, Member
from accounts.services import create_api_key, revoke_api_key
from billing.models import LedgerEntry
from billing.services import adjust_credits, grant_credits
from revid.errors import ApplicationError

# The library's own key model is unused here (ours adds the account); its
# admin page would only confuse.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)

LEDGER_ROWS_SHOWN = 25


def _table(headers: list[str], rows: list[tuple], empty: str) -> str:
    if not rows:
        return format_html("<p>{}</p>", empty)
    head = format_html_join("", "<th>{}</th>", ((header,) for header in headers))
    body = format_html_join(
        "",
        "<tr>" + "".join("<td>{}</td>" for _ in headers) + "</tr>",
        rows,
    )
    return format_html(
        '<table class="readonly-inline"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        head,
        body,
    )


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


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "credit_balance", "member_count", "key_count", "created_at", "credits"]
    search_fields = ["name", "members__user__username"]
    fields = ["name", "credit_balance", "created_at", "credits", "users", "keys", "ledger"]
    readonly_fields = ["credit_balance", "created_at", "credits", "users", "keys", "ledger"]

    def get_fields(self, request, obj=None):
        # A new account starts at 0 credits; grants come after it exists.
        return ["name"] if obj is None else self.fields

    def has_delete_permission(self, request, obj=None) -> bool:
        # Ledger rows and jobs reference the account (PROTECT): deleting it
        # would either fail or lose the history.
        return False

    @admin.display(description="Users")
    def member_count(self, account: Account) -> int:
        return account.members.count()

    @admin.display(description="API keys")
    def key_count(self, account: Account) -> int:
        return account.api_keys.filter(revoked=False).count()

    @admin.display(description="Credits")
    def credits(self, account: Account) -> str:
        if account.pk is None:
            return "-"
        return format_html(
            '<a class="button" href="{}">Grant or adjust credits</a>',
            reverse("admin:accounts_account_credits", args=[account.pk]),
        )

    @admin.display(description="Users")
    def users(self, account: Account) -> str:
        rows = [
            (
                member.user.get_username(),
                member.user.email or "-",
                "yes" if member.user.is_staff else "no",
                member.user.last_login.strftime("%Y-%m-%d %H:%M")
                if member.user.last_login
                else "never",
            )
            for member in account.members.select_related("user").order_by("user__username")
        ]
        table = _table(["Username", "Email", "Staff", "Last login"], rows, "No users yet.")
        return format_html(
            '{}<p><a href="{}?account={}">Add a user to this account</a></p>',
            table,
            reverse("admin:accounts_member_add"),
            account.pk,
        )

    @admin.display(description="API keys")
    def keys(self, account: Account) -> str:
        rows = [
            (
                key.name,
                f"{key.prefix}…",
                key.created.strftime("%Y-%m-%d %H:%M"),
                key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else "never",
                "revoked" if key.revoked else "active",
            )
            for key in account.api_keys.order_by("-created")
        ]
        table = _table(["Name", "Prefix", "Created", "Last used", "Status"], rows, "No keys.")
        return format_html(
            '{}<p><a href="{}?account={}">Create a key for this account</a> · '
            '<a href="{}?account__id__exact={}">Manage keys</a></p>',
            table,
            reverse("admin:accounts_apikey_add"),
            account.pk,
            reverse("admin:accounts_apikey_changelist"),
            account.pk,
        )

    @admin.display(description=f"Ledger (latest {LEDGER_ROWS_SHOWN})")
    def ledger(self, account: Account) -> str:
        entries = LedgerEntry.objects.filter(account=account).order_by("-created_at", "-id")
        rows = [
            (
                entry.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                entry.get_kind_display(),
                f"{entry.amount:+d}",
                entry.balance_after,
                entry.job_id or "-",
                entry.note,
            )
            for entry in entries[:LEDGER_ROWS_SHOWN]
        ]
        table = _table(
            ["When", "Kind", "Amount", "Balance after", "Job", "Note"], rows, "No entries."
        )
        return format_html(
            '{}<p><a href="{}?account__id__exact={}">All {} ledger entries</a></p>',
            table,
            reverse("admin:billing_ledgerentry_changelist"),
            account.pk,
            entries.count(),
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
        return TemplateResponse(request, "admin/accounts/account/credits.html", context)


class ApiKeyCreateForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["account", "name"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "key_prefix", "status", "created", "last_used_at", "revoke"]
    list_filter = ["revoked", "account"]
    search_fields = ["name", "prefix", "account__name"]
    # No links to the change page (its URL carries the primary key, which
    # embeds the hash) and no bulk actions (their checkboxes carry it too).
    list_display_links = None
    actions = None
    form = ApiKeyCreateForm

    def get_changeform_initial_data(self, request):
        return {"account": request.GET.get("account"), "name": "default"}

    def has_change_permission(self, request, obj=None) -> bool:
        # Keys are never edited: made by the add form, revoked by a button.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Revoked keys stay, so old jobs still say which key made them.
        return False

    @admin.display(description="Prefix", ordering="prefix")
    def key_prefix(self, api_key: ApiKey) -> str:
        return f"{api_key.prefix}…"

    @admin.display(description="Status", ordering="revoked")
    def status(self, api_key: ApiKey) -> str:
        return "Revoked" if api_key.revoked else "Active"

    @admin.display(description="Revoke")
    def revoke(self, api_key: ApiKey) -> str:
        if api_key.revoked:
            return "-"
        return format_html(
            '<a href="{}">Revoke…</a>',
            reverse("admin:accounts_apikey_revoke", args=[api_key.prefix]),
        )

    def save_model(self, request, obj, form, change):
        # The plaintext exists only here; the message is its one showing.
        api_key, plaintext = create_api_key(
            account=form.cleaned_data["account"], name=form.cleaned_data["name"]
        )
        obj.pk = api_key.pk
        obj.prefix = api_key.prefix
        self.message_user(
            request,
            format_html(
                "API key “{}” created for {}. Copy it now, it will not be shown again: "
                '<code class="new-api-key">{}</code>',
                api_key.name,
                api_key.account.name,
                plaintext,
            ),
            messages.SUCCESS,
        )

    def log_addition(self, request, obj, message):
        # The admin log stores the object's repr and id; keep both hash-free.
        return None

    def response_add(self, request, obj, post_url_continue=None):
        return HttpResponseRedirect(reverse("admin:accounts_apikey_changelist"))

    def get_urls(self):
        return [
            path(
                "<str:prefix>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name="accounts_apikey_revoke",
            ),
            *super().get_urls(),
        ]

    def revoke_view(self, request: HttpRequest, prefix: str) -> HttpResponse:
        """Asks once, then revokes for good through accounts.services."""
        if not self.has_view_permission(request) or not request.user.has_perm(
            "accounts.change_apikey"
        ):
            raise PermissionDenied
        api_key = get_object_or_404(ApiKey.objects.select_related("account"), prefix=prefix)
        if request.method == "POST":
            revoke_api_key(api_key=api_key)
            self.message_user(
                request,
                f"API key “{api_key.name}” ({api_key.prefix}…) of {api_key.account.name} is "
                "revoked; it will never work again.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:accounts_apikey_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "api_key": api_key,
            "title": "Revoke API key",
        }
        return TemplateResponse(request, "admin/accounts/apikey/revoke.html", context)

    def get_queryset(self, request) -> QuerySet[ApiKey]:
        return super().get_queryset(request).select_related("account")


class MemberForm(forms.ModelForm):
    class Meta:
        model = Member
        fields = ["user", "account"]


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ["user", "account"]
    list_filter = ["account"]
    search_fields = ["user__username", "account__name"]
    autocomplete_fields = ["account"]
    form = MemberForm

    def get_changeform_initial_data(self, request):
        return {"account": request.GET.get("account")}
