from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "datasets"

    def ready(self):
        from mlops_dashboard import jobs

        from . import selectors

        jobs.register(jobs.JobKind(
            key="processing_job", model=self.get_model("ProcessingJob"), label=selectors.processing_job_label,
            step_text=selectors.processing_job_step_text, progress_fields=("progress", "current_step"),
            failed_rule="job_failed", select_related=("dataset",), row=selectors.processing_job_row,
            reaper="datasets.services.datasets_reap_stale",
            resender="datasets.services.datasets_resend_lost",
        ))
