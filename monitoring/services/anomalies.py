"""Anomalies: the streaming decision about each sampled series (monitoring.anomaly.evaluate), and
the record of what it found."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from mlops_dashboard.events import catalog, publish_on_commit

from .. import anomaly as scoring
from .. import state
from ..models import METRICS, SEVERITY_RANK, Alert, AlertRule, Anomaly, AnomalyDetection
from .alerts import _rule_for, alert_condition_clear, alert_raise

logger = logging.getLogger(__name__)


def metric_specs() -> dict[str, scoring.MetricSpec]:
    """The per-metric table with MONITORING_ANOMALY_METRICS applied (ValueError when it is invalid)."""
    return scoring.specs(settings.MONITORING_ANOMALY_METRICS)


def anomaly_record(*, source: str, entity: str, metric: str, value: float | None, score: float, severity: str,
                   baseline: float | None = None, details: dict | None = None,
                   detection: AnomalyDetection | None = None, alert: bool = False,
                   project_id: int | None = None) -> Anomaly:
    """Store an anomaly and publish `anomaly_detected`. With `alert` (a confirmed anomaly of a metric
    whose spec alerts), a metric anomaly opens (or repeats) an alert about its series under the enabled
    anomaly rule, when its score reaches the rule's threshold (if the rule has one): priority low for a
    low anomaly, medium above, unless staff gave the rule another priority than medium."""
    # A dataset's anomalies belong to the detection's project; a host's metric anomaly is global, a
    # project's serving figure's (prediction traffic) belongs to the project.
    project_id = detection.project_id if detection else project_id
    item = Anomaly(source=source, entity=entity[:200], metric=metric[:64], value=value, score=round(float(score), 4),
                   severity=severity, baseline=baseline, details=details or {}, detection=detection,
                   project_id=project_id)
    item.full_clean()
    with transaction.atomic():
        item.save()
        publish_on_commit(catalog.AnomalyDetected(
            source=source, entity=item.entity, metric=item.metric, value=value, anomaly_score=float(item.score),
            severity=severity, anomaly_id=item.pk, baseline=baseline,
            dataset_id=detection.dataset_id if detection else None,
            detection_id=detection.pk if detection else None, project_id=item.project_id,
        ))
        if alert and source == Anomaly.Source.METRICS:
            rule, _ = _rule_for(AlertRule.Kind.ANOMALY)
            if rule is not None and (rule.threshold is None or score >= rule.threshold):
                label, unit = METRICS.get(metric, (metric, ""))
                shown = "—" if value is None else f"{value:,.1f}{unit}"
                opened = alert_raise(
                    rule=rule, rule_kind=rule.kind, subject=f"{entity}:{metric}", alert_type="anomaly", source=entity,
                    title=f"Anomaly: {label} on {entity}", value=value, project=project_id,
                    message=f"{label} {shown} is far from its recent median"
                            f"{'' if baseline is None else f' {baseline:,.1f}{unit}'} (score {score:.1f}, {severity}).",
                    priority=scoring.alert_priority(severity, rule.priority),
                    metadata={"anomaly_id": item.pk, "metric": metric, "baseline": baseline},
                )
                if opened is not None:
                    item.alert = opened
                    item.save(update_fields=["alert"])
    return item


def anomalies_check_sample(*, host: str, values: dict, open_alerts: dict | None = None) -> list[Anomaly]:
    """Decide about each host series' new value against its recent window (kept in Redis)."""
    return _check(entity=host, metrics=scoring.HOST_METRICS, values=values, open_alerts=open_alerts)


def anomalies_check_project(*, project_id: int, values: dict) -> list[Anomaly]:
    """Decide about a project's serving figures (its prediction rate): series "project.<id>", the
    anomalies and their alerts belong to the project."""
    return _check(entity=f"project.{project_id}", metrics=scoring.PROJECT_METRICS, values=values,
                  open_alerts=None, project_id=project_id)


def _check(*, entity: str, metrics, values: dict, open_alerts: dict | None,
           project_id: int | None = None) -> list[Anomaly]:
    streamed = {m: float(values[m]) for m in metrics if values.get(m) is not None}
    if not streamed:
        return []
    try:
        windows = state.windows_push(entity, streamed)
    except Exception:
        logger.warning("anomaly windows unavailable (Redis)", exc_info=True)
        return []
    table = metric_specs()
    found = []
    rule, _ = _rule_for(AlertRule.Kind.ANOMALY)
    for metric, value in streamed.items():
        subject = f"{entity}:{metric}"
        spec = table.get(metric, scoring.DEFAULT_SPEC)
        open_alert = None
        if rule is not None:
            if open_alerts is None:
                open_alert = (Alert.objects.filter(rule_key=rule.slug, subject=subject)
                              .exclude(status=Alert.Status.RESOLVED).first())
            else:
                open_alert = open_alerts.get((rule.slug, subject))
        opened = (open_alert.metadata or {}).get("baseline") if open_alert is not None else None
        verdict = scoring.evaluate(metric, windows.get(metric, []), value, table=table,
                                   threshold=settings.MONITORING_ANOMALY_THRESHOLD,
                                   min_samples=settings.MONITORING_ANOMALY_MIN_SAMPLES,
                                   opened=None if opened is None else float(opened))
        if open_alert is not None and (verdict.cleared or (opened is None and not verdict.confirmed)):
            label, unit = METRICS.get(metric, (metric, ""))
            alert_condition_clear(rule=rule, subject=subject,
                                  message=f"{label} is back in its usual range ({value:,.1f}{unit}).")
            continue
        if not verdict.confirmed:
            continue
        if not state.anomaly_gate(subject, SEVERITY_RANK[verdict.severity], settings.MONITORING_ANOMALY_COOLDOWN):
            continue
        result = verdict.score
        found.append(anomaly_record(
            source=Anomaly.Source.METRICS, entity=entity, metric=metric, value=value, score=result.score,
            severity=verdict.severity, baseline=round(result.median, 4), project_id=project_id,
            alert=spec.alerts,
            details={"scale": round(result.scale, 4), "window": len(windows.get(metric, [])),
                     "agreeing": verdict.agreeing, "of": spec.of, "direction": spec.direction},
        ))
    return found
