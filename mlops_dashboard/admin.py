"""Admin of the core: the activity feed (read-only) and API tokens (read-only, revocable)."""

from django.contrib import admin, messages

from .admin_utils import ReadOnlyAdmin
from .models import Activity, ApiToken


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "title", "action_type", "user", "status", "severity_level", "duration")
    list_filter = ("action_type", "severity_level", "status", "created_at")
    search_fields = ("title", "description", "user__username")
    date_hierarchy = "created_at"
    list_select_related = ("user",)


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are made by their owners (the API tokens page, POST /api/auth/token/); the admin lists
    and revokes them, and never shows a key, its first characters or its digest."""

    list_display = ("name", "user", "created", "expiry", "last_used_at")
    list_filter = ("created", "expiry", "last_used_at")
    search_fields = ("name", "user__username")
    list_select_related = ("user",)
    fields = ("name", "user", "created", "expiry", "last_used_at")
    actions = ["revoke_tokens"]

    @admin.action(description="Revoke selected API tokens", permissions=["delete"])
    def revoke_tokens(self, request, queryset):
        count, _ = queryset.delete()  # through the ORM: post_delete fires for each
        self.message_user(request, f"Revoked {count} API token{'s' if count != 1 else ''}.", messages.SUCCESS)
