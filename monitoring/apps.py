from django.apps import AppConfig
from django.core import checks


@checks.register()
def anomaly_metrics_setting(app_configs=None, **kwargs):
    """MONITORING_ANOMALY_METRICS is read at every sample: say at startup when it is invalid."""
    from django.conf import settings

    from . import anomaly

    try:
        anomaly.specs(settings.MONITORING_ANOMALY_METRICS)
    except ValueError as error:
        return [checks.Error(str(error), id="monitoring.E001")]
    return []


@checks.register()
def telemetry_anomaly_setting(app_configs=None, **kwargs):
    """TELEMETRY_ANOMALY_DEFAULTS is read for every scored batch: say at startup when it is invalid."""
    from django.conf import settings

    from . import telemetry_detector

    try:
        telemetry_detector.spec_from(settings.TELEMETRY_ANOMALY_DEFAULTS, where="TELEMETRY_ANOMALY_DEFAULTS")
    except (TypeError, ValueError) as error:
        return [checks.Error(str(error), id="monitoring.E002")]
    return []


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
        # On-demand anomaly detections are jobs with a reaper and a resender; a failed one is a failed
        # processing job (its alert, and its creator's email when they asked).
        jobs.register(jobs.JobKind(
            key="anomaly_detection", model=self.get_model("AnomalyDetection"),
            label=lambda detection: f"Anomaly detection #{detection.pk} ({detection.target_name})",
            step_text=lambda detection: detection.status, progress_fields=(), failed_rule="job_failed",
            reaper="monitoring.services.detection.anomaly_detections_reap_stale",
            resender="monitoring.services.detection.anomaly_detections_resend_lost",
        ))
        jobs.job_failed.connect(signals.job_failed_alert, dispatch_uid="monitoring.job_failed_alert")
        # Telemetry's new readings are scored by a task (streaming anomalies; telemetry never imports us).
        from telemetry import signals as telemetry_signals

        from .services import telemetry_anomalies

        telemetry_signals.points_ingested.connect(telemetry_anomalies.points_ingested_enqueue,
                                                  dispatch_uid="monitoring.telemetry_points_score")
        from celery.signals import worker_process_shutdown, worker_shutdown

        for signal in (worker_process_shutdown, worker_shutdown):
            signal.connect(telemetry_anomalies.score_queue_flush, weak=False,
                           dispatch_uid=f"monitoring.score_queue_flush.{signal.name}")
        self._register_retention()
        # An ASGI server process (uvicorn, daphne, ...) runs a collector of its own.
        role = collector.server_process_role()
        if role:
            collector.start(role)

    @staticmethod
    def _register_retention():
        from mlops_dashboard.retention import StorageKind, register

        rollup = "monitoring.services.rollup"
        register(StorageKind(key="metric_samples_raw", label="Host metrics (raw and per-minute)",
                             models=("monitoring.MetricSample",), setting="MONITORING_RAW_RETENTION_HOURS",
                             unit="hours", pruner=f"{rollup}.raw_samples_prune"))
        register(StorageKind(key="metric_samples_minute", label="Host metrics per minute (same table)",
                             setting="MONITORING_MINUTE_RETENTION_DAYS", pruner=f"{rollup}.minute_samples_prune"))
        register(StorageKind(key="alerts", label="Alerts (resolved)", models=("monitoring.Alert",),
                             setting="RETENTION_ALERTS_DAYS", pruner=f"{rollup}.alerts_prune"))
        register(StorageKind(key="anomalies", label="Anomalies and detections",
                             models=("monitoring.Anomaly", "monitoring.AnomalyDetection"),
                             setting="RETENTION_ANOMALIES_DAYS", pruner=f"{rollup}.anomalies_prune",
                             directory="anomaly", referenced=f"{rollup}.scores_files_referenced"))
