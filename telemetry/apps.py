from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "telemetry"

    def ready(self):
        from mlops_dashboard.events.topics import register_topic

        from . import live

        # `telemetry.<source id>`: a source's live points, checked against the source's project.
        register_topic("telemetry", "telemetry.Source")
        # `telemetry_project.<project id>`: the project's Telemetry page watches it (telemetry/live.py);
        # a member of the project (the view permission on it) may.
        register_topic(live.WATCH_TOPIC, "mlops_dashboard.Project")
        live.connect()
