"""The admin of the pipelines app. Creating, changing and deleting pipelines goes through the
services (checked steps, the cron schedule's PeriodicTask, events); runs are read-only records."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from . import services
from .models import Pipeline, PipelineRun, StepRun


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "dataset", "step_count", "schedule", "max_concurrent_runs", "updated_at"]
    search_fields = ["name", "description"]
    list_filter = ["project", "created_at"]
    readonly_fields = ["periodic_task", "created_by", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        # A pipeline stays in the project it was made in.
        return [*self.readonly_fields, "project"] if obj is not None else self.readonly_fields
    actions = ["run_selected"]

    @admin.display(description="steps")
    def step_count(self, obj):
        return len(obj.steps or [])

    def save_model(self, request, obj, form, change):
        fields = {f: getattr(obj, f) for f in services.EDITABLE}
        if change:
            services.pipeline_update(user=request.user, pipeline=obj, **fields)
        else:
            created = services.pipeline_create(user=request.user, project=obj.project_id, **fields)
            obj.pk = created.pk

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        original_clean = form.clean

        def clean(self_form):
            data = original_clean(self_form)
            project = data.get("project") or getattr(obj, "project", None)
            dataset = data.get("dataset")
            if project is not None and dataset is not None and dataset.project_id != project.pk:
                self_form.add_error("dataset", f"Dataset {dataset.pk} is in another project; choose one of "
                                               f"“{project.name}”.")
            try:
                data["steps"] = services.pipeline_steps_clean(steps=data.get("steps"), dataset=data.get("dataset"))
            except ValidationError as exc:
                self_form.add_error("steps", exc.message_dict["steps"])
            if "schedule" in data:
                try:
                    data["schedule"] = services.validate_schedule(data["schedule"])
                except ValidationError as exc:
                    self_form.add_error("schedule", exc.message_dict["schedule"])
            return data

        form.clean = clean
        return form

    def delete_model(self, request, obj):
        try:
            services.pipeline_delete(user=request.user, pipeline=obj)
        except (services.Conflict, PermissionDenied, Http404) as exc:
            messages.error(request, str(exc))

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)

    @admin.action(description="Run the selected pipelines")
    def run_selected(self, request, queryset):
        for pipeline in queryset:
            try:
                services.pipeline_run_start(user=request.user, pipeline=pipeline)
            except (ValidationError, PermissionDenied, Http404) as exc:
                messages.error(request, f"{pipeline.name}: {'; '.join(exc.messages)}")


class StepRunInline(admin.TabularInline):
    model = StepRun
    extra = 0
    can_delete = False
    fields = ["index", "kind", "status", "started_at", "finished_at", "output_dataset", "model_version",
              "processing_job", "training_job", "metrics", "reused", "error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = ["id", "pipeline", "project", "status", "progress", "trigger", "failed_step", "created_at",
                    "run_duration"]
    list_filter = ["project", "status", "trigger", "pipeline"]
    search_fields = ["pipeline__name", "error", "message"]
    inlines = [StepRunInline]
    actions = ["cancel_selected", "retry_selected"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    @admin.display(description="duration (s)")
    def run_duration(self, obj):
        return obj.duration

    @admin.action(description="Cancel the selected runs")
    def cancel_selected(self, request, queryset):
        for run in queryset:
            try:
                services.pipeline_run_cancel(user=request.user, run=run)
            except (services.Conflict, PermissionDenied, Http404) as exc:
                messages.warning(request, str(exc))

    @admin.action(description="Retry the selected runs")
    def retry_selected(self, request, queryset):
        for run in queryset:
            try:
                services.pipeline_run_retry(user=request.user, run=run)
            except (services.Conflict, ValidationError, PermissionDenied, Http404) as exc:
                messages.warning(request, str(exc))
