from django.apps import AppConfig


class TrainingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "training"
    verbose_name = "Training and models"

    def ready(self):
        from mlops_dashboard import fast_routes, jobs, request_bodies, retention
        from mlops_dashboard.events.topics import register_topic

        from . import api, api_fast, selectors
        from .services import serving

        for prefix, model in (("training_job", "training.TrainingJob"), ("model", "training.ModelVersion")):
            register_topic(prefix, model)  # socket subscriptions check view permission on it

        for url_name in api.PREDICT_URL_NAMES:  # batches of rows: more than the default body limit
            request_bodies.register_body_limit(url_name, api.MAX_PREDICT_BODY, api.PREDICT_TOO_LARGE)
            # Programs call these many times a second: served from the API's own threads (with a token),
            # the plain case answered on the event loop (api_fast.py).
            fast_routes.register_fast_route(url_name, methods=("POST",), on_loop=api_fast.predict_on_loop)
        serving.connect_signals()  # cached versions follow every deploy, rollback and change within a second

        jobs.register(jobs.JobKind(
            key="training_job", model=self.get_model("TrainingJob"), label=selectors.training_job_label,
            step_text=selectors.training_job_step_text, progress_fields=("progress", "stage", "current_epoch", "message"),
            failed_rule="training_failed", defer=("history",), row=selectors.training_job_row,
            failure_metadata=selectors.training_job_failure_metadata,
            reaper="training.services.jobs.training_jobs_reap_stale",
            resender="training.services.jobs.training_jobs_resend_lost",
        ))
        retention.register(retention.StorageKind(
            key="training_jobs", label="Training jobs", models=("training.TrainingJob",),
            setting="RETENTION_JOBS_DAYS", pruner="training.services.retention.training_jobs_prune",
        ))
        retention.register(retention.StorageKind(
            key="model_versions", label="Model versions",
            models=("training.ModelVersion", "training.Deployment"),
            directory="models", referenced="training.services.retention.artifacts_referenced",
        ))
