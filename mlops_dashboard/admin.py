"""Admin of the core: projects and their members, the audit log and the activity feed (read-only),
API tokens (read-only, revocable)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError

from . import memberships
from .admin_utils import ReadOnlyAdmin
from .models import Activity, ApiToken, AuditEntry, Membership, Project
from .projects import Conflict


class MembershipInline(admin.TabularInline):
    """A project's members at a glance; they are changed in Memberships (through the services, so
    the last-maintainer rule and the audit log hold)."""

    model = Membership
    extra = 0
    fields = ("user", "role", "added_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "member_count", "created_at")
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]

    @admin.display(description="members")
    def member_count(self, obj):
        return obj.memberships.count()

    def has_delete_permission(self, request, obj=None):
        return False  # every object of the project is PROTECTed to it; projects are not deleted here


class MembershipAdminForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ("project", "user", "role")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:  # a member stays in its project: only the role changes
            for name in ("project", "user"):
                self.fields[name].disabled = True

    def clean(self):
        data = super().clean()
        before = Membership.objects.filter(pk=self.instance.pk).values_list("role", flat=True).first()
        if before == "maintainer" and data.get("role") not in (None, "maintainer"):
            others = Membership.objects.filter(project_id=self.instance.project_id, role="maintainer").exclude(
                pk=self.instance.pk)
            if not others.exists():
                raise ValidationError("This is the project's last maintainer: make someone else a maintainer first.")
        return data


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Every change goes through the membership services: audit entries, the last-maintainer rule,
    the signals open sockets follow."""

    form = MembershipAdminForm
    list_display = ("user", "project", "role", "added_at")
    list_filter = ("project", "role")
    search_fields = ("user__username", "project__name", "project__slug")
    list_select_related = ("user", "project")
    autocomplete_fields = ("project",)
    actions = ["remove_members"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # remove_members instead: through the service
        return actions

    def _write(self, request, write):
        try:
            write()
        except (Conflict, PermissionDenied) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return False
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return False
        return True

    def save_model(self, request, obj, form, change):
        if change:
            ok = self._write(request, lambda: memberships.membership_change(
                user=request.user, project=obj.project, username=obj.user.get_username(), role=obj.role))
        else:
            def add():
                obj.pk = memberships.membership_add(user=request.user, project=obj.project,
                                                    username=obj.user.get_username(), role=obj.role).pk
            ok = self._write(request, add)
        if not ok and not change:
            obj.pk = None

    def response_add(self, request, obj, post_url_continue=None):
        if obj.pk is None:  # refused: back to the form, the reason already shown
            from django.http import HttpResponseRedirect

            return HttpResponseRedirect(request.path)
        return super().response_add(request, obj, post_url_continue)

    def delete_model(self, request, obj):
        self._write(request, lambda: memberships.membership_remove(
            user=request.user, project=obj.project, username=obj.user.get_username()))

    @admin.action(description="Remove selected members", permissions=["delete"])
    def remove_members(self, request, queryset):
        removed = 0
        for membership in queryset.select_related("user", "project"):
            removed += self._write(request, lambda m=membership: memberships.membership_remove(
                user=request.user, project=m.project, username=m.user.get_username()))
        if removed:
            self.message_user(request, f"Removed {removed} member{'s' if removed != 1 else ''}.", messages.SUCCESS)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Append-only: no add, change or delete here (AUDIT_RETENTION_DAYS prunes it)."""

    list_display = ("created_at", "username", "project", "action", "object_type", "object_repr", "summary")
    list_filter = ("project", "action", "created_at")
    search_fields = ("username", "object_repr", "object_type", "object_id", "summary")
    date_hierarchy = "created_at"
    list_select_related = ("project",)

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "title", "project", "action_type", "user", "status", "severity_level", "duration")
    list_filter = ("project", "action_type", "severity_level", "status", "created_at")
    search_fields = ("title", "description", "user__username")
    date_hierarchy = "created_at"
    list_select_related = ("user",)


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are made by their owners (the API tokens page, POST /api/auth/token/); the admin lists
    and revokes them, and never shows a key, its first characters or its digest."""

    list_display = ("name", "user", "project", "scope", "created", "expiry", "last_used_at")
    list_filter = ("scope", "project", "created", "expiry", "last_used_at")
    search_fields = ("name", "user__username")
    list_select_related = ("user", "project")
    fields = ("name", "user", "project", "scope", "created", "expiry", "last_used_at")
    actions = ["revoke_tokens"]

    @admin.action(description="Revoke selected API tokens", permissions=["delete"])
    def revoke_tokens(self, request, queryset):
        count, _ = queryset.delete()  # through the ORM: post_delete fires for each
        self.message_user(request, f"Revoked {count} API token{'s' if count != 1 else ''}.", messages.SUCCESS)
