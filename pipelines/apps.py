from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "pipelines"

    def ready(self):
        from mlops_dashboard import jobs, retention
        from mlops_dashboard.events.topics import register_topic

        from . import selectors

        for prefix, model in (("pipeline", "pipelines.Pipeline"), ("pipeline_run", "pipelines.PipelineRun")):
            register_topic(prefix, model)  # socket subscriptions check view permission on it

        jobs.register(jobs.JobKind(
            key="pipeline_run", model=self.get_model("PipelineRun"), label=selectors.pipeline_run_label,
            step_text=selectors.pipeline_run_step_text, progress_fields=("progress", "current_step", "message"),
            failed_rule="pipeline_failed", select_related=("pipeline",), row=selectors.pipeline_run_row,
            failure_metadata=selectors.pipeline_run_failure_metadata,
            reaper="pipelines.services.pipeline_runs_reap_stale",
        ))
        retention.register(retention.StorageKind(
            key="pipeline_runs", label="Pipeline runs and steps", models=("pipelines.PipelineRun", "pipelines.StepRun"),
            setting="RETENTION_PIPELINE_RUNS_DAYS", pruner="pipelines.retention.pipeline_runs_prune",
        ))
