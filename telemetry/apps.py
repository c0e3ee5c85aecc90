from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "telemetry"

    def ready(self):
        from mlops_dashboard import request_bodies
        from mlops_dashboard.events.topics import register_topic

        from . import api, live

        # `telemetry.<source id>`: a source's live points, checked against the source's project.
        register_topic("telemetry", "telemetry.Source")
        # `telemetry_project.<project id>`: the project's Telemetry page watches it (telemetry/live.py);
        # a member of the project (the view permission on it) may.
        register_topic(live.WATCH_TOPIC, "mlops_dashboard.Project")
        live.connect()

        # TELEMETRY_MAX_POINTS points of long names are more than DATA_UPLOAD_MAX_MEMORY_SIZE.
        request_bodies.register_body_limit(
            "api-telemetry-ingest", api.ingest_body_limit(),
            f"The request body is larger than {api.ingest_body_limit() / 2**20:.1f} MiB (about "
            f"{api.BYTES_PER_POINT} bytes for each of TELEMETRY_MAX_POINTS points); send smaller batches.")
