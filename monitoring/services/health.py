"""Metric samples and health: a host's sample, its health, the system's health."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from mlops_dashboard.activity import activity_record
from mlops_dashboard.events import catalog, publish_on_commit

from .. import state, thresholds
from ..models import Alert, MetricSample
from ..payloads import chart_point, system_metrics_payload
from .alerts import alert_rules_check_metrics
from .anomalies import anomalies_check_project, anomalies_check_sample

logger = logging.getLogger(__name__)


# A host's sample: resource usage and the figures every server reports. Model figures are not a
# host's: each project's go out as `project_metrics` (project_metrics_publish).
SAMPLE_FIELDS = ("cpu_percent", "memory_percent", "disk_percent", "load_1", "net_sent_rate", "net_recv_rate",
                 "net_bytes_sent", "net_bytes_recv", "active_connections", "api_response_time_ms",
                 "ws_response_time_ms")


def serving_figures(*, now: float | None = None) -> dict[int, dict]:
    """{project id: its serving figures}: the deployed model's accuracy, the predictions of all its
    versions and their rate per minute (from the totals seen over about the last minute)."""
    from .. import selectors

    now = now or time.time()
    figures = selectors.serving_by_project()
    for project_id, item in figures.items():
        try:
            item["predictions_per_minute"] = float(state.predictions_rate(item["predictions_total"], now,
                                                                          project_id=project_id))
        except Exception:  # Redis down: the figures still go out
            item["predictions_per_minute"] = 0.0
    return figures


def project_metrics_publish(*, now: float | None = None) -> int:
    """Each project's serving figures on its own topic (`project_metrics`), its metric rules
    (prediction rate, accuracy) checked against them, and its prediction rate's anomalies. Returns how many projects were reported."""
    from .alerts import alert_rules_check_project

    figures = serving_figures(now=now)
    for project_id, item in figures.items():
        payload = {"project_id": project_id, "current_accuracy": item["model_accuracy"],
                   "predictions_per_minute": item["predictions_per_minute"],
                   "predictions_total": item["predictions_total"], "model": item["model"]}
        try:
            state.project_figures_set(project_id, payload)
        except Exception:
            logger.warning("figures of project %s not stored in Redis", project_id, exc_info=True)
        publish_on_commit(catalog.ProjectMetrics(**payload))
        try:
            alert_rules_check_project(project_id=project_id, values={
                "model_accuracy": item["model_accuracy"], "predictions_per_minute": item["predictions_per_minute"]})
        except Exception:
            logger.exception("metric rules of project %s failed", project_id)
        try:
            anomalies_check_project(project_id=project_id,
                                    values={"predictions_per_minute": item["predictions_per_minute"]})
        except Exception:
            logger.exception("anomalies of project %s failed", project_id)
    return len(figures)


def metrics_collect(*, role: str = "", host: str | None = None, force: bool = False) -> MetricSample | None:
    """Take this host's sample, unless another process on the host took one within the interval."""
    from .. import probes

    host = host or state.host_name()
    if not force and not state.try_sample_lock(host):
        return None
    reading = probes.read(settings.MONITORING_DISK_PATH)
    previous = state.probe_swap(host, reading)
    rates = probes.rates(reading, previous)
    stats = state.process_stats()
    values = {
        "cpu_percent": rates["cpu_percent"],
        "memory_percent": reading["memory_percent"],
        "disk_percent": reading["disk_percent"],
        "load_1": reading["load_1"],
        "net_sent_rate": rates["net_sent_rate"],
        "net_recv_rate": rates["net_recv_rate"],
        "net_bytes_sent": reading["net_bytes_sent"],
        "net_bytes_recv": reading["net_bytes_recv"],
        "active_connections": stats["active_connections"],
        "api_response_time_ms": stats["api_response_time_ms"],
        "ws_response_time_ms": stats["ws_response_time_ms"],
    }
    # Stamped when the host was read (right after the lock), not after the slower reads that follow.
    taken_at = datetime.fromtimestamp(reading["t"], tz=UTC)
    return metric_sample_record(host=host, role=role, values=values, timestamp=taken_at)


def metric_sample_record(*, host: str, values: dict, role: str = "", timestamp=None,
                         publish: bool = True) -> MetricSample:
    """Store one host's raw sample, then: its health (health_change when the system's changes),
    system_metrics / performance_metrics / chart_data, streaming anomalies and metric alert rules."""
    sample = MetricSample(host=host[:100], role=role[:16], timestamp=timestamp or timezone.now(),
                          **{f: values.get(f) for f in SAMPLE_FIELDS if values.get(f) is not None})
    host_level = health_evaluate_host(host=host, values=values)
    sample.health = host_level
    sample.full_clean()
    sample.save()
    if publish:
        payload = system_metrics_payload(sample, health=host_level)
        try:
            state.latest_set(host, {**payload, "timestamp": sample.timestamp.isoformat()})
        except Exception:
            logger.warning("latest metrics of %s not stored in Redis", host, exc_info=True)
        publish_on_commit(catalog.SystemMetrics(**payload))
        publish_on_commit(catalog.PerformanceMetrics(
            cpu_usage=float(sample.cpu_percent), memory_usage=float(sample.memory_percent),
            disk_usage=float(sample.disk_percent), network_io=payload["network_io"],
        ))
        publish_on_commit(catalog.ChartData(**chart_point(sample)))
    health_update()
    open_alerts = {(a.rule_key, a.subject): a for a in
                   Alert.objects.exclude(status=Alert.Status.RESOLVED).filter(subject__startswith=host)}
    anomalies_check_sample(host=host, values=values, open_alerts=open_alerts)
    alert_rules_check_metrics(host=host, values=values, open_alerts=open_alerts)
    return sample


def health_evaluate_host(*, host: str, values: dict) -> str:
    """This host's level from the thresholds (with hysteresis against its previous levels)."""
    limits = settings.MONITORING_THRESHOLDS
    try:
        previous = state.host_health_get(host)
    except Exception:
        previous = {}
    levels = thresholds.evaluate(values, limits, previous.get("levels"), settings.MONITORING_HYSTERESIS)
    level = thresholds.worst(levels.values())
    reasons = [
        {"metric": m, "level": lv, "text": thresholds.describe(host, m, values.get(m), lv, limits[m])}
        for m, lv in sorted(levels.items(), key=lambda kv: -thresholds.RANK[kv[1]]) if lv != thresholds.HEALTHY
    ]
    try:
        state.host_health_set(host, {"level": level, "levels": levels, "reasons": reasons,
                                     "values": {m: values.get(m) for m in limits}})
    except Exception:
        logger.warning("health of %s not stored in Redis", host, exc_info=True)
    return level


# Components whose status counts in the system's health, and what to do when one is not healthy.
HEALTH_COMPONENTS = {
    "database": "Check the database server and its connections; the dashboard cannot write without it.",
    "redis": "Restart Redis or fix REDIS_URL: events, the broker and the channel layer all depend on it.",
    "channel_layer": "Check Redis: the channel layer carries every live event to the sockets.",
    "celery": "Start a Celery worker (celery -A mlops_dashboard worker); no job can run without one.",
    "broker": "Add workers: tasks are waiting in the broker's queues.",
}


def health_update() -> dict | None:
    """Recompute the system's health from every fresh host and the components; publish
    `health_change` (and record an activity) when it changed. Returns the new health."""
    try:
        hosts = state.host_health_all()
        components = state.components_get()
    except Exception:
        logger.warning("health not updated: Redis unavailable", exc_info=True)
        return None
    reasons, actions, levels = [], [], []
    for host, value in sorted(hosts.items()):
        levels.append(value.get("level", thresholds.HEALTHY))
        for reason in value.get("reasons", []):
            reasons.append((thresholds.RANK[reason["level"]], reason["text"]))
            actions.append((thresholds.RANK[reason["level"]], thresholds.ACTIONS.get(reason["metric"], "")))
    for name, status in sorted(components.items()):
        if name in HEALTH_COMPONENTS and status in (thresholds.WARNING, thresholds.CRITICAL):
            levels.append(status)
            from ..checks import LABELS

            reasons.append((thresholds.RANK[status], f"{LABELS.get(name, name)} is {status}"))
            actions.append((thresholds.RANK[status], HEALTH_COMPONENTS[name]))
    level = thresholds.worst(levels) if levels else thresholds.HEALTHY
    reasons.sort(key=lambda r: -r[0])
    actions = [a for _, a in sorted(actions, key=lambda a: -a[0]) if a]
    reason = "; ".join(text for _, text in reasons) or "Every host and service is within its thresholds."
    action = actions[0] if actions else "Nothing to do."
    metrics = {"hosts": {h: v.get("values", {}) for h, v in hosts.items()},
               "components": {n: s for n, s in components.items() if n in HEALTH_COMPONENTS}}
    current = {"level": level, "reason": reason, "recommended_action": action, "at": time.time()}
    previous = state.health_overall_swap(current)
    was = (previous or {}).get("level", thresholds.HEALTHY)
    if was != level:
        publish_on_commit(catalog.HealthChange(current_health=level, previous_health=was, reason=reason[:1000],
                                               metrics=metrics, recommended_action=action))
        activity_record(
            title=f"System health: {level}", action_type="health", status=level, description=reason[:1000],
            severity_level={"healthy": "success", "warning": "warning", "critical": "critical"}[level],
            metadata={"previous": was},
        )
    return current
