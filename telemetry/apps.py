from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "telemetry"

    def ready(self):
        from mlops_dashboard.events.topics import register_topic

        # `telemetry.<source id>`: a source's live points, checked against the source's project.
        register_topic("telemetry", "telemetry.Source")
        self._register_retention()

    @staticmethod
    def _register_retention():
        from mlops_dashboard.retention import StorageKind, register

        prune = "telemetry.partitions"
        register(StorageKind(key="telemetry_points", label="Telemetry points (raw)", models=("telemetry.Point",),
                             setting="TELEMETRY_RAW_RETENTION_DAYS", pruner=f"{prune}.points_prune"))
        register(StorageKind(key="telemetry_minutes", label="Telemetry per minute",
                             models=("telemetry.MinuteRollup",), setting="TELEMETRY_MINUTE_RETENTION_DAYS",
                             pruner=f"{prune}.minute_rollups_prune"))
        register(StorageKind(key="telemetry_hours", label="Telemetry per hour", models=("telemetry.HourRollup",),
                             setting="TELEMETRY_HOUR_RETENTION_DAYS", pruner=f"{prune}.hour_rollups_prune"))
