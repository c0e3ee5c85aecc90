"""Admin of the core: the activity feed, read-only."""

from django.contrib import admin

from .admin_utils import ReadOnlyAdmin
from .models import Activity


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "title", "action_type", "user", "status", "severity_level", "duration")
    list_filter = ("action_type", "severity_level", "status", "created_at")
    search_fields = ("title", "description", "user__username")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
