"""The alert rules every installation starts with (installed by a data migration, and by
`alert_rules_install_defaults` for a database that lost them). Plain data: no model imports, so the
migration can apply it to its historical model."""

DEFAULT_RULES = [
    {
        "slug": "cpu-high",
        "name": "CPU above 90%",
        "kind": "metric",
        "metric": "cpu_percent",
        "comparison": "gt",
        "threshold": 90.0,
        "duration_seconds": 60,
        "priority": "high",
        "description": "A host's CPU has been above 90% for a minute.",
        "suggested_actions": [
            "Look at the System page for the tasks the host's workers are running.",
            "Add a worker machine, or lower the worker concurrency on this host.",
        ],
    },
    {
        "slug": "memory-high",
        "name": "Memory above 85%",
        "kind": "metric",
        "metric": "memory_percent",
        "comparison": "gt",
        "threshold": 85.0,
        "duration_seconds": 60,
        "priority": "high",
        "description": "A host's memory use has been above 85% for a minute.",
        "suggested_actions": [
            "Train on fewer rows or lighter algorithms; large datasets are read into memory.",
            "Give the host more memory, or run fewer worker processes on it.",
        ],
    },
    {
        "slug": "disk-high",
        "name": "Disk above 90%",
        "kind": "metric",
        "metric": "disk_percent",
        "comparison": "gt",
        "threshold": 90.0,
        "duration_seconds": 60,
        "priority": "critical",
        "description": "A host's disk is more than 90% full.",
        "suggested_actions": [
            "Delete datasets and model versions that are no longer needed.",
            "Grow the volume that holds MEDIA_ROOT and the database.",
        ],
    },
    {
        "slug": "worker-missing",
        "name": "Worker missing",
        "kind": "worker_missing",
        "duration_seconds": 30,
        "priority": "critical",
        "description": "A Celery worker that was answering stopped answering without shutting down.",
        "suggested_actions": [
            "Check the worker's machine and its log; restart the worker.",
            "Jobs it was running are failed by the reaper and can be started again.",
        ],
    },
    {
        "slug": "processing-job-failed",
        "name": "Processing job failed",
        "kind": "job_failed",
        "priority": "medium",
        "description": "A dataset processing job (clean, split, scale) failed.",
        "suggested_actions": ["Read the job's error on its dataset's page, fix the options and run it again."],
    },
    {
        "slug": "training-failed",
        "name": "Training job failed",
        "kind": "training_failed",
        "priority": "high",
        "description": "A training job failed (cancelled jobs do not alert).",
        "suggested_actions": ["Read the job's error and suggestions on its page, then start it again."],
    },
    {
        "slug": "pipeline-failed",
        "name": "Pipeline run failed",
        "kind": "pipeline_failed",
        "priority": "high",
        "description": "A pipeline run failed at one of its steps.",
        "suggested_actions": ["Open the run to see the failed step and its error, then run the pipeline again."],
    },
    {
        "slug": "job-stalled",
        "name": "Job stalled",
        "kind": "job_stalled",
        "threshold": 3.0,
        "duration_seconds": 60,
        "priority": "high",
        "description": "A running job has reported no progress for three times its usual interval.",
        "suggested_actions": [
            "Open the job: the last step it reported is where it is stuck.",
            "Cancel it and start it again; if it stalls at the same step, check the data or the worker's log.",
        ],
    },
    {
        "slug": "severe-anomaly",
        "name": "Severe metric anomaly",
        "kind": "anomaly",
        "priority": "medium",
        "description": "A host metric, or a project's prediction traffic, moved far from its recent range the bad "
                       "way (up for CPU, disk, latency or network; down for predictions that were flowing), by "
                       "more than its minimum change, for most of its last samples. Opens at low or medium "
                       "priority (a priority set here other than medium applies instead); a threshold here is "
                       "the lowest robust score that opens an alert.",
        "suggested_actions": ["Compare the series on the Monitoring page with recent deploys and jobs."],
    },
]


DEFAULT_RULES.append({
    "slug": "notification-channel-failing",
    "name": "Notification channel failing",
    "kind": "channel_failing",
    "priority": "high",
    "description": "A notification channel failed NOTIFY_CHANNEL_FAILURES_ALERT attempts in a row; the alert "
                   "goes out on the other channels and clears at the channel's next successful send.",
    "suggested_actions": [
        "Open Monitoring → Notification channels: the channel's row shows its last error.",
        "Check the channel's URL and the service it points at, then send a test.",
    ],
})


# Issue 16: telemetry. Each belongs to the source's project (a project's own rule of the kind takes
# the place of these global ones for its sources).
DEFAULT_RULES.append({
    "slug": "telemetry-anomaly",
    "name": "Telemetry anomaly",
    "kind": "telemetry_anomaly",
    "priority": "medium",
    "description": "A telemetry series moved far from its recent range (robust score, minimum change, most of its "
                   "last readings) or its sensor is stuck repeating one reading. One alert per fault; it clears "
                   "when the series is back in range for a few readings. Per-series settings: the metric's "
                   "`anomaly` (enabled, direction, min_change, agree, of, ...). A threshold here is the lowest "
                   "robust score that opens an alert.",
    "suggested_actions": [
        "Open the source's page: the anomaly is marked on the metric's chart.",
        "A stuck sensor: check the device or the program that reads it.",
    ],
})
DEFAULT_RULES.append({
    "slug": "telemetry-silent",
    "name": "Telemetry source silent",
    "kind": "telemetry_silent",
    "priority": "medium",
    "description": "A telemetry source sent nothing for TELEMETRY_SILENT_FACTOR times its expected interval; the "
                   "alert clears with its next reading.",
    "suggested_actions": [
        "Check the machine or program that sends the readings, and its token.",
        "A source that reports less often: raise its expected interval on the Telemetry page.",
    ],
})
TELEMETRY_RULES = ("telemetry-anomaly", "telemetry-silent")


def install(model) -> int:
    """Create the default rules that are missing (by slug); never touches edited ones. Returns the count."""
    created = 0
    for spec in DEFAULT_RULES:
        _, was_created = model.objects.get_or_create(slug=spec["slug"], defaults={k: v for k, v in spec.items() if k != "slug"})
        created += int(was_created)
    return created
