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
from django.db.models import Q
from django.utils import timezone

from mlops_dashboard import jobs, permissions
from mlops_dashboard.activity import activities_recent
from training import selectors as training_selectors

from . import state
from .models import Alert, AlertRule, Anomaly, AnomalyDetection, MetricSample
from .payloads import system_metrics_payload

logger = logging.getLogger(__name__)


# --- the serving model, per project ------------------------------------------------------------------
# Read through training's selectors: the active versions, and every version's prediction count
# (model_groups), each row filtered here by its project_id.


def _accuracy(version) -> float | None:
    accuracy = version.validation_score
    if accuracy is None:
        accuracy = version.final_accuracy
    if accuracy is None:
        accuracy = (version.metrics or {}).get("accuracy")
    return float(accuracy) if isinstance(accuracy, (int, float)) else None


def deployed_model(*, project) -> dict | None:
    """The project's most recently deployed active model version: name, version, accuracy, since when."""
    project_id = getattr(project, "pk", project)
    if project_id is None:
        return None
    try:
        active = training_selectors.model_versions_active(limit=10_000, project_id=project_id)
    except DatabaseError:
        return None
    if not active:
        return None
    version = active[0]
    return {
        "id": version.pk,
        "name": version.name,
        "version": version.version,
        "status": version.status,
        "accuracy": _accuracy(version),
        "deployed_at": version.deployed_at,
        "predictions": int(version.prediction_count or 0),
        "other_active": len(active) - 1,
    }


def serving_by_project() -> dict[int, dict]:
    """{project id: {"model_accuracy", "predictions_total", "model"}} of every project with a model
    version: the accuracy of its most recently deployed active version (None without one) and the
    predictions served by all its versions."""
    try:
        groups = training_selectors.model_groups()
        active = training_selectors.model_versions_active(limit=10_000)
    except DatabaseError:
        return {}
    out: dict[int, dict] = {}
    for group in groups:
        for version in group["versions"]:
            figures = out.setdefault(version.project_id, {"model_accuracy": None, "predictions_total": 0, "model": None})
            figures["predictions_total"] += int(version.prediction_count or 0)
    for version in active:  # the most recently deployed first: the first of each project serves
        figures = out.get(version.project_id)
        if figures is not None and figures["model"] is None:
            figures["model"] = {"id": version.pk, "name": version.name, "version": version.version}
            figures["model_accuracy"] = _accuracy(version)
    return out


def prediction_total(*, project) -> int:
    project_id = getattr(project, "pk", project)
    return training_selectors.prediction_total(project_id=project_id) if project_id is not None else 0


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
                 "api_response_time_ms", "ws_response_time_ms", "active_connections")


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
# What a user reads: the global rows (system alerts, global rules, metric anomalies) and those of
# their projects; `project` narrows a page to its current project (with the global rows beside).


def _scoped(rows, user, project, *, include_global: bool = True):
    rows = permissions.visible(rows, user, include_global=include_global)
    if project is not None:
        project_id = getattr(project, "pk", project)
        rows = rows.filter(Q(project_id=project_id) | Q(project__isnull=True)) if include_global else \
            rows.filter(project_id=project_id)
    return rows


def alerts(*, status: str | None = None, priority: str | None = None, limit: int = 100, user=None, project=None,
           silenced: bool | None = None):
    rows = _scoped(Alert.objects.select_related("acknowledged_by", "resolved_by", "rule"), user, project)
    if silenced is not None:
        held = Q(silenced_until__gt=timezone.now())
        rows = rows.filter(held) if silenced else rows.exclude(held)
    if status == "unresolved":
        rows = rows.exclude(status=Alert.Status.RESOLVED)
    elif status:
        rows = rows.filter(status=status)
    if priority:
        rows = rows.filter(priority=priority)
    return rows[:limit] if limit else rows


def alerts_unresolved(*, limit: int = 50, user=None, project=None) -> list[Alert]:
    rows = _scoped(Alert.objects.exclude(status=Alert.Status.RESOLVED).select_related("acknowledged_by"),
                   user, project)
    items = list(rows.order_by("-last_seen_at")[:limit])
    rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    return sorted(items, key=lambda a: (a.status != "open", rank.get(a.priority, 9), -a.last_seen_at.timestamp()))


def alert_counts(*, user=None, project=None) -> dict:
    rows = _scoped(Alert.objects.exclude(status=Alert.Status.RESOLVED), user, project)
    return {"open": rows.filter(status="open").count(), "acknowledged": rows.filter(status="acknowledged").count()}


def alert_rules(*, user=None, project=None) -> list[AlertRule]:
    return list(_scoped(AlertRule.objects.select_related("project"), user, project))


def anomalies_recent(*, limit: int = 50, source: str | None = None, user=None, project=None):
    rows = _scoped(Anomaly.objects.select_related("alert"), user, project)
    if source:
        rows = rows.filter(source=source)
    return list(rows[:limit])


def telemetry_source_anomalies(*, source, start=None, end=None, metric: str | None = None, limit: int = 200,
                               user=None) -> list[Anomaly]:
    """The anomalies of a telemetry source's readings observed in [start, end], newest first (the
    source page's chart marks and table)."""
    rows = permissions.visible(Anomaly.objects.filter(telemetry_source_id=getattr(source, "pk", source)), user)
    if start is not None:
        rows = rows.filter(observed_at__gte=start)
    if end is not None:
        rows = rows.filter(observed_at__lte=end)
    if metric:
        rows = rows.filter(metric=metric)
    return list(rows.order_by("-observed_at", "-id")[:limit])


def dataset_anomaly_detection_latest(*, dataset) -> AnomalyDetection | None:
    """The dataset's latest detection (running or finished), for templates/monitoring/includes/dataset_anomalies.html."""
    return AnomalyDetection.objects.filter(dataset=dataset).first()


def dataset_anomaly_detection_last_result(*, dataset) -> AnomalyDetection | None:
    return AnomalyDetection.objects.filter(dataset=dataset, status="succeeded").first()


# --- running jobs -----------------------------------------------------------------------------------


def running_jobs(*, limit: int = 20, user=None, project=None) -> list[dict]:
    """Queued and running jobs of every registered kind that has a dashboard row (processing jobs,
    training jobs, pipeline runs) that the user may see (of `project` when given), newest first, in
    the shape the dashboard's job rows (and their events) use."""
    out = []
    for kind in jobs.kinds():
        if kind.row is None:
            continue
        try:
            rows = _scoped(kind.rows(status__in=list(jobs.ACTIVE)), user, project, include_global=False)
            out.extend(_job_row(kind, job) for job in rows[:limit])
        except DatabaseError:
            logger.warning("running %s rows unavailable", kind.key, exc_info=True)
    out.sort(key=lambda j: j["created_at"], reverse=True)
    return out[:limit]


def _job_row(kind, job) -> dict:
    row = kind.row(job)
    return {**row, "key": f"{row['kind']}-{job.pk}", "id": job.pk, "status": job.status,
            "progress": job.progress, "step": kind.step_text(job), "created_at": job.created_at}


def job_row(*, kind: str, pk: int, user=None) -> dict | None:
    """One job's dashboard row, in any state (a finished job's row shows how it ended): `kind` is the
    row's kind ("processing", "training", "pipeline"). None when there is no such job the user may see."""
    for job_kind in jobs.kinds():
        if job_kind.row is None:
            continue
        job = permissions.visible(job_kind.rows(pk=pk), user).first()
        if job is not None and job_kind.row(job)["kind"] == kind:
            return _job_row(job_kind, job)
    return None


def project_figures(*, project) -> dict:
    """The project's last serving figures (as project_metrics said them), for a first render."""
    project_id = getattr(project, "pk", project)
    if project_id is None:
        return {}
    try:
        return state.project_figures_get(project_id) or {}
    except Exception:
        return {}


def dashboard_summary(*, user, project) -> dict:
    """The dashboard's first render: the current project's model, predictions, jobs, alerts and
    activity (with the system alerts), and the global hosts and health. `project` None (a user in
    no project): only the global figures."""
    hosts = latest_metrics()
    figures = project_figures(project=project)
    none = project is None
    return {
        "project": project,
        "model": None if none else deployed_model(project=project),
        "predictions_total": 0 if none else prediction_total(project=project),
        "predictions_per_minute": float(figures.get("predictions_per_minute") or 0.0),
        "health": health_current(),
        "hosts": hosts,
        "active_connections": max((h.get("active_connections", 0) for h in hosts), default=0),
        "activities": [] if none else activities_recent(user=user, project=project, limit=12),
        "alerts": alerts_unresolved(limit=8, user=user, project=project),
        "alert_counts": alert_counts(user=user, project=project),
        "jobs": [] if none else running_jobs(user=user, project=project),
        "generated_at": time.time(),
    }
