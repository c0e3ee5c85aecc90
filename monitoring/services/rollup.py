"""Rollup and retention of the metric samples."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Avg, Count, Max, Min, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone

from ..models import Anomaly, MetricSample


AVERAGED = ("cpu_percent", "memory_percent", "disk_percent", "load_1", "net_sent_rate", "net_recv_rate",
            "active_connections", "api_response_time_ms", "ws_response_time_ms", "predictions_per_minute",
            "model_accuracy")


def metrics_rollup(*, now=None) -> dict:
    """Average raw samples into one row per host and complete minute, then delete what is past its
    retention: raw after MONITORING_RAW_RETENTION_HOURS, minutes after MONITORING_MINUTE_RETENTION_DAYS,
    anomalies after MONITORING_ANOMALY_RETENTION_DAYS. Idempotent (a minute row is written once)."""
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
    raw_cutoff = now - timedelta(hours=settings.MONITORING_RAW_RETENTION_HOURS)
    minute_cutoff = now - timedelta(days=settings.MONITORING_MINUTE_RETENTION_DAYS)
    anomaly_cutoff = now - timedelta(days=settings.MONITORING_ANOMALY_RETENTION_DAYS)
    deleted_raw, _ = raw.filter(timestamp__lt=raw_cutoff).delete()
    deleted_minutes, _ = MetricSample.objects.filter(resolution=MetricSample.Resolution.MINUTE,
                                                     timestamp__lt=minute_cutoff).delete()
    deleted_anomalies, _ = Anomaly.objects.filter(detected_at__lt=anomaly_cutoff, detection__isnull=True).delete()
    return {"minutes_created": created, "raw_deleted": deleted_raw, "minutes_deleted": deleted_minutes,
            "anomalies_deleted": deleted_anomalies}
