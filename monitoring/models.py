"""Monitoring: metric samples, alert rules and alerts, anomalies, and on-demand
anomaly detections over datasets.

- MetricSample: one host's resource usage and the system's serving figures. `raw` samples every
  few seconds are kept for MONITORING_RAW_RETENTION_HOURS; `minute` rows (averages, written by the
  rollup) for MONITORING_MINUTE_RETENTION_DAYS.
- AlertRule → Alert: at most one unresolved alert per (rule, subject); a repeat of the condition
  updates that alert (occurrences, last_seen_at) instead of adding a row.
- Anomaly: a metric value (streaming) or a dataset's rows (IsolationForest) scored as anomalous.
- AnomalyDetection: an IsolationForest run over a ready dataset, a job (mlops_dashboard.jobs).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

from mlops_dashboard.jobs import JobFields
from mlops_dashboard.models import DESCRIPTION_MAX_LENGTH


class HealthLevel(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class MetricSample(models.Model):
    class Resolution(models.TextChoices):
        RAW = "raw", "Raw (every few seconds)"
        MINUTE = "minute", "Per-minute average"

    host = models.CharField(max_length=100)
    role = models.CharField(max_length=16, blank=True, help_text="The kind of process that took it: worker, asgi.")
    resolution = models.CharField(max_length=8, choices=Resolution.choices, default=Resolution.RAW)
    timestamp = models.DateTimeField(db_index=True)
    cpu_percent = models.FloatField()
    memory_percent = models.FloatField()
    disk_percent = models.FloatField()
    load_1 = models.FloatField(null=True, blank=True)
    net_sent_rate = models.FloatField(null=True, blank=True, help_text="Bytes sent per second.")
    net_recv_rate = models.FloatField(null=True, blank=True, help_text="Bytes received per second.")
    net_bytes_sent = models.BigIntegerField(null=True, blank=True, help_text="Host counter at the sample.")
    net_bytes_recv = models.BigIntegerField(null=True, blank=True, help_text="Host counter at the sample.")
    active_connections = models.IntegerField(default=0, help_text="Open sockets across all ASGI processes.")
    api_response_time_ms = models.FloatField(null=True, blank=True, help_text="p95 of the last minute's API requests.")
    ws_response_time_ms = models.FloatField(null=True, blank=True, help_text="p95 of the last minute's ping round trips.")
    predictions_per_minute = models.FloatField(default=0.0)
    model_accuracy = models.FloatField(null=True, blank=True)
    health = models.CharField(max_length=10, choices=HealthLevel.choices, default=HealthLevel.HEALTHY)
    sample_count = models.PositiveIntegerField(default=1, help_text="Raw samples averaged into this row.")

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [
            models.Index(fields=["resolution", "timestamp"], name="metric_res_time"),
            models.Index(fields=["host", "resolution", "timestamp"], name="metric_host_res_time"),
        ]
        constraints = [
            # The rollup writes each host's minute once, however often it runs.
            models.UniqueConstraint(fields=["host", "resolution", "timestamp"], condition=models.Q(resolution="minute"),
                                    name="metric_one_minute_row_per_host"),
        ]

    def __str__(self):
        return f"{self.host} {self.resolution} {self.timestamp:%Y-%m-%d %H:%M:%S}"


# The metrics a rule can watch (higher or lower than a threshold), with their units for display.
METRICS = {
    "cpu_percent": ("CPU", "%"),
    "memory_percent": ("Memory", "%"),
    "disk_percent": ("Disk", "%"),
    "load_1": ("Load (1 min)", ""),
    "net_sent_rate": ("Network sent", "B/s"),
    "net_recv_rate": ("Network received", "B/s"),
    "active_connections": ("Open sockets", ""),
    "api_response_time_ms": ("API p95", "ms"),
    "ws_response_time_ms": ("Socket round trip", "ms"),
    "predictions_per_minute": ("Predictions per minute", "/min"),
    "model_accuracy": ("Deployed model accuracy", ""),
}
# Metrics of the whole system rather than of one host: their alerts have the subject "system".
SYSTEM_METRICS = frozenset({"active_connections", "api_response_time_ms", "ws_response_time_ms"})
# Metrics of one project (its serving model): evaluated per project, subject "project.<id>", and
# their alerts belong to that project.
PROJECT_METRICS = frozenset({"predictions_per_minute", "model_accuracy"})


class Priority(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


PRIORITY_RANK = {Priority.LOW: 0, Priority.MEDIUM: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}


class AlertRule(models.Model):
    class Kind(models.TextChoices):
        METRIC = "metric", "Metric threshold"
        WORKER_MISSING = "worker_missing", "Worker missing"
        JOB_FAILED = "job_failed", "Processing job failed"
        TRAINING_FAILED = "training_failed", "Training job failed"
        PIPELINE_FAILED = "pipeline_failed", "Pipeline run failed"
        JOB_STALLED = "job_stalled", "Job stalled"
        ANOMALY = "anomaly", "Severe metric anomaly"
        CHANNEL_FAILING = "channel_failing", "Notification channel failing"
        TELEMETRY_ANOMALY = "telemetry_anomaly", "Telemetry anomaly"
        TELEMETRY_SILENT = "telemetry_silent", "Telemetry source silent"
        CUSTOM = "custom", "Raised by an app"

    class Comparison(models.TextChoices):
        GT = "gt", ">"
        GTE = "gte", "≥"
        LT = "lt", "<"
        LTE = "lte", "≤"

    slug = models.SlugField(max_length=64, unique=True, help_text="Stable identifier: alerts are deduplicated by it.")
    # None: global (system-wide), readable by every logged-in user and changed by staff only.
    project = models.ForeignKey("mlops_dashboard.Project", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.METRIC, db_index=True)
    metric = models.CharField(max_length=40, choices=[(k, v[0]) for k, v in METRICS.items()], blank=True)
    comparison = models.CharField(max_length=4, choices=Comparison.choices, default=Comparison.GT)
    threshold = models.FloatField(
        null=True, blank=True,
        help_text="Metric rules: the value compared. Job stalled: the multiple of the job's usual progress "
                  "interval. Anomaly: the lowest anomaly score that opens an alert.",
    )
    duration_seconds = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(7 * 86400)],
        help_text="How long the condition must hold before an alert opens (worker missing: how long unseen; "
                  "job stalled: the shortest stall).",
    )
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.MEDIUM)
    enabled = models.BooleanField(default=True, db_index=True)
    description = models.TextField(blank=True, max_length=DESCRIPTION_MAX_LENGTH)
    suggested_actions = models.JSONField(default=list, blank=True)
    # Where its alerts go: these channels; none named: every enabled channel with default_route.
    channels = models.ManyToManyField("NotificationChannel", blank=True, related_name="rules")
    repeat_interval_minutes = models.PositiveIntegerField(
        default=240, validators=[MaxValueValidator(7 * 24 * 60)],
        help_text="A still-open alert is notified again this often (minutes; 0: never again).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # The kinds a project's rule may have (the rest watch hosts and workers: global only).
    PROJECT_KINDS = ("metric", "job_failed", "training_failed", "pipeline_failed", "job_stalled", "custom",
                     "telemetry_anomaly", "telemetry_silent")

    class Meta:
        ordering = ["kind", "name", "id"]

    def __str__(self):
        return self.name

    @property
    def is_global(self) -> bool:
        return self.project_id is None

    def clean(self):
        errors = {}
        if self.kind == self.Kind.METRIC:
            if not self.metric:
                errors["metric"] = "A metric rule watches a metric."
            if self.threshold is None:
                errors["threshold"] = "A metric rule needs a threshold."
        elif self.kind == self.Kind.JOB_STALLED:
            if self.threshold is not None and self.threshold < 1:
                errors["threshold"] = "A stall is at least one usual progress interval (1 or more)."
        elif self.kind in (self.Kind.ANOMALY, self.Kind.TELEMETRY_ANOMALY):
            if self.threshold is not None and self.threshold <= 0:
                errors["threshold"] = "The anomaly score threshold is positive."
        if not isinstance(self.suggested_actions, list) or not all(isinstance(a, str) for a in self.suggested_actions):
            errors["suggested_actions"] = "A list of sentences."
        if self.project_id is not None:
            # A project's rules watch what belongs to it: its jobs and its serving figures; hosts,
            # workers and metric anomalies are global (staff's rules).
            if self.kind not in self.PROJECT_KINDS:
                errors["kind"] = (f"A project's rule watches its jobs, its serving model or its telemetry: one of "
                                  f"{', '.join(self.PROJECT_KINDS)}; {self.kind} rules are global (staff).")
            elif self.kind == self.Kind.METRIC and self.metric and self.metric not in PROJECT_METRICS:
                errors["metric"] = (f"A project's metric rule watches {' or '.join(sorted(PROJECT_METRICS))}; "
                                    "host and system metrics are global (staff).")
        if errors:
            raise ValidationError(errors)

    def holds(self, value: float | None) -> bool:
        """Whether a metric value meets this rule's condition."""
        if value is None or self.threshold is None:
            return False
        return {
            "gt": value > self.threshold,
            "gte": value >= self.threshold,
            "lt": value < self.threshold,
            "lte": value <= self.threshold,
        }[self.comparison]

    @property
    def condition(self) -> str:
        if self.kind != self.Kind.METRIC:
            return self.get_kind_display()
        label, unit = METRICS.get(self.metric, (self.metric, ""))
        held = f" for {self.duration_seconds} s" if self.duration_seconds else ""
        return f"{label} {self.get_comparison_display()} {self.threshold:g}{unit}{held}"


class Alert(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    # None: global (system-wide), readable by every logged-in user and changed by staff only.
    project = models.ForeignKey("mlops_dashboard.Project", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    # The rule's slug (or "kind:<kind>" for an app's alert without a rule): with `subject`, the dedupe key.
    rule_key = models.CharField(max_length=80)
    subject = models.CharField(max_length=200, help_text="What the alert is about: a host, worker:<name>, "
                                                         "training_job.<id>, ...")
    title = models.CharField(max_length=200)
    message = models.TextField(blank=True)
    alert_type = models.CharField(max_length=32, default="system")
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.MEDIUM, db_index=True)
    source = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    value = models.FloatField(null=True, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    suggested_actions = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_seen_at = models.DateTimeField(default=timezone.now)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    auto_resolved = models.BooleanField(default=False)
    resolution_note = models.CharField(max_length=500, blank=True)
    # The silence (or snooze, or maintenance window) that held when it opened or that was made for it:
    # recorded and shown, not notified while it holds.
    silence = models.ForeignKey("Silence", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    silenced_until = models.DateTimeField(null=True, blank=True, db_index=True)
    # When its last firing or repeat message went out (repeats count from it); None: never notified.
    last_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["rule_key", "subject"], condition=~models.Q(status="resolved"),
                                    name="alert_one_unresolved_per_rule_and_subject"),
        ]

    def __str__(self):
        return f"{self.title} ({self.status})"

    @property
    def is_resolved(self) -> bool:
        return self.status == self.Status.RESOLVED

    @property
    def is_silenced(self) -> bool:
        return self.silenced_until is not None and self.silenced_until > timezone.now()

    @property
    def actions(self) -> list[str]:
        """What a person can still do with it."""
        return {"open": ["acknowledge", "resolve"], "acknowledged": ["resolve"]}.get(self.status, [])


def scores_path(instance, filename) -> str:
    return f"anomaly/{uuid.uuid4().hex}.npy"


def validate_contamination(value: float) -> None:
    if not 0.0 < value <= 0.5:
        raise ValidationError("The contamination is the expected share of anomalies, in (0, 0.5].")


class AnomalyDetection(JobFields):
    """An IsolationForest over a ready dataset's numeric columns (a score per row, the top rows), or
    over a telemetry source's readings in a time range, aligned on its interval (each flagged reading
    an Anomaly). Exactly one of `dataset` and `source` is set."""

    project = models.ForeignKey("mlops_dashboard.Project", on_delete=models.PROTECT, related_name="+")
    dataset = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="anomaly_detections")
    # Telemetry: the source, its metrics (empty: all of them), the range scored and the baseline fitted.
    source = models.ForeignKey("telemetry.Source", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    source_name = models.CharField(max_length=100, blank=True)
    metrics = models.JSONField(default=list, blank=True, help_text="Telemetry: the metrics scored together.")
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    use_baseline = models.BooleanField(default=False, help_text="Telemetry: fitted on the baseline period, "
                                                                "else on the range itself.")
    baseline_start = models.DateTimeField(null=True, blank=True)
    baseline_end = models.DateTimeField(null=True, blank=True)
    rows_range = models.IntegerField(null=True, blank=True, help_text="Aligned rows in the range.")
    rows_baseline = models.IntegerField(null=True, blank=True, help_text="Aligned rows in the baseline.")
    dataset_name = models.CharField(max_length=200, blank=True)
    contamination = models.FloatField(default=0.05, validators=[validate_contamination])
    columns = models.JSONField(default=list, blank=True, help_text="Requested columns; empty: every numeric one.")
    columns_used = models.JSONField(default=list, blank=True)
    n_rows = models.IntegerField(null=True, blank=True)
    n_flagged = models.IntegerField(null=True, blank=True)
    share_flagged = models.FloatField(null=True, blank=True)
    max_score = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True, help_text="Scores above it are flagged.")
    # Every row's score (float32, row order), as a .npy file: compact at any size.
    scores_file = models.FileField(upload_to=scores_path, max_length=300, blank=True)
    top_rows = models.JSONField(default=list, blank=True, help_text="The most anomalous rows: row, score, values.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(
            condition=models.Q(dataset__isnull=False, source__isnull=True)
            | models.Q(dataset__isnull=True, source__isnull=False),
            name="monitoring_detection_one_target")]

    def __str__(self):
        return f"Anomaly detection #{self.pk} on {self.target_name} ({self.status})"

    @property
    def is_telemetry(self) -> bool:
        return self.source_id is not None

    @property
    def target_name(self) -> str:
        """The dataset's name or the telemetry source's, as it was when the detection started."""
        return self.source_name if self.is_telemetry else self.dataset_name


class Anomaly(models.Model):
    class Severity(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"
        CRITICAL = "critical", "Critical"

    class Source(models.TextChoices):
        METRICS = "metrics", "Metrics"
        DATASET = "dataset", "Dataset"
        TELEMETRY = "telemetry", "Telemetry"

    source = models.CharField(max_length=20, choices=Source.choices, db_index=True)
    entity = models.CharField(max_length=200, help_text="The host, the dataset's name, or the telemetry source's.")
    metric = models.CharField(max_length=64)
    value = models.FloatField(null=True, blank=True)
    score = models.FloatField()
    severity = models.CharField(max_length=10, choices=Severity.choices, db_index=True)
    baseline = models.FloatField(null=True, blank=True, help_text="The series' median when it was scored.")
    details = models.JSONField(default=dict, blank=True)
    detection = models.ForeignKey(AnomalyDetection, null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="anomalies")
    # None: global (system-wide), readable by every logged-in user and changed by staff only.
    project = models.ForeignKey("mlops_dashboard.Project", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="anomalies")
    detected_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Telemetry: the source whose reading this is, and the reading's own time (a range detection
    # finds readings of the past; `detected_at` stays when it was found).
    telemetry_source = models.ForeignKey("telemetry.Source", null=True, blank=True, on_delete=models.CASCADE,
                                         related_name="+")
    observed_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-detected_at", "-id"]
        verbose_name_plural = "anomalies"

    def __str__(self):
        return f"{self.entity} {self.metric} = {self.value} (score {self.score:.1f})"


SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


# --- notifications ---------------------------------------------------------------------------------


class NotificationChannel(models.Model):
    """Where alerts are sent: an apprise URL (email, Slack, Teams, Discord, ntfy, a JSON webhook, ...).

    The URL holds secrets: it is written, never read back (`url_masked` is what pages and the API
    show). A global channel (`project` None) is staff's; a project's channel its maintainers'.
    """

    project = models.ForeignKey("mlops_dashboard.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+")
    name = models.CharField(max_length=100)
    url = models.TextField(max_length=2000, help_text="An apprise URL; write-only.")
    service = models.CharField(max_length=64, blank=True, help_text="The kind of service, from the URL: E-Mail, Slack, ...")
    url_masked = models.CharField(max_length=500, blank=True, help_text="Scheme and host, secrets as ***.")
    min_priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.LOW)
    enabled = models.BooleanField(default=True)
    default_route = models.BooleanField(
        default=True, help_text="Receives the alerts of every rule that names no channel.")
    # Attempts that failed in a row (any delivery); a success sets it back to 0.
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=1000, blank=True, help_text="Without the URL's secrets.")
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project_id", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="channel_name_unique_per_project"),
            models.UniqueConstraint(fields=["name"], condition=models.Q(project__isnull=True),
                                    name="channel_name_unique_global"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_global(self) -> bool:
        return self.project_id is None

    @property
    def is_email(self) -> bool:
        return self.url.split("://", 1)[0].lower() in ("mailto", "mailtos")


class Notification(models.Model):
    """One message: the alerts of one rule that opened within NOTIFY_GROUP_SECONDS (firing), a
    still-open alert again (repeat), its resolution, a channel's test, or a personal notice. Its
    deliveries are its sends, one per channel."""

    class Kind(models.TextChoices):
        FIRING = "firing", "Firing"
        REPEAT = "repeat", "Repeat"
        RESOLVED = "resolved", "Resolved"
        TEST = "test", "Test"
        PERSONAL = "personal", "Personal"

    class Status(models.TextChoices):
        PENDING = "pending", "Gathering alerts"
        SENDING = "sending", "Sending"
        DONE = "done", "Sent"
        SILENCED = "silenced", "Silenced"
        SKIPPED = "skipped", "No channel"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    # Firing alerts of one rule gather under one key while pending.
    group_key = models.CharField(max_length=200, blank=True)
    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    project = models.ForeignKey("mlops_dashboard.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+")
    alerts = models.ManyToManyField(Alert, blank=True, related_name="notifications")
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.MEDIUM)
    title = models.CharField(max_length=200, blank=True)
    body = models.TextField(blank=True)
    send_after = models.DateTimeField(default=timezone.now, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["group_key"], condition=models.Q(status="pending") & ~models.Q(group_key=""),
                                    name="notification_one_pending_group"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.title or self.group_key}"


class Delivery(models.Model):
    """One notification sent to one channel, with its retries."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(NotificationChannel, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="deliveries")
    channel_name = models.CharField(max_length=100)
    # An email channel sending to one person (the personal route): their address; blank: the channel's own.
    recipient = models.EmailField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=1000, blank=True, help_text="The last attempt's, without secrets.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"

    def __str__(self):
        return f"{self.channel_name}: {self.status} ({self.attempts} attempts)"

    @property
    def project_id(self):
        return self.notification.project_id


class Silence(models.Model):
    """While it holds (starts_at ≤ now < ends_at), alerts matching every matcher are recorded and
    shown as silenced, and not notified. Matchers: `rule` (an alert's `rule`), `priority` (that
    priority or below), `subject` (a shell-style glob), `project` (an id). A snooze is a silence
    made for one alert; a maintenance window makes none (it holds by its own schedule)."""

    class Kind(models.TextChoices):
        SILENCE = "silence", "Silence"
        SNOOZE = "snooze", "Snooze"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SILENCE)
    matchers = models.JSONField(default=dict)
    # Whose it is: a project's (its maintainers'), or None: staff's.
    project = models.ForeignKey("mlops_dashboard.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+")
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField(db_index=True)
    comment = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-id"]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk} until {self.ends_at:%Y-%m-%d %H:%M}"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.starts_at <= now < self.ends_at

    @property
    def state(self) -> str:
        now = timezone.now()
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"


class MaintenanceWindow(models.Model):
    """A recurring silence: from each time its cron fires, for duration_minutes."""

    matchers = models.JSONField(default=dict)
    project = models.ForeignKey("mlops_dashboard.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+")
    cron = models.CharField(max_length=100, help_text="minute hour day-of-month month day-of-week (UTC)")
    duration_minutes = models.PositiveIntegerField(validators=[MaxValueValidator(7 * 24 * 60)])
    comment = models.CharField(max_length=500, blank=True)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cron", "id"]

    def __str__(self):
        return f"Maintenance {self.cron} for {self.duration_minutes} min"


class NotificationPreference(models.Model):
    """A user's personal routes: "notify me when my jobs fail", by email through a global email channel."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    my_jobs_failed = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Notifications of {self.user}"
