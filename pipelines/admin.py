"""The admin of the pipelines app. Creating, changing and deleting pipelines goes through the
services (checked steps, the cron schedule's PeriodicTask, events); runs are read-only records."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from . import services
from .models import Pipeline, PipelineRun, StepRun


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ["name", "dataset", "step_count", "schedule", "max_concurrent_runs", "updated_at"]
    search_fields = ["name", "description"]
    list_filter = ["created_at"]
    readonly_fields = ["periodic_task", "created_by", "created_at", "updated_at"]
    actions = ["run_selected"]

    @admin.display(description="steps")
    def step_count(self, obj):
        return len(obj.steps or [])

    def save_model(self, request, obj, form, change):
        fields = {f: getattr(obj, f) for f in services.EDITABLE}
        if change:
            services.pipeline_update(pipeline=obj, **fields)
        else:
            created = services.pipeline_create(**fields, created_by=request.user)
            obj.pk = created.pk

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        original_clean = form.clean

        def clean(self_form):
            data = original_clean(self_form)
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
            services.pipeline_delete(pipeline=obj, user=request.user)
        except services.Conflict as exc:
            messages.error(request, str(exc))

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)

    @admin.action(description="Run the selected pipelines")
    def run_selected(self, request, queryset):
        for pipeline in queryset:
            try:
                services.pipeline_run_start(pipeline=pipeline, user=request.user)
            except ValidationError as exc:
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
    list_display = ["id", "pipeline", "status", "progress", "trigger", "failed_step", "created_at", "run_duration"]
    list_filter = ["status", "trigger", "pipeline"]
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
                services.pipeline_run_cancel(run=run, user=request.user)
            except services.Conflict as exc:
                messages.warning(request, str(exc))

    @admin.action(description="Retry the selected runs")
    def retry_selected(self, request, queryset):
        for run in queryset:
            try:
                services.pipeline_run_retry(run=run, user=request.user)
            except (services.Conflict, ValidationError) as exc:
                messages.warning(request, str(exc))
