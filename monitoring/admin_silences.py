"""Admin of silences and maintenance windows (imported by monitoring/admin.py). Silences are made on
the Monitoring page or the API and ended here with an action; maintenance windows are edited here
through the services (validation, ownership, audit, alerts re-marked)."""

from django import forms
from django.contrib import admin, messages

from mlops_dashboard.admin_utils import ReadOnlyAdmin, pretty_json

from . import silencing
from .models import MaintenanceWindow, Silence
from .services import silences as silence_services


@admin.register(Silence)
class SilenceAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "matchers_text", "project", "starts_at", "ends_at", "state", "created_by", "comment")
    list_filter = ("kind", "project")
    list_select_related = ("project", "created_by")
    search_fields = ("comment",)
    date_hierarchy = "starts_at"
    actions = ["expire_silences"]
    fields = ("kind", "matchers_display", "project", "starts_at", "ends_at", "state", "comment", "created_by",
              "created_at")
    readonly_fields = fields

    @admin.display(description="matchers")
    def matchers_text(self, silence):
        return ", ".join(f"{k}={v}" for k, v in silence.matchers.items())

    @admin.display(description="matchers")
    def matchers_display(self, silence):
        return pretty_json(silence.matchers)

    @admin.action(description="Expire the selected silences (end them now)")
    def expire_silences(self, request, queryset):
        done = skipped = 0
        for silence in queryset:
            try:
                silence_services.silence_expire(user=request.user, silence=silence)
                done += 1
            except silence_services.Conflict:
                skipped += 1
        self.message_user(request, f"{done} silence(s) ended" + (f"; {skipped} had already ended." if skipped else "."),
                          messages.SUCCESS if done else messages.WARNING)


class MaintenanceWindowForm(forms.ModelForm):
    class Meta:
        model = MaintenanceWindow
        fields = ("matchers", "cron", "duration_minutes", "comment", "enabled")

    def clean(self):
        data = super().clean()
        try:
            silencing.clean_matchers(data.get("matchers"))
        except silencing.InvalidMatchers as exc:
            self.add_error("matchers", str(exc))
        for field, error in silence_services.window_errors(data.get("cron"), data.get("duration_minutes"),
                                                           data.get("comment") or "").items():
            if field not in self.errors:
                self.add_error(field, error)
        return data


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    form = MaintenanceWindowForm
    list_display = ("id", "cron", "duration_minutes", "matchers", "project", "enabled", "comment", "created_by")
    list_filter = ("enabled", "project")
    list_select_related = ("project", "created_by")
    list_editable = ("enabled",)
    fields = ("matchers", "cron", "duration_minutes", "comment", "enabled", "project", "created_by")
    readonly_fields = ("project", "created_by")

    def save_model(self, request, obj, form, change):
        # Through the services: the project comes from the matchers, and alerts are re-marked.
        fields = {f: getattr(obj, f) for f in silence_services.WINDOW_FIELDS}
        if change:
            saved = silence_services.maintenance_window_update(
                user=request.user, window=MaintenanceWindow.objects.get(pk=obj.pk), **fields)
        else:
            saved = silence_services.maintenance_window_create(user=request.user, **fields)
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        silence_services.maintenance_window_delete(user=request.user, window=obj)

    def delete_queryset(self, request, queryset):
        for window in queryset:
            silence_services.maintenance_window_delete(user=request.user, window=window)
