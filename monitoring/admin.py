"""Admin of the monitoring app. Alerts are acknowledged and resolved through the same services as
the API (admin actions); rules are edited here or on the Monitoring page; samples, anomalies and
detections are read-only."""


from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError

from mlops_dashboard.admin_utils import ReadOnlyAdmin, pretty_json

from . import services
from .forms import AdminAlertRuleForm
from .models import Alert, AlertRule, Anomaly, AnomalyDetection, MetricSample


@admin.register(MetricSample)
class MetricSampleAdmin(ReadOnlyAdmin):
    list_display = ("timestamp", "host", "role", "resolution", "cpu_percent", "memory_percent", "disk_percent",
                    "active_connections", "api_response_time_ms", "predictions_per_minute", "health")
    list_filter = ("resolution", "health", "host", "role")
    date_hierarchy = "timestamp"


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "kind", "condition", "priority", "enabled", "updated_at")
    list_filter = ("project", "kind", "priority", "enabled")
    list_select_related = ("project",)
    search_fields = ("name", "slug", "description")
    list_editable = ("enabled",)
    actions = ["enable_rules", "disable_rules"]
    fields = ("slug", "project", "name", "kind", "metric", "comparison", "threshold", "duration_seconds", "priority",
              "enabled", "description", "suggested_actions", "channels", "repeat_interval_minutes")
    filter_horizontal = ("channels",)
    form = AdminAlertRuleForm

    def get_readonly_fields(self, request, obj=None):
        return ("slug", "project") if obj is not None else ()

    def save_model(self, request, obj, form, change):
        # Through the services: validation, the activity feed, and resolving a disabled rule's alerts.
        fields = {f: getattr(obj, f) for f in services.RULE_FIELDS if f != "channels"}
        fields["channels"] = list(form.cleaned_data.get("channels") or [])
        if change:
            rule = AlertRule.objects.get(pk=obj.pk)
            saved = services.alert_rule_update(rule=rule, user=request.user, **fields)
        else:
            saved = services.alert_rule_create(user=request.user, slug=obj.slug, project=obj.project_id, **fields)
        obj.pk, obj.slug = saved.pk, saved.slug

    @admin.action(description="Enable the selected rules")
    def enable_rules(self, request, queryset):
        for rule in queryset:
            services.alert_rule_set_enabled(rule=rule, enabled=True, user=request.user)

    @admin.action(description="Disable the selected rules (resolves their open alerts)")
    def disable_rules(self, request, queryset):
        for rule in queryset:
            services.alert_rule_set_enabled(rule=rule, enabled=False, user=request.user)

    def delete_model(self, request, obj):
        services.alert_rule_delete(rule=obj, user=request.user)

    def delete_queryset(self, request, queryset):
        for rule in queryset:
            services.alert_rule_delete(rule=rule, user=request.user)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "title", "project", "priority", "status", "subject", "occurrences", "last_seen_at",
                    "acknowledged_by", "resolved_by", "auto_resolved")
    list_filter = ("project", "status", "priority", "alert_type", "auto_resolved", "rule")
    search_fields = ("title", "message", "subject", "source")
    date_hierarchy = "created_at"
    list_select_related = ("acknowledged_by", "resolved_by", "project")
    actions = ["acknowledge_alerts", "resolve_alerts"]
    fields = ("title", "message", "project", "rule", "rule_key", "subject", "alert_type", "priority", "source", "status", "value",
              "occurrences", "suggested_actions_display", "metadata_display", "created_at", "last_seen_at",
              "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at", "auto_resolved", "resolution_note")
    readonly_fields = fields

    @admin.display(description="suggested actions")
    def suggested_actions_display(self, alert):
        return pretty_json(alert.suggested_actions)

    @admin.display(description="metadata")
    def metadata_display(self, alert):
        return pretty_json(alert.metadata)

    def _each(self, request, queryset, fn, verb):
        done = skipped = 0
        for alert in queryset:
            try:
                fn(alert=alert, user=request.user)
                done += 1
            except (services.Conflict, ValidationError, PermissionDenied):
                skipped += 1
        self.message_user(request, f"{done} alert(s) {verb}" + (f"; {skipped} skipped (already {verb})." if skipped else "."),
                          messages.SUCCESS if done else messages.WARNING)

    @admin.action(description="Acknowledge the selected alerts")
    def acknowledge_alerts(self, request, queryset):
        self._each(request, queryset, services.alert_acknowledge, "acknowledged")

    @admin.action(description="Resolve the selected alerts")
    def resolve_alerts(self, request, queryset):
        self._each(request, queryset, services.alert_resolve, "resolved")


@admin.register(Anomaly)
class AnomalyAdmin(ReadOnlyAdmin):
    list_display = ("detected_at", "project", "source", "entity", "metric", "value", "score", "severity", "alert")
    list_filter = ("project", "source", "severity", "metric")
    list_select_related = ("project",)
    search_fields = ("entity", "metric")
    date_hierarchy = "detected_at"


@admin.register(AnomalyDetection)
class AnomalyDetectionAdmin(ReadOnlyAdmin):
    list_display = ("id", "project", "target_name", "contamination", "status", "n_rows", "n_flagged", "max_score",
                    "created_at")
    list_filter = ("project", "status")
    list_select_related = ("project",)
    search_fields = ("dataset_name", "source_name")
    fields = ("project", "dataset", "dataset_name", "source", "source_name", "metrics", "start", "end", "use_baseline",
              "baseline_start", "baseline_end", "rows_range", "rows_baseline", "contamination", "columns",
              "columns_used", "status", "error", "n_rows",
              "n_flagged", "share_flagged", "max_score", "threshold", "scores_file", "top_rows_display", "created_by",
              "created_at", "started_at", "finished_at")
    readonly_fields = fields

    @admin.display(description="dataset or source", ordering="dataset_name")
    def target_name(self, detection):
        return detection.target_name

    @admin.display(description="top rows")
    def top_rows_display(self, detection):
        return pretty_json(detection.top_rows[:10])


from . import admin_channels  # noqa: E402,F401  (notification channels and deliveries)
from . import admin_silences  # noqa: E402,F401  (silences and maintenance windows)
