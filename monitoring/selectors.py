"""Reads of the monitoring app that are more than a one-line query: the dashboard's and the
Monitoring and System pages' first render, the polling fallback, chart series.

Jobs are read through the registry of kinds (mlops_dashboard.jobs), the serving model through
training's selectors.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from mlops_dashboard import jobs
from mlops_dashboard.activity import activities_recent
from training import selectors as training_selectors

from . import state
from .models import Alert, AlertRule, Anomaly, AnomalyDetection, MetricSample
from .payloads import system_metrics_payload

logger = logging.getLogger(__name__)


# --- the serving model ---------------------------------------------------------------------------


def deployed_model() -> dict | None:
    """The most recently deployed active model version: name, version, accuracy, since when."""
    try:
        active = training_selectors.model_versions_active(limit=1)
        others = training_selectors.model_versions_active_count() - 1 if active else 0
    except DatabaseError:
        return None
    if not active:
        return None
    version = active[0]
    accuracy = version.validation_score
    if accuracy is None:
        accuracy = version.final_accuracy
    if accuracy is None:
        accuracy = (version.metrics or {}).get("accuracy")
    return {
        "id": version.pk,
        "name": version.name,
        "version": version.version,
        "status": version.status,
        "accuracy": float(accuracy) if isinstance(accuracy, (int, float)) else None,
        "deployed_at": version.deployed_at,
        "predictions": int(version.prediction_count or 0),
        "other_active": max(0, others),
    }


def prediction_total() -> int:
    try:
        return training_selectors.prediction_total()
    except DatabaseError:
        return 0


# --- health and the latest metrics per host -----------------------------------------------------


def health_current() -> dict:
    try:
        value = state.health_overall_get()
    except Exception:
        value = None
    if not value:
        return {"level": "unknown", "reason": "No host has reported metrics yet.", "recommended_action": "",
                "at": None}
    return value


def latest_metrics(*, fresh_only: bool = False) -> list[dict]:
    """Each host's last system_metrics payload (from Redis; from the database when Redis has none)."""
    try:
        rows = state.latest_all(fresh_only=fresh_only)
    except Exception:
        rows = []
    if rows:
        return rows
    cutoff = timezone.now() - timedelta(minutes=10)
    seen, out = set(), []
    for sample in MetricSample.objects.filter(resolution="raw", timestamp__gte=cutoff).order_by("-timestamp")[:200]:
        if sample.host in seen:
            continue
        seen.add(sample.host)
        stale = (timezone.now() - sample.timestamp).total_seconds() > state.fresh_seconds()
        if fresh_only and stale:
            continue
        out.append({**system_metrics_payload(sample, health=sample.health), "timestamp": sample.timestamp.isoformat(),
                    "stale": stale})
    return sorted(out, key=lambda r: r["host"])


def system_snapshot() -> dict:
    """The polling fallback of the system_metrics / health_change events."""
    hosts = latest_metrics()
    return {
        "health": health_current(),
        "hosts": hosts,
        "active_connections": max((h.get("active_connections", 0) for h in hosts), default=0),
        "generated_at": timezone.now().isoformat(),
    }


def services_latest(*, run_if_missing: bool = True) -> dict | None:
    try:
        result = state.services_get()
    except Exception:
        result = None
    if result is None and run_if_missing:
        from . import checks

        result = checks.run_all()
    return result


# --- chart series -------------------------------------------------------------------------------------


SERIES_FIELDS = ("cpu_percent", "memory_percent", "disk_percent", "load_1", "net_sent_rate", "net_recv_rate",
                 "api_response_time_ms", "ws_response_time_ms", "predictions_per_minute", "active_connections",
                 "model_accuracy")


def metric_series(*, minutes: int = 60, host: str | None = None, max_points: int = 720) -> dict:
    """Samples of the last `minutes` per host, oldest first: raw within the raw retention, per-minute
    rows beyond it. {resolution, hosts: {host: {t: [...ms], <field>: [...]}}}."""
    since = timezone.now() - timedelta(minutes=minutes)
    raw_window = settings.MONITORING_RAW_RETENTION_HOURS * 60
    resolution = "raw" if minutes <= raw_window else "minute"
    rows = MetricSample.objects.filter(resolution=resolution, timestamp__gte=since)
    if host:
        rows = rows.filter(host=host)
    rows = rows.order_by("timestamp", "id").values("host", "timestamp", *SERIES_FIELDS)
    hosts: dict[str, dict] = {}
    for row in rows.iterator(chunk_size=2000):
        series = hosts.setdefault(row["host"], {"t": [], **{f: [] for f in SERIES_FIELDS}})
        series["t"].append(int(row["timestamp"].timestamp() * 1000))
        for f in SERIES_FIELDS:
            series[f].append(row[f])
    for name, series in hosts.items():  # thin long series evenly, keeping the newest point
        n = len(series["t"])
        if n > max_points:
            step = n / max_points
            keep = sorted({min(n - 1, int(i * step)) for i in range(max_points)} | {n - 1})
            hosts[name] = {k: [v[i] for i in keep] for k, v in series.items()}
    return {"resolution": resolution, "minutes": minutes, "hosts": hosts}


# --- alerts, rules, anomalies, activity ----------------------------------------------------------------


def alerts(*, status: str | None = None, priority: str | None = None, limit: int = 100):
    rows = Alert.objects.select_related("acknowledged_by", "resolved_by", "rule")
    if status == "unresolved":
        rows = rows.exclude(status=Alert.Status.RESOLVED)
    elif status:
        rows = rows.filter(status=status)
    if priority:
        rows = rows.filter(priority=priority)
    return rows[:limit] if limit else rows


def alerts_unresolved(*, limit: int = 50) -> list[Alert]:
    rows = Alert.objects.exclude(status=Alert.Status.RESOLVED).select_related("acknowledged_by")
    items = list(rows.order_by("-last_seen_at")[:limit])
    rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    return sorted(items, key=lambda a: (a.status != "open", rank.get(a.priority, 9), -a.last_seen_at.timestamp()))


def alert_counts() -> dict:
    rows = Alert.objects.exclude(status=Alert.Status.RESOLVED)
    return {"open": rows.filter(status="open").count(), "acknowledged": rows.filter(status="acknowledged").count()}


def alert_rules() -> list[AlertRule]:
    return list(AlertRule.objects.all())


def anomalies_recent(*, limit: int = 50, source: str | None = None):
    rows = Anomaly.objects.select_related("alert")
    if source:
        rows = rows.filter(source=source)
    return list(rows[:limit])


def dataset_anomaly_detection_latest(*, dataset) -> AnomalyDetection | None:
    """The dataset's latest detection (running or finished), for templates/monitoring/includes/dataset_anomalies.html."""
    return AnomalyDetection.objects.filter(dataset=dataset).first()


def dataset_anomaly_detection_last_result(*, dataset) -> AnomalyDetection | None:
    return AnomalyDetection.objects.filter(dataset=dataset, status="succeeded").first()


# --- running jobs -----------------------------------------------------------------------------------


def running_jobs(*, limit: int = 20) -> list[dict]:
    """Queued and running jobs of every registered kind that has a dashboard row (processing jobs,
    training jobs, pipeline runs), newest first, in the shape the dashboard's job rows (and their
    events) use."""
    out = []
    for kind in jobs.kinds():
        if kind.row is None:
            continue
        try:
            out.extend(_job_row(kind, job) for job in kind.rows(status__in=list(jobs.ACTIVE))[:limit])
        except DatabaseError:
            logger.warning("running %s rows unavailable", kind.key, exc_info=True)
    out.sort(key=lambda j: j["created_at"], reverse=True)
    return out[:limit]


def _job_row(kind, job) -> dict:
    row = kind.row(job)
    return {**row, "key": f"{row['kind']}-{job.pk}", "id": job.pk, "status": job.status,
            "progress": job.progress, "step": kind.step_text(job), "created_at": job.created_at}


def job_row(*, kind: str, pk: int) -> dict | None:
    """One job's dashboard row, in any state (a finished job's row shows how it ended): `kind` is the
    row's kind ("processing", "training", "pipeline"). None when there is no such job."""
    for job_kind in jobs.kinds():
        if job_kind.row is None:
            continue
        job = job_kind.rows(pk=pk).first()
        if job is not None and job_kind.row(job)["kind"] == kind:
            return _job_row(job_kind, job)
    return None


def dashboard_summary() -> dict:
    hosts = latest_metrics()
    model = deployed_model()
    return {
        "model": model,
        "predictions_total": prediction_total(),
        "predictions_per_minute": max((h.get("predictions_per_minute") or 0.0 for h in hosts), default=0.0),
        "health": health_current(),
        "hosts": hosts,
        "active_connections": max((h.get("active_connections", 0) for h in hosts), default=0),
        "activities": activities_recent(limit=12),
        "alerts": alerts_unresolved(limit=8),
        "alert_counts": alert_counts(),
        "jobs": running_jobs(),
        "generated_at": time.time(),
    }
