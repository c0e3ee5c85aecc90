from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "datasets"

    def ready(self):
        from django.db.models.signals import post_delete

        from mlops_dashboard import jobs, request_bodies, retention
        from mlops_dashboard.events.topics import register_topic

        from . import api, selectors, signals

        # A forbidden upload is refused before its body is read (datasets/upload.py).
        request_bodies.register_body_check("dataset-list", api.upload_precheck)

        for prefix, model in (("dataset", "datasets.Dataset"), ("processing_job", "datasets.ProcessingJob")):
            register_topic(prefix, model)  # socket subscriptions check view permission on it

        post_delete.connect(signals.delete_dataset_file, sender=self.get_model("Dataset"),
                            dispatch_uid="datasets.delete_dataset_file")

        jobs.register(jobs.JobKind(
            key="processing_job", model=self.get_model("ProcessingJob"), label=selectors.processing_job_label,
            step_text=selectors.processing_job_step_text, progress_fields=("progress", "current_step"),
            failed_rule="job_failed", select_related=("dataset",), row=selectors.processing_job_row,
            reaper="datasets.services.datasets_reap_stale",
            resender="datasets.services.datasets_resend_lost",
        ))
        retention.register(retention.StorageKind(
            key="datasets", label="Datasets", models=("datasets.Dataset",),
            directory="datasets", referenced="datasets.services.dataset_files_referenced",
        ))
        retention.register(retention.StorageKind(
            key="processing_jobs", label="Processing jobs", models=("datasets.ProcessingJob",),
            setting="RETENTION_JOBS_DAYS", pruner="datasets.services.processing_jobs_prune",
        ))
