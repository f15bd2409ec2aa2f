"""Admin for accounts and API keys.

Nothing here changes credits or keys directly: billing's part of the
account page (balance, ledger, the grant/adjust form) comes from
``billing.admin`` (which registers this page again with that part mixed
in: billing sits above accounts), keys are made and revoked by ``accounts.services``. An
API key's primary key embeds its hash, so key pages, links and admin log
entries name a key by its public prefix and never show the hash.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.admin.options import get_content_type_for_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from rest_framework_api_key.models import APIKey

from accounts.models import Account, ApiKey, Member
from accounts.services import create_api_key, revoke_api_key

# The library's own key model is unused here (ours adds the account); its
# admin page would only confuse.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    """The account page. ``billing.admin`` registers it again with its
    credits part (button, ledger, grant/adjust form) mixed in."""

    list_display = ["name", "credit_balance", "member_count", "key_count", "created_at"]
    search_fields = ["name", "members__user__username"]
    fields = ["name", "credit_balance", "created_at", "users", "keys"]
    readonly_fields = ["credit_balance", "created_at", "users", "keys"]

    def get_queryset(self, request) -> QuerySet[Account]:
        # Counted in the list's one query, not one query per row and column.
        return (
            super()
            .get_queryset(request)
            .annotate(
                members_total=Count("members", distinct=True),
                active_keys_total=Count(
                    "api_keys", filter=Q(api_keys__revoked=False), distinct=True
                ),
            )
        )

    def get_fields(self, request, obj=None):
        # A new account starts at 0 credits; grants come after it exists.
        return ["name"] if obj is None else self.fields

    def has_delete_permission(self, request, obj=None) -> bool:
        # Ledger rows and jobs reference the account (PROTECT): deleting it
        # would either fail or lose the history.
        return False

    @admin.display(description="Users", ordering="members_total")
    def member_count(self, account: Account) -> int:
        return account.members_total

    @admin.display(description="API keys", ordering="active_keys_total")
    def key_count(self, account: Account) -> int:
        return account.active_keys_total

    @admin.display(description="Users")
    def users(self, account: Account) -> str:
        members = account.members.select_related("user").order_by("user__username")
        return render_to_string(
            "admin/accounts/account/users.html", {"account": account, "members": members}
        )

    @admin.display(description="API keys")
    def keys(self, account: Account) -> str:
        return render_to_string(
            "admin/accounts/account/keys.html",
            {"account": account, "api_keys": account.api_keys.order_by("-created")},
        )


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

    def get_object(self, request, object_id, from_field=None) -> ApiKey | None:
        # Log entries (and so the history pages) name a key by its prefix;
        # the primary key embeds the hash and never appears in a URL.
        return self.get_queryset(request).filter(prefix=object_id).first()

    def _log(self, request, api_key: ApiKey, action_flag: int, message) -> LogEntry:
        # Django's log_addition/log_change store ``obj.pk``, which for a key
        # is "prefix.hash": write the entry ourselves with the prefix instead.
        return LogEntry.objects.create(
            user_id=request.user.pk,
            content_type_id=get_content_type_for_model(api_key).pk,
            object_id=api_key.prefix,
            object_repr=str(api_key)[:200],
            action_flag=action_flag,
            # The admin stores structured messages as JSON, as log_actions does.
            change_message=message if isinstance(message, str) else json.dumps(message),
        )

    def log_addition(self, request, obj, message) -> LogEntry:
        return self._log(request, obj, ADDITION, message)

    def log_change(self, request, obj, message) -> LogEntry:
        return self._log(request, obj, CHANGE, message)

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
            if not api_key.revoked:
                revoke_api_key(api_key=api_key)
                self.log_change(request, api_key, "Revoked the key.")
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
