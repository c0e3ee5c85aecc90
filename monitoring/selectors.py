"""Reads of the monitoring app that are more than a one-line query: the dashboard's and the
Monitoring and System pages' first render, the polling fallback, chart series.

What the training and pipelines apps hold is read through guarded imports: monitoring works (and
shows empty states) when an app is absent or not migrated yet.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Sum
from django.utils import timezone

from mlops_dashboard.activity import activities_recent

from . import state
from .payloads import system_metrics_payload
from .models import Alert, AlertRule, Anomaly, AnomalyDetection, MetricSample

logger = logging.getLogger(__name__)


def _url(name: str, *args) -> str:
    from django.urls import NoReverseMatch, reverse

    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


def _model(app_label: str, name: str):
    try:
        return apps.get_model(app_label, name)
    except LookupError:
        return None


# --- the serving model ---------------------------------------------------------------------------


def deployed_model() -> dict | None:
    """The most recently deployed active model version: name, version, accuracy, since when."""
    ModelVersion = _model("training", "ModelVersion")
    if ModelVersion is None:
        return None
    try:
        version = (ModelVersion.objects.filter(status="active").order_by("-deployed_at", "-id").first())
        others = ModelVersion.objects.filter(status="active").count() - 1 if version else 0
    except DatabaseError:
        return None
    if version is None:
        return None
    accuracy = getattr(version, "validation_score", None)
    if accuracy is None:
        accuracy = getattr(version, "final_accuracy", None)
    if accuracy is None:
        accuracy = (getattr(version, "metrics", None) or {}).get("accuracy")
    return {
        "id": version.pk,
        "name": version.name,
        "version": getattr(version, "version", None),
        "status": version.status,
        "accuracy": float(accuracy) if isinstance(accuracy, (int, float)) else None,
        "deployed_at": getattr(version, "deployed_at", None),
        "predictions": int(getattr(version, "prediction_count", 0) or 0),
        "other_active": max(0, others),
    }


def prediction_total() -> int:
    ModelVersion = _model("training", "ModelVersion")
    if ModelVersion is None or not hasattr(ModelVersion, "prediction_count"):
        return 0
    try:
        return int(ModelVersion.objects.aggregate(n=Sum("prediction_count"))["n"] or 0)
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
    """Queued and running processing jobs, training jobs and pipeline runs, newest first, in the
    shape the dashboard's job rows (and their events) use."""
    from datasets.models import ProcessingJob

    from .services import job_step_text

    out = []
    for job in ProcessingJob.objects.filter(status__in=["queued", "running"]).select_related("dataset")[:limit]:
        out.append({"kind": "processing", "key": f"processing-{job.pk}", "id": job.pk,
                    "title": f"{job.get_operation_display().split(' (')[0]} · {job.dataset.name}",
                    "url": _url("datasets:detail", job.dataset_id), "status": job.status, "progress": job.progress,
                    "step": job.current_step or job.status, "created_at": job.created_at})
    TrainingJob = _model("training", "TrainingJob")
    if TrainingJob is not None:
        try:
            for job in TrainingJob.objects.filter(status__in=["queued", "running"]).defer("history")[:limit]:
                step = job_step_text(job)
                out.append({"kind": "training", "key": f"training-{job.pk}", "id": job.pk,
                            "title": f"Training · {job.name}", "url": _url("training:job-detail", job.pk),
                            "status": job.status, "progress": job.progress, "step": step,
                            "created_at": job.created_at})
        except DatabaseError:
            pass
    PipelineRun = _model("pipelines", "PipelineRun")
    if PipelineRun is not None:
        try:
            for run in PipelineRun.objects.filter(status__in=["queued", "running"]).select_related("pipeline")[:limit]:
                pipeline = getattr(run, "pipeline", None)
                out.append({"kind": "pipeline", "key": f"pipeline-{run.pk}", "id": run.pk,
                            "title": f"Pipeline · {getattr(pipeline, 'name', None) or f'run #{run.pk}'}",
                            "url": _url("pipelines:run-detail", run.pk) or _url("pipelines:index"), "status": run.status, "progress": getattr(run, "progress", 0.0),
                            "step": job_step_text(run), "created_at": run.created_at})
        except DatabaseError:
            pass
    out.sort(key=lambda j: j["created_at"], reverse=True)
    return out[:limit]


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
