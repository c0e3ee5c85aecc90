"""Admin of notification channels (through the services; the URL write-only, a password-like input
that never shows the stored value) and of deliveries (read-only). Imported by monitoring/admin.py."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from mlops_dashboard.admin_utils import ReadOnlyAdmin

from . import notify
from .models import Delivery, NotificationChannel
from .services import channels as channel_services


class NotificationChannelAdminForm(forms.ModelForm):
    new_url = forms.CharField(
        label="URL", required=False, max_length=notify.URL_MAX_LENGTH, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password", "size": 80}),
        help_text="An apprise URL (mailto://, slack://, json://, …). Write-only: the stored URL is never shown; "
                  "leave it empty to keep it.")

    class Meta:
        model = NotificationChannel
        # The model's `url` is not a form field: the stored value never reaches the page.
        fields = ("project", "name", "min_priority", "enabled", "default_route")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            self.fields["new_url"].required = True

    def clean_new_url(self):
        url = self.cleaned_data.get("new_url") or ""
        if url:
            try:
                notify.describe(url)
            except notify.InvalidURL as exc:
                raise forms.ValidationError(str(exc)) from None
        return url

    def clean(self):
        cleaned = super().clean()
        project = cleaned.get("project") if self.instance.pk is None else self.instance.project
        name = (cleaned.get("name") or "").strip()
        if name and NotificationChannel.objects.filter(project=project, name=name).exclude(pk=self.instance.pk).exists():
            self.add_error("name", "A channel with this name already exists in this scope.")
        return cleaned


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = NotificationChannelAdminForm
    list_display = ("name", "project", "service", "url_masked", "min_priority", "enabled", "default_route",
                    "consecutive_failures", "last_sent_at", "last_failed_at", "last_error")
    list_filter = ("project", "service", "min_priority", "enabled", "default_route")
    list_select_related = ("project",)
    search_fields = ("name", "service", "url_masked")
    readonly_fields = ("service", "url_masked", "consecutive_failures", "last_error", "last_sent_at", "last_failed_at",
                       "created_by", "created_at", "updated_at")
    actions = ["send_test", "enable_channels", "disable_channels"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("project",) if obj is not None else ())

    def get_fields(self, request, obj=None):
        return ("project", "name", "new_url", "service", "url_masked", "min_priority", "enabled", "default_route",
                "consecutive_failures", "last_error", "last_sent_at", "last_failed_at", "created_by", "created_at",
                "updated_at")

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        fields = {f: data[f] for f in ("name", "min_priority", "enabled", "default_route") if f in data}
        if data.get("new_url"):
            fields["url"] = data["new_url"]
        if change:
            saved = channel_services.channel_update(user=request.user, channel=NotificationChannel.objects.get(pk=obj.pk),
                                                    **fields)
        else:
            saved = channel_services.channel_create(user=request.user, project=data.get("project"), **fields)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        channel_services.channel_delete(user=request.user, channel=obj)

    def delete_queryset(self, request, queryset):
        for channel in queryset:
            channel_services.channel_delete(user=request.user, channel=channel)

    @admin.action(description="Send a test message to the selected channels")
    def send_test(self, request, queryset):
        for channel in queryset:
            channel_services.channel_test(user=request.user, channel=channel)
        self.message_user(request, f"{queryset.count()} test message(s) queued.", messages.SUCCESS)

    @admin.action(description="Enable the selected channels")
    def enable_channels(self, request, queryset):
        for channel in queryset:
            channel_services.channel_set_enabled(user=request.user, channel=channel, enabled=True)

    @admin.action(description="Disable the selected channels")
    def disable_channels(self, request, queryset):
        for channel in queryset:
            channel_services.channel_set_enabled(user=request.user, channel=channel, enabled=False)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "channel_name", "notification", "status", "attempts", "last_attempt_at", "sent_at",
                    "error")
    list_filter = ("status", "notification__kind", "notification__project")
    list_select_related = ("notification",)
    search_fields = ("channel_name", "error", "notification__title")
    date_hierarchy = "created_at"
    fields = ("notification", "channel", "channel_name", "recipient", "status", "attempts", "error", "created_at",
              "last_attempt_at", "sent_at")
    readonly_fields = fields
