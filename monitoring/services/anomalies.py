"""Anomalies: the streaming score of each sampled series, and the record of what it found."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from mlops_dashboard.events import catalog, publish_on_commit

from .. import anomaly as scoring
from .. import state
from ..models import METRICS, SEVERITY_RANK, AlertRule, Anomaly, AnomalyDetection, Priority
from .alerts import _rule_for, alert_condition_clear, alert_raise

logger = logging.getLogger(__name__)


def anomaly_record(*, source: str, entity: str, metric: str, value: float | None, score: float, severity: str,
                   baseline: float | None = None, details: dict | None = None,
                   detection: AnomalyDetection | None = None) -> Anomaly:
    """Store an anomaly and publish `anomaly_detected`; a severe metric anomaly (score at or above the
    enabled anomaly rule's threshold) opens an alert about its series."""
    # A dataset's anomalies belong to the detection's project; a metric anomaly (a host's) is global.
    item = Anomaly(source=source, entity=entity[:200], metric=metric[:64], value=value, score=round(float(score), 4),
                   severity=severity, baseline=baseline, details=details or {}, detection=detection,
                   project_id=detection.project_id if detection else None)
    item.full_clean()
    with transaction.atomic():
        item.save()
        publish_on_commit(catalog.AnomalyDetected(
            source=source, entity=item.entity, metric=item.metric, value=value, anomaly_score=float(item.score),
            severity=severity, anomaly_id=item.pk, baseline=baseline,
            dataset_id=detection.dataset_id if detection else None,
            detection_id=detection.pk if detection else None, project_id=item.project_id,
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
