from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "monitoring"

    def ready(self):
        from django.db.models.signals import post_delete

        from mlops_dashboard import jobs

        from . import collector, signals

        post_delete.connect(signals.delete_scores_file, sender="monitoring.AnomalyDetection",
                            dispatch_uid="monitoring.delete_scores_file")
        signals.connect_celery_signals()
        # On-demand anomaly detections are jobs with a reaper and a resender; no alert rule watches them.
        jobs.register(jobs.JobKind(
            key="anomaly_detection", model=self.get_model("AnomalyDetection"), label=str,
            step_text=lambda detection: detection.status, progress_fields=(),
            reaper="monitoring.services.detection.anomaly_detections_reap_stale",
            resender="monitoring.services.detection.anomaly_detections_resend_lost",
        ))
        jobs.job_failed.connect(signals.job_failed_alert, dispatch_uid="monitoring.job_failed_alert")
        # An ASGI server process (uvicorn, daphne, ...) runs a collector of its own.
        role = collector.server_process_role()
        if role:
            collector.start(role)
