from django.contrib import admin

from .models import TelemetryImport


@admin.register(TelemetryImport)
class TelemetryImportAdmin(admin.ModelAdmin):
    """CSV imports of history: read-only (they are made by POST /api/telemetry/import/)."""

    list_display = ["id", "original_filename", "project", "status", "progress", "format", "rows", "points",
                    "created_by", "created_at", "finished_at"]
    list_filter = ["status", "format", "project", "created_at"]
    search_fields = ["original_filename", "source", "error"]
    readonly_fields = ["project", "created_by", "original_filename", "file", "file_size", "source", "format", "status",
                       "progress", "rows", "points", "first_timestamp", "last_timestamp", "error", "created_at",
                       "started_at", "finished_at", "heartbeat_at", "attempts", "cancel_requested"]
    fields = readonly_fields
    list_select_related = ["project", "created_by"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
