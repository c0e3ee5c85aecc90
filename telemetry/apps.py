from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "telemetry"

    def ready(self):
        from mlops_dashboard.events.topics import register_topic

        # `telemetry.<source id>`: a source's live points, checked against the source's project.
        register_topic("telemetry", "telemetry.Source")
