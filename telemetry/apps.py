from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "telemetry"

    def ready(self):
        from mlops_dashboard import fast_routes, jobs, request_bodies, retention
        from mlops_dashboard.events.topics import register_topic

        from . import api, imports, live

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

        # Programs call these many times a second: served from the API's own threads (with a token).
        fast_routes.register_fast_route("api-telemetry-ingest", methods=("POST",))
        fast_routes.register_fast_route("api-telemetry-series", methods=("GET",))

        # CSV imports stream like dataset uploads (datasets/upload.py): refused before the body when forbidden.
        request_bodies.register_body_check("api-telemetry-import", api.import_precheck)
        # A dead worker's import ends failed (the reaper); a lost message is sent again.
        jobs.register(jobs.JobKind(
            key="telemetry_import", model=self.get_model("TelemetryImport"), label=imports.import_label,
            step_text=imports.import_step_text, progress_fields=("progress", "rows", "points"),
            reaper="telemetry.imports.telemetry_imports_reap_stale",
            resender="telemetry.imports.telemetry_imports_resend_lost",
        ))
        retention.register(retention.StorageKind(
            key="telemetry_imports", label="Telemetry imports", models=("telemetry.TelemetryImport",),
            setting="RETENTION_JOBS_DAYS", pruner="telemetry.imports.telemetry_imports_prune",
            directory="telemetry_imports", referenced="telemetry.imports.telemetry_import_files_referenced",
        ))
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
