"""Removal jobs in the admin: a read-only record of what ran, for whom,
how long it took and why it failed."""

import uuid

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from removal.downloads import input_response
from removal.models import RemovalJob
from removal.serializers import download_path
from revid.errors import ApplicationError, error_response

THUMBNAIL = (
    '<img src="{}" alt="{}" loading="lazy" style="width:{}px;height:{}px;object-fit:contain;'
    "border:1px solid #ddd;border-radius:4px;background:#fff "
    'repeating-conic-gradient(#e3e4ec 0 25%, #fff 0 50%) 0 0 / 12px 12px">'
)


@admin.register(RemovalJob)
class RemovalJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "input_thumbnail",
        "output_thumbnail",
        "account",
        "model_name",
        "status",
        "progress",
        "created_at",
        "elapsed_seconds",
        "short_error",
    ]
    list_filter = ["status", "model_name", "account"]
    list_select_related = ["account"]
    search_fields = ["id"]
    search_help_text = "Search by task id (the full UUID)."
    date_hierarchy = "created_at"
    actions = None
    fieldsets = [
        (None, {"fields": ["id", "account", "api_key_name", "model_name", "status", "progress"]}),
        ("Images", {"fields": ["input_preview", "output_preview", "original_filename"]}),
        (
            "Sizes",
            {"fields": ["input_format", "input_size", "width", "height", "output_size"]},
        ),
        (
            "Timings",
            {
                "fields": [
                    "created_at",
                    "started_at",
                    "completed_at",
                    "elapsed_seconds",
                    "stage_seconds",
                    "attempts",
                    "expires_at",
                    "files_deleted_at",
                ]
            },
        ),
        ("Outcome", {"fields": ["message", "error", "charges"]}),
    ]

    readonly_fields = [
        "api_key_name",
        "input_preview",
        "output_preview",
        "charges",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Ledger rows point at jobs; a job's record outlives its files.
        return False

    def get_search_results(self, request, queryset, search_term):
        # A task id is a UUID: match it exactly, and a malformed one matches
        # nothing rather than raising a validation error.
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            job_id = uuid.UUID(term)
        except ValueError:
            return queryset.none(), False
        return queryset.filter(pk=job_id), False

    def get_urls(self):
        return [
            path(
                "<uuid:job_id>/input/",
                self.admin_site.admin_view(self.input_view),
                name="removal_removaljob_input",
            ),
            *super().get_urls(),
        ]

    def input_view(self, request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        try:
            return input_response(get_object_or_404(RemovalJob, pk=job_id))
        except ApplicationError as exc:
            return error_response(exc.message, exc.code, exc.status_code)

    def _thumbnail(self, url: str | None, alt: str, size: int) -> str:
        if url is None:
            return "-"
        return format_html(THUMBNAIL, url, alt, size, size)

    def _input_url(self, job: RemovalJob) -> str | None:
        return (
            reverse("admin:removal_removaljob_input", args=[job.id]) if job.has_live_input else None
        )

    def _output_url(self, job: RemovalJob) -> str | None:
        return download_path(job) if job.has_live_output else None

    @admin.display(description="Input")
    def input_thumbnail(self, job: RemovalJob) -> str:
        return self._thumbnail(self._input_url(job), "Input", 48)

    @admin.display(description="Output")
    def output_thumbnail(self, job: RemovalJob) -> str:
        return self._thumbnail(self._output_url(job), "Output", 48)

    @admin.display(description="Input image")
    def input_preview(self, job: RemovalJob) -> str:
        return self._thumbnail(self._input_url(job), "Input", 240)

    @admin.display(description="Output image")
    def output_preview(self, job: RemovalJob) -> str:
        return self._thumbnail(self._output_url(job), "Output", 240)

    @admin.display(description="Error")
    def short_error(self, job: RemovalJob) -> str:
        return (job.error[:80] + "…") if len(job.error) > 80 else job.error

    @admin.display(description="API key")
    def api_key_name(self, job: RemovalJob) -> str:
        if job.api_key is None:
            return "web upload" if job.api_key_id is None else "-"
        return f"{job.api_key.name} ({job.api_key.prefix}…)"

    @admin.display(description="Ledger")
    def charges(self, job: RemovalJob) -> str:
        entries = job.ledger_entries.order_by("created_at")
        return ", ".join(f"{e.get_kind_display()} {e.amount:+d}" for e in entries) or "-"
