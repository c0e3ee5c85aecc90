from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "monitoring"

    def ready(self):
        from django.db.models.signals import post_delete

        from . import collector, signals

        post_delete.connect(signals.delete_scores_file, sender="monitoring.AnomalyDetection",
                            dispatch_uid="monitoring.delete_scores_file")
        signals.connect_celery_signals()
        # An ASGI server process (uvicorn, daphne, ...) runs a collector of its own.
        role = collector.server_process_role()
        if role:
            collector.start(role)
