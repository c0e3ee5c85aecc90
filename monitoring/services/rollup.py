"""Rollup and retention of the metric samples."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Avg, Count, Max, Min, OuterRef, Q, Subquery
from django.db.models.functions import TruncMinute
from django.utils import timezone

from mlops_dashboard.jobs import TERMINAL
from mlops_dashboard.retention import delete_in_batches

from ..models import Alert, Anomaly, AnomalyDetection, MetricSample


AVERAGED = ("cpu_percent", "memory_percent", "disk_percent", "load_1", "net_sent_rate", "net_recv_rate",
            "active_connections", "api_response_time_ms", "ws_response_time_ms", "predictions_per_minute",
            "model_accuracy")


def metrics_rollup(*, now=None) -> dict:
    """Average raw samples into one row per host and complete minute, then delete what is past its
    retention: raw after MONITORING_RAW_RETENTION_HOURS, minutes after MONITORING_MINUTE_RETENTION_DAYS,
    streaming anomalies after RETENTION_ANOMALIES_DAYS. Idempotent (a minute row is written once)."""
    now = now or timezone.now()
    current_minute = now.replace(second=0, microsecond=0)
    raw = MetricSample.objects.filter(resolution=MetricSample.Resolution.RAW)
    last = MetricSample.objects.filter(resolution=MetricSample.Resolution.MINUTE).aggregate(t=Max("timestamp"))["t"]
    start = (last - timedelta(minutes=5)) if last else raw.aggregate(t=Min("timestamp"))["t"]
    created = 0
    if start is not None:
        groups = (
            raw.filter(timestamp__gte=start, timestamp__lt=current_minute)
            .annotate(minute=TruncMinute("timestamp"))
            .values("host", "minute")
            .annotate(n=Count("id"), role=Max("role"), net_bytes_sent=Max("net_bytes_sent"),
                      net_bytes_recv=Max("net_bytes_recv"),
                      critical=Count("id", filter=Q(health="critical")),
                      warning=Count("id", filter=Q(health="warning")),
                      **{f: Avg(f) for f in AVERAGED})
            .order_by("minute", "host")
        )
        rows = []
        for g in groups:
            health = "critical" if g["critical"] else "warning" if g["warning"] else "healthy"
            values = {f: (round(g[f], 4) if g[f] is not None else None) for f in AVERAGED}
            values["active_connections"] = int(round(values["active_connections"] or 0))
            values["predictions_per_minute"] = values["predictions_per_minute"] or 0.0
            rows.append(MetricSample(host=g["host"], role=g["role"] or "", resolution=MetricSample.Resolution.MINUTE,
                                     timestamp=g["minute"], health=health, sample_count=g["n"],
                                     net_bytes_sent=g["net_bytes_sent"], net_bytes_recv=g["net_bytes_recv"], **values))
        before = MetricSample.objects.filter(resolution=MetricSample.Resolution.MINUTE).count()
        MetricSample.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
        created = MetricSample.objects.filter(resolution=MetricSample.Resolution.MINUTE).count() - before
    return {"minutes_created": created, **metrics_retention(now=now)}


# --- retention (also run hourly by mlops_dashboard.retention_prune, registered in apps.py) ---------


def metrics_retention(*, now) -> dict:
    """The rollup's share of retention, run every minute: samples and anomalies past their retention
    (each setting 0: kept forever)."""
    raw_hours = settings.MONITORING_RAW_RETENTION_HOURS
    minute_days = settings.MONITORING_MINUTE_RETENTION_DAYS
    anomaly_days = settings.RETENTION_ANOMALIES_DAYS
    return {
        "raw_deleted": raw_samples_prune(now - timedelta(hours=raw_hours)) if raw_hours > 0 else 0,
        "minutes_deleted": minute_samples_prune(now - timedelta(days=minute_days)) if minute_days > 0 else 0,
        "anomalies_deleted": metric_anomalies_prune(now - timedelta(days=anomaly_days)) if anomaly_days > 0 else 0,
    }


def raw_samples_prune(cutoff) -> int:
    return delete_in_batches(MetricSample.objects.filter(resolution=MetricSample.Resolution.RAW, timestamp__lt=cutoff))


def minute_samples_prune(cutoff) -> int:
    return delete_in_batches(MetricSample.objects.filter(resolution=MetricSample.Resolution.MINUTE,
                                                         timestamp__lt=cutoff))


def metric_anomalies_prune(cutoff) -> int:
    """Streaming anomalies (a detection's anomalies go with their detection)."""
    return delete_in_batches(Anomaly.objects.filter(detected_at__lt=cutoff, detection__isnull=True))


def anomalies_prune(cutoff) -> int:
    """Streaming anomalies, then finished anomaly detections with their anomalies and score files,
    except each dataset's latest finished one (the dataset page shows it); telemetry ones all go."""
    deleted = metric_anomalies_prune(cutoff)
    latest = (AnomalyDetection.objects.filter(dataset=OuterRef("dataset"), status__in=list(TERMINAL))
              .order_by("-created_at", "-id").values("pk")[:1])
    old = AnomalyDetection.objects.filter(status__in=list(TERMINAL)).filter(
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
    ).exclude(dataset__isnull=False, pk=Subquery(latest))  # a telemetry detection (no dataset) has no "latest"
    return deleted + delete_in_batches(old)


def alerts_prune(cutoff) -> int:
    """Resolved alerts resolved before the cutoff (open and acknowledged ones always stay)."""
    return delete_in_batches(Alert.objects.filter(status=Alert.Status.RESOLVED).filter(
        Q(resolved_at__lt=cutoff) | Q(resolved_at__isnull=True, last_seen_at__lt=cutoff)
    ))


def scores_files_referenced() -> list[str]:
    return list(AnomalyDetection.objects.exclude(scores_file="").values_list("scores_file", flat=True))
