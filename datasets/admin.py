from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError

from . import services
from .models import Dataset, ProcessingJob


class ProcessingJobInline(admin.TabularInline):
    model = ProcessingJob
    fields = ["operation", "status", "progress", "current_step", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "status", "row_count", "column_count", "quality_score", "file_size", "target_column",
                    "parent", "created_by", "created_at"]
    list_filter = ["project", "status", "created_at", "encoding", "delimiter"]
    search_fields = ["name", "description", "original_filename", "target_column"]
    readonly_fields = ["project", "status", "file", "original_filename", "file_size", "encoding", "delimiter", "row_count",
                       "column_count", "column_names", "errors", "warnings", "profile", "quality", "quality_score",
                       "preview", "validation_time", "profiling_time", "parent", "source_job", "created_by",
                       "created_at", "updated_at", "heartbeat_at"]
    fields = ["name", "description", "target_column", *readonly_fields]
    inlines = [ProcessingJobInline]
    actions = ["reprofile"]
    list_select_related = ["project", "parent", "created_by"]

    def has_add_permission(self, request):
        return False  # uploads go through the Datasets page or the API, which validate them

    @admin.action(description="Re-profile selected datasets")
    def reprofile(self, request, queryset):
        done = 0
        for dataset in queryset:
            try:
                services.dataset_reprofile(user=request.user, dataset=dataset)
                done += 1
            except (ValidationError, PermissionDenied) as exc:
                self.message_user(request, f"{dataset}: {' '.join(getattr(exc, 'messages', [str(exc)]))}",
                                  messages.WARNING)
        self.message_user(request, f"Re-profiling {done} dataset(s).")

    def save_model(self, request, obj, form, change):
        services.dataset_update(user=request.user, dataset=obj, name=obj.name, description=obj.description,
                                target_column=obj.target_column)

    def delete_model(self, request, obj):
        services.dataset_delete(user=request.user, dataset=obj)

    def delete_queryset(self, request, queryset):
        for dataset in queryset:
            services.dataset_delete(user=request.user, dataset=dataset)


@admin.register(ProcessingJob)
class ProcessingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "dataset", "operation", "status", "progress", "current_step", "created_at", "finished_at"]
    list_filter = ["project", "status", "operation", "created_at"]
    search_fields = ["dataset__name", "current_step", "error"]
    readonly_fields = [f.name for f in ProcessingJob._meta.fields]
    actions = ["cancel"]
    list_select_related = ["project", "dataset"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel selected jobs")
    def cancel(self, request, queryset):
        for job in queryset:
            try:
                services.processing_job_cancel(user=request.user, job=job)
            except (ValidationError, PermissionDenied) as exc:
                self.message_user(request, f"Job {job.pk}: {' '.join(getattr(exc, 'messages', [str(exc)]))}",
                                  messages.WARNING)
