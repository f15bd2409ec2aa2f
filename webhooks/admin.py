"""Webhooks in the admin: a read-only record of every event and attempt,
with a "resend" action (the same service the customer's button calls)."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _resend(modeladmin: admin.ModelAdmin, request: HttpRequest, events: list) -> None:
    for event in events:
        services.resend(event=event)
    modeladmin.message_user(
        request,
        f"Queued a new attempt for {len(events)} event(s).",
        messages.SUCCESS,
    )


class DeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    fields = ["attempt", "created_at", "url", "status_code", "duration_seconds", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["attempt"]

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "account", "job", "batch", "status", "attempts", "created_at"]
    list_filter = ["status", "type", "account"]
    list_select_related = ["account", "job", "batch"]
    search_fields = ["id", "job__id"]
    search_help_text = "Search by webhook-id (msg_...) or task id."
    date_hierarchy = "created_at"
    readonly_fields = [
        "id",
        "type",
        "account",
        "job",
        "batch",
        "url",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "delivered_at",
        "body",
    ]
    inlines = [DeliveryInline]
    actions = ["resend"]

    @admin.action(description="Resend the selected events now")
    def resend(self, request: HttpRequest, queryset: QuerySet) -> None:
        _resend(self, request, list(queryset))


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "event",
        "attempt",
        "url",
        "status_code",
        "duration_seconds",
        "short_error",
        "next_retry_at",
        "created_at",
    ]
    list_filter = ["status_code", "event__type"]
    list_select_related = ["event"]
    search_fields = ["event__id", "event__job__id"]
    search_help_text = "Search by webhook-id (msg_...) or task id."
    date_hierarchy = "created_at"
    readonly_fields = [
        "event",
        "attempt",
        "url",
        "status_code",
        "duration_seconds",
        "error",
        "next_retry_at",
        "created_at",
        "finished_at",
    ]
    actions = ["resend"]

    @admin.display(description="error")
    def short_error(self, delivery: WebhookDelivery) -> str:
        return delivery.error[:80]

    @admin.action(description="Resend the events of the selected deliveries now")
    def resend(self, request: HttpRequest, queryset: QuerySet) -> None:
        deliveries = queryset.select_related("event")
        events = {delivery.event_id: delivery.event for delivery in deliveries}
        _resend(self, request, list(events.values()))
