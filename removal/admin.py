from django.contrib import admin

from removal.models import RemovalJob


@admin.register(RemovalJob)
class RemovalJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "account",
        "model_name",
        "status",
        "progress",
        "created_at",
        "elapsed_seconds",
    ]
    list_filter = ["status", "model_name"]
    search_fields = ["id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
