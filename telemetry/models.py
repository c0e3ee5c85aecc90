"""Telemetry: series of readings from any source (a machine, a service, a model).

A `Source` (press-07, gpu-node-2, churn-model) belongs to one project and reports `Metric`s
(temperature, vibration, accuracy). A metric of a source is one series; its readings are `Point`s
keyed by (series, timestamp), the last value written for a timestamp winning. `MinuteRollup` and
`HourRollup` hold min, max, sum and count per series per bucket, so charts over long ranges read a
few thousand rows whatever the raw rate.

On PostgreSQL the point and rollup tables are partitioned by time (see the migrations); Django sees
ordinary tables with a composite primary key.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from mlops_dashboard.jobs import JobFields

NAME_PATTERN = r"[A-Za-z0-9._-]{1,100}"
NAME_HELP = "Letters, digits, dot, underscore and dash; at most 100 characters."
validate_name = RegexValidator(rf"^{NAME_PATTERN}\Z", NAME_HELP)
# One reading a second up to one a day.
validate_interval = [MinValueValidator(1), MaxValueValidator(86_400)]


class Status(models.TextChoices):
    LIVE = "live", "Live"
    SILENT = "silent", "Silent"


class Source(models.Model):
    """Something that reports readings. Created on first sight by the ingest API, then described in
    the registry (pages and admin)."""

    project = models.ForeignKey("mlops_dashboard.Project", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=100, validators=[validate_name])
    description = models.TextField(blank=True, max_length=2000)
    labels = models.JSONField(default=dict, blank=True, help_text="Free key/value labels: line, site, model.")
    expected_interval_seconds = models.PositiveIntegerField(
        default=60, validators=validate_interval,
        help_text="How often it reports. Silent after 3× this without a reading.")
    is_demo = models.BooleanField(default=False, help_text="Simulated by `make run`'s demo plant.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(null=True, blank=True, db_index=True,
                                     help_text="When the last reading arrived (server time).")
    # Kept by the silence check: when it last went silent (None while live), for the alert's transitions.
    silent_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="telemetry_source_unique_name")]

    def __str__(self):
        return self.name

    def silent_after_seconds(self) -> int:
        return self.expected_interval_seconds * settings.TELEMETRY_SILENT_FACTOR

    def status_at(self, now=None) -> str:
        now = now or timezone.now()
        if self.last_seen is None:
            return Status.SILENT
        age = (now - self.last_seen).total_seconds()
        return Status.SILENT if age > self.silent_after_seconds() else Status.LIVE


class Metric(models.Model):
    """One series: a metric of a source."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="metrics")
    name = models.CharField(max_length=100, validators=[validate_name])
    unit = models.CharField(max_length=32, blank=True)
    description = models.TextField(blank=True, max_length=2000)
    labels = models.JSONField(default=dict, blank=True)
    expected_interval_seconds = models.PositiveIntegerField(
        null=True, blank=True, validators=validate_interval, help_text="Empty: the source's.")
    # Streaming anomaly detection of this series: overrides of the telemetry default spec (fields of
    # monitoring/telemetry_detector.py's SeriesSpec: enabled, direction, min_change, agree, of,
    # window, stuck, ...); empty: the default (TELEMETRY_ANOMALY_DEFAULTS).
    anomaly = models.JSONField(default=dict, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_timestamp = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["source_id", "name", "id"]
        constraints = [models.UniqueConstraint(fields=["source", "name"], name="telemetry_metric_unique_name")]

    def __str__(self):
        return f"{self.source.name}/{self.name}" if self.source_id else self.name

    @property
    def interval_seconds(self) -> int:
        return self.expected_interval_seconds or self.source.expected_interval_seconds


class Point(models.Model):
    """One reading. No surrogate id: (series, timestamp) is the key, so a second write of a timestamp
    replaces the first."""

    pk = models.CompositePrimaryKey("series_id", "timestamp")
    # No database constraint: on PostgreSQL the table is partitioned and a series' points go with
    # their series through the services (a cascade would load every row into Python).
    series = models.ForeignKey(Metric, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    timestamp = models.DateTimeField()
    value = models.FloatField()

    class Meta:
        ordering = ["series_id", "timestamp"]

    def __str__(self):
        return f"{self.series_id}@{self.timestamp.isoformat()}={self.value}"


class RollupFields(models.Model):
    series = models.ForeignKey(Metric, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    bucket = models.DateTimeField(help_text="The bucket's start (UTC).")
    count = models.PositiveIntegerField()
    sum = models.FloatField()
    min = models.FloatField()
    max = models.FloatField()

    class Meta:
        abstract = True
        ordering = ["series_id", "bucket"]

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def __str__(self):
        return f"{self.series_id}@{self.bucket.isoformat()} n={self.count}"


class MinuteRollup(RollupFields):
    pk = models.CompositePrimaryKey("series_id", "bucket")


class HourRollup(RollupFields):
    pk = models.CompositePrimaryKey("series_id", "bucket")


def import_upload_path(instance, filename) -> str:
    # Never a path from the client: a generated name under telemetry_imports/.
    import uuid

    return f"telemetry_imports/{uuid.uuid4().hex}.csv"


class TelemetryImport(JobFields):
    """A CSV of history sent to POST /api/telemetry/import/: streamed to disk, then read by a worker
    in chunks. All or nothing: a bad line fails the import, naming it, and nothing is stored. The
    file is deleted once the import ends (succeeded or failed)."""

    project = models.ForeignKey("mlops_dashboard.Project", on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    file = models.FileField(upload_to=import_upload_path, max_length=300, blank=True)
    original_filename = models.CharField(max_length=255, blank=True)
    file_size = models.BigIntegerField(default=0)
    source = models.CharField(max_length=100, blank=True, validators=[validate_name],
                              help_text="The source of a wide CSV without a source column.")
    format = models.CharField(max_length=8, blank=True, help_text="long or wide, once the header is read.")
    rows = models.PositiveBigIntegerField(default=0, help_text="Data lines read.")
    points = models.PositiveBigIntegerField(default=0, help_text="Points stored (after the last value won).")
    first_timestamp = models.DateTimeField(null=True, blank=True)
    last_timestamp = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "telemetry import"

    def __str__(self):
        return f"Telemetry import #{self.pk} ({self.original_filename or 'upload'})"


class RollupPending(models.Model):
    """A minute of a series whose rollups are stale: marked by the write of its points (in the same
    transaction), consumed by `store.rollups_refresh_pending` (beat, every few seconds). The series
    selector computes these minutes (and their hours) from the raw points, so a chart is never stale."""

    pk = models.CompositePrimaryKey("series_id", "bucket")
    series = models.ForeignKey(Metric, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    bucket = models.DateTimeField(help_text="The minute's start (UTC).")

    class Meta:
        ordering = ["series_id", "bucket"]

    def __str__(self):
        return f"{self.series_id}@{self.bucket.isoformat()} pending"
