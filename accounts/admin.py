from django.contrib import admin

from accounts.models import Account, ApiKey, Member


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "credit_balance", "created_at"]
    search_fields = ["name"]
    readonly_fields = ["credit_balance", "created_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "prefix", "revoked", "created", "last_used_at"]
    list_filter = ["revoked"]
    search_fields = ["name", "prefix", "account__name"]
    fields = ["name", "account", "prefix", "revoked", "created", "last_used_at"]
    readonly_fields = ["prefix", "created", "last_used_at"]


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ["user", "account"]
