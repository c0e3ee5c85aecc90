"""Admin of the training app. Rows are written by services only: the admin reads, and its actions
(cancel, deploy) call the same services as the API, as the admin user (so the same permission
checks and audit entries). Artifacts are never uploaded here."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404

from mlops_dashboard.admin_utils import ReadOnlyAdmin as BaseReadOnlyAdmin, pretty_json

from . import services
from .models import Deployment, ModelVersion, TrainingJob


class ReadOnlyAdmin(BaseReadOnlyAdmin):
    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(TrainingJob)
class TrainingJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "project", "name", "dataset_name", "algorithm", "task", "status", "progress_percent", "epoch",
                    "validation_score", "error_code", "created_at")
    list_filter = ("project", "status", "algorithm", "task", "error_code", "created_at")
    search_fields = ("name", "dataset_name", "target_column", "error")
    date_hierarchy = "created_at"
    list_select_related = ("dataset", "project")
    actions = ["cancel_jobs"]
    fields = ("project", "name", "dataset", "dataset_name", "target_column", "task", "algorithm", "epochs", "test_size",
              "status", "progress", "stage", "current_epoch", "current_loss", "live_accuracy", "message",
              "cancel_requested", "error_code", "error", "stage_failed", "suggestions_display", "metrics_display",
              "final_accuracy", "validation_score", "training_time", "history_display", "soft_time_limit",
              "time_limit", "attempts", "created_by", "created_at", "started_at", "heartbeat_at", "finished_at")
    readonly_fields = fields

    @admin.display(description="progress", ordering="progress")
    def progress_percent(self, job):
        return f"{job.progress:.0f}%"

    @admin.display(description="epoch")
    def epoch(self, job):
        return f"{job.current_epoch}/{job.epochs}"

    @admin.display(description="metrics")
    def metrics_display(self, job):
        return pretty_json(job.metrics)

    @admin.display(description="suggestions")
    def suggestions_display(self, job):
        return pretty_json(job.suggestions)

    @admin.display(description="history")
    def history_display(self, job):
        return pretty_json(job.history)

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request, queryset):
        cancelled = ended = 0
        for job in queryset:
            try:
                services.training_job_cancel(user=request.user, job=job)
                cancelled += 1
            except services.Conflict:
                ended += 1
            except (PermissionDenied, Http404) as exc:
                self.message_user(request, f"Training job #{job.pk}: {exc or 'not allowed'}", messages.ERROR)
        if cancelled:
            self.message_user(request, f"Cancelled or asked to stop {cancelled} job(s).", messages.SUCCESS)
        if ended:
            self.message_user(request, f"{ended} job(s) had already ended.", messages.WARNING)


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "project", "status", "algorithm", "task", "validation_score",
                    "prediction_count", "created_by", "deployed_at", "created_at")
    list_filter = ("project", "status", "algorithm", "task", "created_at")
    search_fields = ("name", "target_column", "artifact_sha256")
    list_select_related = ("dataset", "project", "created_by")
    actions = ["deploy_versions"]
    fields = ("project", "name", "version", "status", "algorithm", "task", "target_column", "dataset", "training_job",
              "created_by",
              "metrics_display", "final_accuracy", "validation_score", "feature_schema_display", "classes",
              "dropped_columns_display", "n_train", "n_test", "training_time", "artifact", "artifact_sha256",
              "artifact_size", "prediction_count", "last_prediction_at", "deployed_at", "created_at")
    readonly_fields = fields

    @admin.display(description="metrics")
    def metrics_display(self, version):
        return pretty_json(version.metrics)

    @admin.display(description="feature schema")
    def feature_schema_display(self, version):
        return pretty_json(version.feature_schema)

    @admin.display(description="dropped columns")
    def dropped_columns_display(self, version):
        return pretty_json(version.dropped_columns)

    @admin.action(description="Deploy selected versions (one per model name and project)")
    def deploy_versions(self, request, queryset):
        names = {}
        for version in queryset.order_by("project_id", "name", "-version"):
            names.setdefault((version.project_id, version.name), version)
        if len(names) < queryset.count():
            self.message_user(request, "Several versions of one name were selected: only the newest of each is deployed.",
                              messages.WARNING)
        for version in names.values():
            try:
                deployment = services.model_version_deploy(user=request.user, version=version)
            except (services.Conflict, PermissionDenied, Http404) as exc:
                self.message_user(request, f"{version.label}: {exc}", messages.ERROR)
                continue
            if deployment is None:
                self.message_user(request, f"{version.label} was already serving.", messages.INFO)
            else:
                self.message_user(request, f"{version.label} is now serving.", messages.SUCCESS)


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = ("model_version", "project", "action", "previous", "deployed_by", "deployed_at")
    list_filter = ("project", "action", "deployed_at")
    search_fields = ("model_version__name", "deployed_by__username")
    list_select_related = ("model_version", "previous", "deployed_by", "project")
    date_hierarchy = "deployed_at"
