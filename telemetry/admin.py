"""Admin of telemetry's registry: sources and their metrics (series), edited through the services
(validation, audit, activity). Sources are made on first sight by the ingest API, so none is added
here; deleting one removes its metrics, points and rollups (services.source_delete), deleting a
metric its points and rollups (services.metric_delete).

Points and rollups are not registered: millions of rows in time-partitioned tables, whose changelist
count alone would be slow; they are read through the series API and the Telemetry pages."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.utils import timezone

from . import services
from .models import Metric, Source, TelemetryImport


class SourceAdminForm(forms.ModelForm):
    class Meta:
        model = Source
        fields = services.SOURCE_FIELDS

    def clean_labels(self):
        try:
            return services.labels_clean(self.cleaned_data.get("labels"))
        except ValidationError as exc:
            raise forms.ValidationError(exc.message_dict["labels"]) from None


class MetricAdminForm(forms.ModelForm):
    class Meta:
        model = Metric
        fields = services.METRIC_FIELDS

    def clean_labels(self):
        try:
            return services.labels_clean(self.cleaned_data.get("labels"))
        except ValidationError as exc:
            raise forms.ValidationError(exc.message_dict["labels"]) from None

    def clean_anomaly(self):
        try:
            return services.anomaly_clean(self.cleaned_data.get("anomaly"))
        except ValidationError as exc:
            raise forms.ValidationError(exc.message_dict["anomaly"]) from None


class MetricInline(admin.TabularInline):
    model = Metric
    fields = ("name", "unit", "expected_interval_seconds", "last_value", "last_timestamp")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("name",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RegistryAdmin(admin.ModelAdmin):
    """Sources and metrics: made on first sight by POST /api/telemetry/, changed and deleted through
    the services (validated, audited)."""

    registry_fields: tuple[str, ...] = ()

    def registry_update(self, user, obj, fields):
        raise NotImplementedError

    def registry_delete(self, user, obj):
        raise NotImplementedError

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in self.registry_fields if name in form.cleaned_data}
        self.registry_update(request.user, obj, fields)
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        self.registry_delete(request.user, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.registry_delete(request.user, obj)


@admin.register(Source)
class SourceAdmin(RegistryAdmin):
    form = SourceAdminForm
    list_display = ("name", "project", "status", "last_seen", "expected_interval_seconds", "is_demo", "metrics_count")
    list_filter = ("project", "is_demo")
    list_select_related = ("project",)
    search_fields = ("name", "description")
    readonly_fields = ("project", "name", "status", "is_demo", "created_by", "created_at", "last_seen", "silent_since")
    fields = ("project", "name", "status", "description", "labels", "expected_interval_seconds", "is_demo",
              "created_by", "created_at", "last_seen", "silent_since")
    inlines = [MetricInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(metrics_count=Count("metrics"))

    @admin.display(description="Status")
    def status(self, obj):
        return obj.status_at(timezone.now()) if obj.pk else "—"

    @admin.display(description="Metrics", ordering="metrics_count")
    def metrics_count(self, obj):
        return getattr(obj, "metrics_count", None)

    registry_fields = services.SOURCE_FIELDS

    def registry_update(self, user, obj, fields):
        services.source_update(user=user, source=obj, **fields)

    def registry_delete(self, user, obj):
        services.source_delete(user=user, source=obj)


@admin.register(Metric)
class MetricAdmin(RegistryAdmin):
    form = MetricAdminForm
    list_display = ("name", "source", "project", "unit", "expected_interval_seconds", "last_value", "last_timestamp")
    list_filter = (("source__project", admin.RelatedOnlyFieldListFilter), "unit")
    list_select_related = ("source__project",)
    search_fields = ("name", "source__name", "description")
    readonly_fields = ("source", "name", "last_value", "last_timestamp", "created_at")
    fields = ("source", "name", "unit", "description", "labels", "expected_interval_seconds", "anomaly", "last_value",
              "last_timestamp", "created_at")

    @admin.display(description="Project", ordering="source__project")
    def project(self, obj):
        return obj.source.project

    registry_fields = services.METRIC_FIELDS

    def registry_update(self, user, obj, fields):
        services.metric_update(user=user, metric=obj, **fields)

    def registry_delete(self, user, obj):
        services.metric_delete(user=user, metric=obj)


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
