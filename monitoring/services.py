"""Every write of the monitoring app, and the events that announce them.

Sections: metric samples and health · alert rules and alerts · anomalies · on-demand
anomaly detection · service and job checks · rollup and retention.

Events go out on commit of the write they describe (publish_on_commit). Other apps call
`alert_raise(rule_kind=..., subject=..., title=..., message=...)` to open (or repeat) an alert, and
`alert_condition_clear(rule_kind=..., subject=...)` when its condition has gone.
"""

from __future__ import annotations

import io
import logging
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Avg, Count, Max, Min, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone

from mlops_dashboard import jobs
from mlops_dashboard.activity import activity_record
from mlops_dashboard.events import catalog, publish_on_commit
from mlops_dashboard.jobs import JobStatus

from . import anomaly as scoring
from . import defaults, state, thresholds
from .models import (
    METRICS,
    PRIORITY_RANK,
    SEVERITY_RANK,
    SYSTEM_METRICS,
    Alert,
    AlertRule,
    Anomaly,
    AnomalyDetection,
    MetricSample,
    Priority,
)

logger = logging.getLogger(__name__)


class Conflict(Exception):
    """The request is valid but the object's state does not allow it (the API answers 409)."""


# =================================================================================================
# Metric samples and health
# =================================================================================================

SAMPLE_FIELDS = ("cpu_percent", "memory_percent", "disk_percent", "load_1", "net_sent_rate", "net_recv_rate",
                 "net_bytes_sent", "net_bytes_recv", "active_connections", "api_response_time_ms",
                 "ws_response_time_ms", "predictions_per_minute", "model_accuracy")


def serving_figures(*, now: float | None = None) -> dict:
    """The deployed model's accuracy and the prediction rate (None / 0 without the training app)."""
    from . import selectors

    model = selectors.deployed_model()
    total = selectors.prediction_total()
    try:
        rate = state.predictions_rate(total, now or time.time())
    except Exception:  # Redis down: the sample still goes in
        rate = 0.0
    return {"model_accuracy": model["accuracy"] if model else None, "predictions_per_minute": float(rate),
            "predictions_total": total}


def metrics_collect(*, role: str = "", host: str | None = None, force: bool = False) -> MetricSample | None:
    """Take this host's sample, unless another process on the host took one within the interval."""
    from . import probes

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
        **serving_figures(),
    }
    values.pop("predictions_total", None)
    # Stamped when the host was read (right after the lock), not after the slower reads that follow.
    taken_at = datetime.fromtimestamp(reading["t"], tz=UTC)
    return metric_sample_record(host=host, role=role, values=values, timestamp=taken_at)


def system_metrics_payload(sample: MetricSample, *, health: str) -> dict:
    return {
        "host": sample.host,
        "cpu_percent": float(sample.cpu_percent),
        "memory_percent": float(sample.memory_percent),
        "disk_percent": float(sample.disk_percent),
        "active_connections": int(sample.active_connections),
        "current_health": health,
        "current_accuracy": sample.model_accuracy,
        "predictions_per_minute": float(sample.predictions_per_minute),
        "api_response_time_ms": sample.api_response_time_ms,
        "ws_response_time_ms": sample.ws_response_time_ms,
        "load_average": sample.load_1,
        "network_io": {"sent_rate": sample.net_sent_rate, "recv_rate": sample.net_recv_rate,
                       "bytes_sent": sample.net_bytes_sent, "bytes_recv": sample.net_bytes_recv},
        "role": sample.role or None,
    }


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


def chart_point(sample: MetricSample) -> dict:
    t = int(sample.timestamp.timestamp() * 1000)
    return {
        "resource": {"host": sample.host, "t": t, "cpu": sample.cpu_percent, "memory": sample.memory_percent,
                     "disk": sample.disk_percent, "load": sample.load_1},
        "network": {"host": sample.host, "t": t, "sent_rate": sample.net_sent_rate, "recv_rate": sample.net_recv_rate},
        "performance": {"host": sample.host, "t": t, "api_ms": sample.api_response_time_ms,
                        "ws_ms": sample.ws_response_time_ms, "predictions_per_minute": sample.predictions_per_minute,
                        "active_connections": sample.active_connections, "accuracy": sample.model_accuracy},
    }


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
            from .checks import LABELS

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


# =================================================================================================
# Alert rules and alerts
# =================================================================================================


def alert_payload(alert: Alert) -> dict:
    """What `system_alert` carries and the API answers."""
    return {
        "id": alert.pk,
        "title": alert.title,
        "message": alert.message,
        "alert_type": alert.alert_type,
        "priority": alert.priority,
        "source": alert.source,
        "status": alert.status,
        "actions": alert.actions,
        "subject": alert.subject,
        "rule": alert.rule_key,
        "value": alert.value,
        "occurrences": alert.occurrences,
        "suggested_actions": alert.suggested_actions,
        "created_at": alert.created_at.isoformat() if alert.created_at else None,
        "last_seen_at": alert.last_seen_at.isoformat() if alert.last_seen_at else None,
        "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by_id else None,
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "resolved_by": alert.resolved_by.get_username() if alert.resolved_by_id else None,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "auto_resolved": alert.auto_resolved,
        "resolution_note": alert.resolution_note,
    }


def _announce_alert(alert: Alert) -> None:
    publish_on_commit(catalog.SystemAlert(alert=alert_payload(alert)))


def alert_rules_install_defaults() -> int:
    """Create the default rules that are missing (a fresh or flushed database). Returns how many."""
    return defaults.install(AlertRule)


def _rule_for(rule_kind: str) -> tuple[AlertRule | None, bool]:
    """(the first enabled rule of this kind, whether any rule of the kind exists)."""
    rules = list(AlertRule.objects.filter(kind=rule_kind).order_by("id"))
    enabled = next((r for r in rules if r.enabled), None)
    return enabled, bool(rules)


def alert_raise(*, rule_kind: str, subject: str, title: str, message: str = "", priority: str | None = None,
                alert_type: str | None = None, source: str = "", value: float | None = None,
                suggested_actions: list[str] | None = None, metadata: dict | None = None,
                rule: AlertRule | None = None) -> Alert | None:
    """Open an alert about `subject` under the rule of `rule_kind` (one of AlertRule.Kind), or repeat it.

    - At most one unresolved alert exists per (rule, subject): a repeat while one is open or
      acknowledged updates it (message, value, occurrences, last_seen_at, and a higher priority) and
      publishes nothing; otherwise a new alert opens and `system_alert` is published on commit.
    - The rule is the first enabled AlertRule of that kind (or `rule`); its priority and suggested
      actions are the defaults. When rules of that kind exist but all are disabled, nothing is raised
      and None is returned. A kind without any rule still raises (deduplicated by kind and subject).
    """
    if rule is None:
        if rule_kind not in AlertRule.Kind.values:
            raise ValidationError({"rule_kind": f"{rule_kind!r} is not an alert rule kind."})
        rule, exists = _rule_for(rule_kind)
        if rule is None and exists:
            return None
    elif not rule.enabled:
        return None
    rule_key = rule.slug if rule else f"kind:{rule_kind}"
    priority = priority or (rule.priority if rule else Priority.MEDIUM)
    actions = list(suggested_actions if suggested_actions is not None else (rule.suggested_actions if rule else []))
    now = timezone.now()
    fields = {
        "title": title[:200], "message": message, "priority": priority, "source": source[:200], "value": value,
        "suggested_actions": actions, "metadata": metadata or {}, "alert_type": (alert_type or rule_kind)[:32],
    }
    with transaction.atomic():
        existing = _unresolved(rule_key, subject)
        if existing is not None:
            return _alert_repeat(existing, fields, now)
        alert = Alert(rule=rule, rule_key=rule_key, subject=subject[:200], last_seen_at=now, **fields)
        alert.full_clean(validate_constraints=False)
        try:
            with transaction.atomic():
                alert.save()
        except IntegrityError:  # another process opened it between our read and our write
            existing = _unresolved(rule_key, subject)
            if existing is None:
                raise
            return _alert_repeat(existing, fields, now)
        _announce_alert(alert)
        activity_record(
            title=f"Alert: {alert.title}", action_type="alert", status="open", description=message[:1000],
            severity_level={"critical": "critical", "high": "error", "medium": "warning"}.get(priority, "info"),
            metadata={"alert_id": alert.pk, "subject": alert.subject, "rule": rule_key},
        )
    return alert


def _unresolved(rule_key: str, subject: str) -> Alert | None:
    return (Alert.objects.select_for_update().filter(rule_key=rule_key, subject=subject[:200])
            .exclude(status=Alert.Status.RESOLVED).first())


def _alert_repeat(alert: Alert, fields: dict, now) -> Alert:
    alert.message = fields["message"] or alert.message
    alert.value = fields["value"]
    alert.occurrences += 1
    alert.last_seen_at = now
    if PRIORITY_RANK.get(fields["priority"], 0) > PRIORITY_RANK.get(alert.priority, 0):
        alert.priority = fields["priority"]
    alert.save(update_fields=["message", "value", "occurrences", "last_seen_at", "priority"])
    return alert


def alert_condition_clear(*, subject: str, rule_kind: str | None = None, rule: AlertRule | None = None,
                          message: str = "The condition cleared.") -> Alert | None:
    """Resolve automatically the unresolved alert of (rule, subject), if any; `system_alert` on commit."""
    if rule is not None:
        keys = [rule.slug]
    else:
        keys = [r.slug for r in AlertRule.objects.filter(kind=rule_kind)] + [f"kind:{rule_kind}"]
    alert = Alert.objects.filter(rule_key__in=keys, subject=subject[:200]).exclude(status=Alert.Status.RESOLVED).first()
    if alert is None:
        return None
    return _alert_resolve(alert, user=None, note=message, auto=True)


def alert_acknowledge(*, alert: Alert, user) -> Alert:
    with transaction.atomic():
        updated = Alert.objects.filter(pk=alert.pk, status=Alert.Status.OPEN).update(
            status=Alert.Status.ACKNOWLEDGED, acknowledged_by=user, acknowledged_at=timezone.now())
        alert.refresh_from_db()
        if not updated:
            raise Conflict(f"The alert is {alert.status}; only an open alert can be acknowledged.")
        _announce_alert(alert)
        activity_record(title=f"Alert acknowledged: {alert.title}", action_type="alert_acknowledge", user=user,
                        metadata={"alert_id": alert.pk})
    return alert


def alert_resolve(*, alert: Alert, user, note: str = "") -> Alert:
    return _alert_resolve(alert, user=user, note=note, auto=False)


def _alert_resolve(alert: Alert, *, user, note: str, auto: bool) -> Alert:
    with transaction.atomic():
        updated = Alert.objects.filter(pk=alert.pk).exclude(status=Alert.Status.RESOLVED).update(
            status=Alert.Status.RESOLVED, resolved_by=user if getattr(user, "is_authenticated", False) else None,
            resolved_at=timezone.now(), auto_resolved=auto, resolution_note=note[:500])
        alert.refresh_from_db()
        if not updated:
            raise Conflict("The alert is already resolved.")
        _announce_alert(alert)
        activity_record(
            title=f"Alert {'cleared' if auto else 'resolved'}: {alert.title}", action_type="alert_resolve",
            user=user, description=note[:500], severity_level="success",
            metadata={"alert_id": alert.pk, "auto": auto},
        )
        if alert.rule_key and alert.subject.startswith("worker:") and not auto:
            # Resolving "worker missing" by hand means it is gone for good: stop expecting it.
            name = alert.subject.removeprefix("worker:")
            transaction.on_commit(lambda: _safe(state.worker_forget, name))
    return alert


def _safe(fn, *args):
    try:
        fn(*args)
    except Exception:
        logger.warning("%s failed", getattr(fn, "__name__", fn), exc_info=True)


RULE_FIELDS = ("name", "kind", "metric", "comparison", "threshold", "duration_seconds", "priority", "enabled",
               "description", "suggested_actions")


def alert_rule_create(*, user=None, slug: str = "", **fields) -> AlertRule:
    from django.utils.text import slugify

    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise ValidationError({f: "Unknown field." for f in unknown})
    base = slugify(slug or fields.get("name", ""))[:56] or "rule"
    candidate, n = base, 1
    while AlertRule.objects.filter(slug=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    rule = AlertRule(slug=candidate, **fields)
    rule.full_clean()
    with transaction.atomic():
        rule.save()
        activity_record(title=f"Alert rule created: {rule.name}", action_type="alert_rule", user=user,
                        description=rule.condition, metadata={"rule_id": rule.pk})
    return rule


def alert_rule_update(*, rule: AlertRule, user=None, **fields) -> AlertRule:
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise ValidationError({f: "Unknown field." for f in unknown})
    was_enabled = rule.enabled
    for name, value in fields.items():
        setattr(rule, name, value)
    rule.full_clean()
    with transaction.atomic():
        rule.save()
        verb = "updated"
        if was_enabled != rule.enabled:
            verb = "enabled" if rule.enabled else "disabled"
        activity_record(title=f"Alert rule {verb}: {rule.name}", action_type="alert_rule", user=user,
                        description=rule.condition, metadata={"rule_id": rule.pk, "enabled": rule.enabled})
        if was_enabled and not rule.enabled:
            for alert in Alert.objects.filter(rule=rule).exclude(status=Alert.Status.RESOLVED):
                _alert_resolve(alert, user=user, note="Its rule was disabled.", auto=True)
    return rule


def alert_rule_set_enabled(*, rule: AlertRule, enabled: bool, user=None) -> AlertRule:
    return alert_rule_update(rule=rule, user=user, enabled=enabled)


def _metric_text(metric: str, value) -> str:
    label, unit = METRICS.get(metric, (metric, ""))
    if value is None:
        return f"{label} unknown"
    return f"{label} {float(value):,.1f}{unit}"


def _check_metric_rules(rules, *, subject_for, values: dict, source: str, open_alerts: dict | None) -> None:
    now = time.time()
    for rule in rules:
        if rule.metric not in values:
            continue
        subject = subject_for(rule)
        value = values.get(rule.metric)
        if rule.holds(value):
            since = state.condition_since(rule.slug, subject, now)
            held = now - since
            if held >= rule.duration_seconds:
                alert_raise(rule=rule, rule_kind=rule.kind, subject=subject, title=f"{rule.name} on {subject}",
                            message=f"{_metric_text(rule.metric, value)} — {rule.condition} (held {held:.0f} s).",
                            value=float(value), source=source, alert_type="resource",
                            metadata={"metric": rule.metric, "held_seconds": round(held, 1)})
        else:
            state.condition_clear(rule.slug, subject)
            if open_alerts is None or (rule.slug, subject) in open_alerts:
                alert_condition_clear(rule=rule, subject=subject,
                                      message=f"{_metric_text(rule.metric, value)}: back within {rule.condition}.")


def alert_rules_check_metrics(*, host: str, values: dict, open_alerts: dict | None = None) -> None:
    """Metric rules about one host (CPU, memory, disk, load, network): alert when the condition has
    held for the rule's duration, resolve automatically when it no longer holds."""
    rules = [r for r in AlertRule.objects.filter(kind=AlertRule.Kind.METRIC, enabled=True)
             if r.metric not in SYSTEM_METRICS]
    _check_metric_rules(rules, subject_for=lambda r: host, values=values, source=host, open_alerts=open_alerts)


def alert_rules_check_system(*, values: dict) -> None:
    """Metric rules about the whole system (API latency, sockets, predictions, accuracy): subject "system"."""
    rules = [r for r in AlertRule.objects.filter(kind=AlertRule.Kind.METRIC, enabled=True)
             if r.metric in SYSTEM_METRICS]
    _check_metric_rules(rules, subject_for=lambda r: "system", values=values, source="system", open_alerts=None)


# =================================================================================================
# Anomalies
# =================================================================================================


def anomaly_record(*, source: str, entity: str, metric: str, value: float | None, score: float, severity: str,
                   baseline: float | None = None, details: dict | None = None,
                   detection: AnomalyDetection | None = None) -> Anomaly:
    """Store an anomaly and publish `anomaly_detected`; a severe metric anomaly (score at or above the
    enabled anomaly rule's threshold) opens an alert about its series."""
    item = Anomaly(source=source, entity=entity[:200], metric=metric[:64], value=value, score=round(float(score), 4),
                   severity=severity, baseline=baseline, details=details or {}, detection=detection)
    item.full_clean()
    with transaction.atomic():
        item.save()
        publish_on_commit(catalog.AnomalyDetected(
            source=source, entity=item.entity, metric=item.metric, value=value, anomaly_score=float(item.score),
            severity=severity, anomaly_id=item.pk, baseline=baseline,
            dataset_id=detection.dataset_id if detection else None,
            detection_id=detection.pk if detection else None,
        ))
        if source == Anomaly.Source.METRICS:
            rule, _ = _rule_for(AlertRule.Kind.ANOMALY)
            limit = rule.threshold if rule and rule.threshold is not None else 12.0
            if rule is not None and score >= limit:
                label, unit = METRICS.get(metric, (metric, ""))
                shown = "—" if value is None else f"{value:,.1f}{unit}"
                alert = alert_raise(
                    rule=rule, rule_kind=rule.kind, subject=f"{entity}:{metric}", alert_type="anomaly", source=entity,
                    title=f"Anomaly: {label} on {entity}", value=value,
                    message=f"{label} {shown} is far from its recent median"
                            f"{'' if baseline is None else f' {baseline:,.1f}{unit}'} (score {score:.1f}, {severity}).",
                    priority=Priority.CRITICAL if severity == "critical" else None,
                    metadata={"anomaly_id": item.pk, "metric": metric},
                )
                if alert is not None:
                    item.alert = alert
                    item.save(update_fields=["alert"])
    return item


def anomalies_check_sample(*, host: str, values: dict, open_alerts: dict | None = None) -> list[Anomaly]:
    """Score each streamed series' new value against its recent window (kept in Redis)."""
    streamed = {m: values.get(m) for m in scoring.STREAMED if values.get(m) is not None}
    try:
        windows = state.windows_push(host, streamed)
    except Exception:
        logger.warning("anomaly windows unavailable (Redis)", exc_info=True)
        return []
    found = []
    threshold = settings.MONITORING_ANOMALY_THRESHOLD
    rule, _ = _rule_for(AlertRule.Kind.ANOMALY)
    for metric, value in streamed.items():
        result = scoring.robust_score(windows.get(metric, []), value, metric=metric,
                                      min_samples=settings.MONITORING_ANOMALY_MIN_SAMPLES)
        if result is None:
            continue
        severity = scoring.severity(result.score, threshold)
        subject = f"{host}:{metric}"
        if severity is None:
            if rule is not None and (open_alerts is None or (rule.slug, subject) in open_alerts):
                label, unit = METRICS.get(metric, (metric, ""))
                alert_condition_clear(rule=rule, subject=subject,
                                      message=f"{label} is back in its usual range ({value:,.1f}{unit}).")
            continue
        if not state.anomaly_gate(subject, SEVERITY_RANK[severity], settings.MONITORING_ANOMALY_COOLDOWN):
            continue
        found.append(anomaly_record(
            source=Anomaly.Source.METRICS, entity=host, metric=metric, value=float(value), score=result.score,
            severity=severity, baseline=round(result.median, 4),
            details={"scale": round(result.scale, 4), "window": len(windows.get(metric, []))},
        ))
    return found


# =================================================================================================
# On-demand anomaly detection (IsolationForest over a dataset)
# =================================================================================================

NUMERIC_TYPES = ("numeric", "boolean")


def dataset_numeric_columns(dataset) -> tuple[list[str], set[str]]:
    """(numeric or boolean columns, those that look like identifiers) from the dataset's profile."""
    profiles = (dataset.profile or {}).get("column_profiles") or []
    numeric = [p["name"] for p in profiles if p.get("type") in NUMERIC_TYPES]
    identifiers = {p["name"] for p in profiles if p.get("looks_like_identifier")}
    return numeric, identifiers


def anomaly_detection_start(*, dataset, contamination: float = 0.05, columns: list[str] | None = None,
                            user=None) -> AnomalyDetection:
    """Queue an IsolationForest over a ready dataset; the worker publishes `anomaly_detected`."""
    from datasets.models import Dataset

    if dataset.status != Dataset.Status.READY:
        raise ValidationError({"dataset": f"The dataset is {dataset.status}; anomaly detection runs on ready "
                                          "datasets only."})
    columns = list(dict.fromkeys(columns or []))
    numeric, _ = dataset_numeric_columns(dataset)
    if columns:
        unknown = [c for c in columns if c not in (dataset.column_names or [])]
        if unknown:
            raise ValidationError({"columns": f"Not columns of {dataset.name}: {', '.join(unknown)}."})
        if numeric:
            not_numeric = [c for c in columns if c not in numeric]
            if not_numeric:
                raise ValidationError({"columns": f"Not numeric: {', '.join(not_numeric)}."})
    elif dataset.profile and not numeric:
        raise ValidationError({"dataset": f"{dataset.name} has no numeric column to score."})
    detection = AnomalyDetection(dataset=dataset, dataset_name=dataset.name, contamination=contamination,
                                 columns=columns, created_by=user if getattr(user, "is_authenticated", False) else None)
    detection.full_clean()
    with transaction.atomic():
        detection.save()
        activity_record(title=f"Anomaly detection started: {dataset.name}", action_type="anomaly_detection",
                        user=user, status="queued",
                        description=f"IsolationForest, contamination {contamination:g}"
                                    + (f", columns {', '.join(columns)}" if columns else ""),
                        metadata={"detection_id": detection.pk, "dataset_id": dataset.pk})
        from .tasks import anomaly_detection_run as task

        pk = detection.pk
        transaction.on_commit(lambda: task.delay(pk))
    return detection


def anomaly_detection_run(*, detection_id: int) -> AnomalyDetection | None:
    """Score every row (in a worker); once, even when the task is delivered twice."""
    from . import isolation

    if not jobs.claim(AnomalyDetection, detection_id):
        logger.info("anomaly detection %s already claimed or ended; skipped", detection_id)
        return None
    detection = AnomalyDetection.objects.select_related("dataset").get(pk=detection_id)
    dataset = detection.dataset
    with jobs.heartbeat(AnomalyDetection, detection_id):
        try:
            _, identifiers = dataset_numeric_columns(dataset)
            result = isolation.detect(
                dataset.file.path, contamination=detection.contamination, columns=detection.columns or None,
                exclude=identifiers, encoding=dataset.encoding or "utf-8", delimiter=dataset.delimiter or ",",
                top=50,
            )
        except isolation.DetectionError as exc:
            return _detection_fail(detection, str(exc))
        except Exception as exc:
            logger.exception("anomaly detection %s failed", detection_id)
            return _detection_fail(detection, f"{type(exc).__name__}: {exc}"[:2000])
    return _detection_complete(detection, result)


def _scores_bytes(scores) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, scores.astype("float32"), allow_pickle=False)
    return buffer.getvalue()


def _detection_complete(detection: AnomalyDetection, result) -> AnomalyDetection | None:
    name = default_storage.save(f"anomaly/{detection.pk}-{int(time.time())}.npy", ContentFile(_scores_bytes(result.scores)))
    share = round(result.share_flagged, 6)
    severity = scoring.share_severity(share)
    with transaction.atomic():
        if not jobs.finish(AnomalyDetection, detection.pk, status=JobStatus.SUCCEEDED, progress=100.0,
                           columns_used=result.columns, n_rows=result.n_rows, n_flagged=result.n_flagged,
                           share_flagged=share, max_score=round(result.max_score, 6),
                           threshold=round(result.threshold, 6), scores_file=name, top_rows=result.top_rows):
            transaction.on_commit(lambda: default_storage.delete(name))
            return None
        detection.refresh_from_db()
        anomaly_record(
            source=Anomaly.Source.DATASET, entity=detection.dataset_name, metric="isolation_forest", value=share,
            score=detection.max_score, severity=severity, detection=detection,
            details={"rows": result.n_rows, "flagged": result.n_flagged, "contamination": detection.contamination,
                     "columns": result.columns, "threshold": detection.threshold},
        )
        activity_record(
            title=f"Anomaly detection finished: {detection.dataset_name}", action_type="anomaly_detection",
            user=detection.created_by, duration=detection.duration, severity_level="success",
            description=f"{result.n_flagged:,} of {result.n_rows:,} rows flagged ({share:.1%}).",
            metadata={"detection_id": detection.pk, "dataset_id": detection.dataset_id},
        )
    return detection


def _detection_fail(detection: AnomalyDetection, error: str) -> AnomalyDetection:
    with transaction.atomic():
        if jobs.finish(AnomalyDetection, detection.pk, status=JobStatus.FAILED, error=error):
            detection.refresh_from_db()
            activity_record(
                title=f"Anomaly detection failed: {detection.dataset_name}", action_type="anomaly_detection",
                user=detection.created_by, status="failed", severity_level="error", description=error[:500],
                metadata={"detection_id": detection.pk, "dataset_id": detection.dataset_id},
            )
    return detection


def anomaly_detection_scores(*, detection: AnomalyDetection):
    """Every row's score (a float32 numpy array), or None before it has finished."""
    import numpy as np

    if not detection.scores_file:
        return None
    with default_storage.open(detection.scores_file.name, "rb") as f:
        return np.load(io.BytesIO(f.read()), allow_pickle=False)


@jobs.reaper
def anomaly_detections_reap_stale() -> int:
    count = 0
    for detection in jobs.stale(AnomalyDetection):
        _detection_fail(detection, "The worker running this detection stopped (worker lost).")
        count += 1
    return count


# =================================================================================================
# Service checks, workers, failed and stalled jobs
# =================================================================================================


def monitoring_check() -> dict:
    """What beat (and, as a fallback, every collector) runs each interval; each part is throttled
    by a lock in Redis so that it runs once per interval whatever the number of callers."""
    done = {}
    if state.try_lock("check-services", settings.MONITORING_CHECK_INTERVAL * 0.9):
        done["services"] = services_check()
    if state.try_lock("check-jobs", settings.MONITORING_INTERVAL * 0.9):
        done["jobs"] = jobs_check()
        stats = state.process_stats()
        alert_rules_check_system(values={
            "active_connections": stats["active_connections"],
            "api_response_time_ms": stats["api_response_time_ms"],
            "ws_response_time_ms": stats["ws_response_time_ms"],
            **serving_figures(),
        })
    return done


def services_check() -> dict:
    """Check every component; publish service_health and integration_status, component_health for
    each component whose status changed; alert on missing workers; update the system's health."""
    from . import checks

    try:
        known = len(state.workers_seen([], time.time()))
    except Exception:
        known = 0
    result = checks.run_all(known_workers=known)
    components = result["services"] + result["integrations"]
    changes = state.components_swap({c["name"]: c["status"] for c in components})
    state.services_set(result)
    publish_on_commit(catalog.ServiceHealth(services=result["services"]))
    publish_on_commit(catalog.IntegrationStatus(integrations=result["integrations"]))
    by_name = {c["name"]: c for c in components}
    for name, (previous, status) in changes.items():
        if previous is None:
            continue  # first seen: service_health / integration_status carry it, it is not a change
        item = by_name[name]
        publish_on_commit(catalog.ComponentHealth(component=name, status=status, metrics={
            "label": item["label"], "previous": previous, "latency_ms": item["latency_ms"],
            "detail": item["detail"], "checked_at": item["checked_at"],
        }))
    workers_check(workers=result["workers"], celery_reachable=not by_name["celery"].get("error"))
    health_update()
    return result


def workers_check(*, workers: list[dict], celery_reachable: bool = True) -> None:
    """A worker that answered before and has not answered for the rule's duration is missing (a
    worker that shut down cleanly said goodbye: monitoring.signals forgets it)."""
    if not celery_reachable:
        return  # the control channel itself failed: the Redis/broker alerts say so
    now = time.time()
    seen = state.workers_seen([w["name"] for w in workers], now)
    rule, exists = _rule_for(AlertRule.Kind.WORKER_MISSING)
    answering = {w["name"] for w in workers}
    for name, last in seen.items():
        subject = f"worker:{name}"
        if name in answering:
            alert_condition_clear(rule_kind=AlertRule.Kind.WORKER_MISSING, subject=subject,
                                  message=f"{name} answers again.")
            continue
        missing_for = now - last
        hold = rule.duration_seconds if rule else 30
        if rule is not None and missing_for >= hold:
            alert_raise(rule=rule, rule_kind=rule.kind, subject=subject, title=f"Worker missing: {name}",
                        message=f"{name} has not answered for {missing_for:.0f} s.", source=name,
                        alert_type="worker", metadata={"worker": name, "last_seen": last})


def _job_sources():
    """(subject prefix, model, progress-marker fields, label, failed rule kind, detail url) of every
    kind of job that exists in this installation."""
    from django.apps import apps

    sources = []
    from datasets.models import ProcessingJob

    sources.append(("processing_job", ProcessingJob, ("progress", "current_step"), AlertRule.Kind.JOB_FAILED))
    try:
        sources.append(("training_job", apps.get_model("training", "TrainingJob"),
                        ("progress", "stage", "current_epoch", "message"), AlertRule.Kind.TRAINING_FAILED))
    except LookupError:
        pass
    try:
        sources.append(("pipeline_run", apps.get_model("pipelines", "PipelineRun"),
                        ("progress", "current_step", "message"), AlertRule.Kind.PIPELINE_FAILED))
    except LookupError:
        pass
    return sources


def _job_label(prefix: str, job) -> str:
    if prefix == "processing_job":
        return f"{job.get_operation_display()} job #{job.pk} on {job.dataset.name}"
    if prefix == "training_job":
        return f"Training job #{job.pk} ({job.name})"
    if prefix == "pipeline_run":
        pipeline = getattr(job, "pipeline", None)
        return f"Pipeline run #{job.pk}" + (f" of {pipeline}" if pipeline else "")
    return f"Job #{job.pk}"


def job_step_text(job) -> str:
    """The last step a job reported, in words (pipeline runs keep the index of their current step)."""
    step = getattr(job, "current_step", None)
    if isinstance(step, int) and not isinstance(step, bool):
        steps = getattr(job, "steps", None) or []
        kind = steps[step].get("kind", "") if 0 <= step < len(steps) and isinstance(steps[step], dict) else ""
        text = f"step {step + 1} of {len(steps)}" + (f" ({kind.replace('_', ' ')})" if kind else "")
        message = getattr(job, "message", "")
        return f"{text}: {message}" if message else text
    for name in ("current_step", "message", "stage"):
        value = getattr(job, name, "")
        if value:
            return str(value).replace("_", " ") if name == "stage" else str(value)
    return job.status


def jobs_check(*, now: float | None = None) -> dict:
    """Alert on jobs that failed recently (once per job) and on running jobs that have reported no
    progress for the stall rule's multiple of their usual interval (resolved when they move or end)."""
    now = now or time.time()
    lookback = timezone.now() - timedelta(minutes=30)
    stall_rule, _ = _rule_for(AlertRule.Kind.JOB_STALLED)
    multiple = (stall_rule.threshold if stall_rule and stall_rule.threshold else 3.0)
    minimum = stall_rule.duration_seconds if stall_rule else 60
    running_subjects, counts = set(), {"failed": 0, "stalled": 0}
    for prefix, model, marker_fields, failed_kind in _job_sources():
        try:
            if failed_kind is not None:
                counts["failed"] += _failed_jobs_alert(prefix, model, failed_kind, lookback)
            if stall_rule is None:
                continue
            select = ("dataset",) if prefix == "processing_job" else ()
            for job in model.objects.filter(status=JobStatus.RUNNING).select_related(*select):
                subject = f"{prefix}.{job.pk}"
                running_subjects.add(subject)
                marker = "|".join(str(getattr(job, f, "")) for f in marker_fields)
                track = state.job_progress_track(subject, marker, now, settings.MONITORING_STALL_DEFAULT_INTERVAL)
                silent = now - track["changed_at"]
                allowed = max(minimum, multiple * track["usual"])
                if silent >= allowed:
                    step = job_step_text(job)
                    alert_raise(
                        rule=stall_rule, rule_kind=stall_rule.kind, subject=subject, alert_type="job",
                        title=f"Stalled: {_job_label(prefix, job)}", source=prefix, value=round(silent, 1),
                        message=f"No progress for {silent:.0f} s (usually every {track['usual']:.0f} s); "
                                f"last step reported: “{step}” at {job.progress:.0f}%.",
                        metadata={"job": subject, "last_step": step, "usual_interval": round(track["usual"], 1)},
                    )
                    counts["stalled"] += 1
                else:
                    alert_condition_clear(rule=stall_rule, subject=subject, message="Progress resumed.")
        except Exception:
            logger.exception("job checks of %s failed", prefix)
    # Jobs that stopped running (ended or reaped): forget their tracking, clear their stall alerts.
    if stall_rule is not None:
        for alert in Alert.objects.filter(rule=stall_rule).exclude(status=Alert.Status.RESOLVED):
            if alert.subject not in running_subjects:
                alert_condition_clear(rule=stall_rule, subject=alert.subject, message="The job is no longer running.")
    state.jobs_forget_except(running_subjects)
    return counts


def _failed_jobs_alert(prefix: str, model, kind: str, since) -> int:
    rule, _ = _rule_for(kind)
    if rule is None:
        return 0
    failed = model.objects.filter(status=JobStatus.FAILED, finished_at__gte=since)
    if prefix == "processing_job":
        failed = failed.select_related("dataset")
    subjects = {f"{prefix}.{job.pk}": job for job in failed}
    if not subjects:
        return 0
    # Once per job, ever: a resolved alert about a failed job stays resolved.
    already = set(Alert.objects.filter(rule_key=rule.slug, subject__in=list(subjects)).values_list("subject", flat=True))
    raised = 0
    for subject, job in subjects.items():
        if subject in already:
            continue
        error = (getattr(job, "error", "") or "").strip()
        code = getattr(job, "error_code", "")
        alert_raise(rule=rule, rule_kind=kind, subject=subject, alert_type="job", source=prefix,
                    title=f"Failed: {_job_label(prefix, job)}",
                    message=(f"[{code}] " if code else "") + (error[:900] or "The job failed."),
                    metadata={"job": subject, "error_code": code or None})
        raised += 1
    return raised


# =================================================================================================
# Rollup and retention
# =================================================================================================

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
