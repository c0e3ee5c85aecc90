"""Alert rules and alerts: raising, repeating, clearing, acknowledging and resolving them."""

from __future__ import annotations

import logging
import time

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from mlops_dashboard import permissions
from mlops_dashboard.activity import activity_record
from mlops_dashboard.audit import audit_record, changes_summary
from mlops_dashboard.events import catalog, publish_on_commit

from .. import defaults, state
from ..models import METRICS, PRIORITY_RANK, PROJECT_METRICS, SYSTEM_METRICS, Alert, AlertRule, Priority
from ..payloads import alert_payload
from . import notifications

logger = logging.getLogger(__name__)


class Conflict(Exception):
    """The request is valid but the object's state does not allow it (the API answers 409)."""


# =================================================================================================
# Alert rules and alerts
# =================================================================================================


def _announce_alert(alert: Alert) -> None:
    # A job's alert goes to its project's members only; a system alert (no project) to every socket.
    publish_on_commit(catalog.SystemAlert(alert=alert_payload(alert), project_id=alert.project_id))


def _project_id(project) -> int | None:
    return getattr(project, "pk", project)


def alert_rules_install_defaults() -> int:
    """Create the default rules that are missing (a fresh or flushed database). Returns how many."""
    return defaults.install(AlertRule)


def _rule_for(rule_kind: str, project_id: int | None = None) -> tuple[AlertRule | None, bool]:
    """(the first enabled rule of this kind, whether any rule of the kind exists). About a project's
    object, the project's own rules of the kind take the place of the global ones when it has any
    (so its maintainers may tune or silence them for their project, never for the others)."""
    rules = []
    if project_id is not None:
        rules = list(AlertRule.objects.filter(kind=rule_kind, project_id=project_id).order_by("id"))
    if not rules:
        rules = list(AlertRule.objects.filter(kind=rule_kind, project__isnull=True).order_by("id"))
    enabled = next((r for r in rules if r.enabled), None)
    return enabled, bool(rules)


def alert_raise(*, rule_kind: str, subject: str, title: str, message: str = "", priority: str | None = None,
                alert_type: str | None = None, source: str = "", value: float | None = None,
                suggested_actions: list[str] | None = None, metadata: dict | None = None,
                rule: AlertRule | None = None, project=None) -> Alert | None:
    """Open an alert about `subject` under the rule of `rule_kind` (one of AlertRule.Kind), or repeat it.

    - At most one unresolved alert exists per (rule, subject): a repeat while one is open or
      acknowledged updates it (message, value, occurrences, last_seen_at, and a higher priority) and
      publishes nothing; otherwise a new alert opens and `system_alert` is published on commit.
    - The rule is the first enabled AlertRule of that kind (or `rule`); its priority and suggested
      actions are the defaults. When rules of that kind exist but all are disabled, nothing is raised
      and None is returned. A kind without any rule still raises (deduplicated by kind and subject).
    - `project` (a Project or its id): the alert is about that project's object (a job) and belongs
      to it: only its members see it, its editors acknowledge it. None: a system alert, global.
    """
    project_id = _project_id(project)
    if project_id is None and rule is not None:
        project_id = rule.project_id
    if rule is None:
        if rule_kind not in AlertRule.Kind.values:
            raise ValidationError({"rule_kind": f"{rule_kind!r} is not an alert rule kind."})
        rule, exists = _rule_for(rule_kind, project_id)
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
        alert = Alert(rule=rule, rule_key=rule_key, subject=subject[:200], last_seen_at=now, project_id=project_id,
                      **fields)
        alert.full_clean(validate_constraints=False)
        try:
            with transaction.atomic():
                alert.save()
        except IntegrityError:  # another process opened it between our read and our write
            existing = _unresolved(rule_key, subject)
            if existing is None:
                raise
            return _alert_repeat(existing, fields, now)
        notifications.alert_opened(alert)
        _announce_alert(alert)
        activity_record(
            title=f"Alert: {alert.title}", action_type="alert", status="open", description=message[:1000],
            severity_level={"critical": "critical", "high": "error", "medium": "warning"}.get(priority, "info"),
            metadata={"alert_id": alert.pk, "subject": alert.subject, "rule": rule_key}, project=project_id,
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
        keys = [*AlertRule.objects.filter(kind=rule_kind).values_list("slug", flat=True), f"kind:{rule_kind}"]
    alert = Alert.objects.filter(rule_key__in=keys, subject=subject[:200]).exclude(status=Alert.Status.RESOLVED).first()
    if alert is None:
        return None
    return _alert_resolve(alert, user=None, note=message, auto=True)


def alert_acknowledge(*, alert: Alert, user) -> Alert:
    """A person saw it: a project's alert needs its editor role, a system alert staff (403 naming
    the role; 404 when the alert is another project's)."""
    permissions.authorize(user, "acknowledge", alert)
    with transaction.atomic():
        updated = Alert.objects.filter(pk=alert.pk, status=Alert.Status.OPEN).update(
            status=Alert.Status.ACKNOWLEDGED, acknowledged_by=user, acknowledged_at=timezone.now())
        alert.refresh_from_db()
        if not updated:
            raise Conflict(f"The alert is {alert.status}; only an open alert can be acknowledged.")
        _announce_alert(alert)
        audit_record(user=user, action="acknowledge", obj=alert, summary="status: open → acknowledged")
        activity_record(title=f"Alert acknowledged: {alert.title}", action_type="alert_acknowledge", user=user,
                        metadata={"alert_id": alert.pk}, project=alert.project_id)
    return alert


def alert_resolve(*, alert: Alert, user, note: str = "") -> Alert:
    """Resolve by hand: the same rights as acknowledging."""
    permissions.authorize(user, "acknowledge", alert)
    return _alert_resolve(alert, user=user, note=note, auto=False)


def _alert_resolve(alert: Alert, *, user, note: str, auto: bool) -> Alert:
    with transaction.atomic():
        was = Alert.objects.filter(pk=alert.pk).values_list("status", flat=True).first()
        updated = Alert.objects.filter(pk=alert.pk).exclude(status=Alert.Status.RESOLVED).update(
            status=Alert.Status.RESOLVED, resolved_by=user if getattr(user, "is_authenticated", False) else None,
            resolved_at=timezone.now(), auto_resolved=auto, resolution_note=note[:500])
        alert.refresh_from_db()
        if not updated:
            raise Conflict("The alert is already resolved.")
        notifications.alert_resolved(alert)
        _announce_alert(alert)
        if not auto:  # a person's write; the system's clearing is the alert's own life
            audit_record(user=user, action="resolve", obj=alert,
                         summary=f"status: {was} → resolved" + (f"; note: {note[:200]}" if note else ""))
        activity_record(
            title=f"Alert {'cleared' if auto else 'resolved'}: {alert.title}", action_type="alert_resolve",
            user=user, description=note[:500], severity_level="success",
            metadata={"alert_id": alert.pk, "auto": auto}, project=alert.project_id,
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
               "description", "suggested_actions", "repeat_interval_minutes", "channels")
MAX_RULE_CHANNELS = 20


def _rule_channels(project_id: int | None, channels) -> list:
    """The channels a rule names (ids or channels), each in its scope: a project's rule may name its
    project's channels and the global ones, a global rule the global ones only (400 naming `channels`;
    another project's channel is as unknown as a missing one)."""
    from ..models import NotificationChannel

    ids = []
    for item in channels or []:
        pk = getattr(item, "pk", item)
        if isinstance(pk, bool) or not isinstance(pk, int):
            raise ValidationError({"channels": "A list of channel ids."})
        if pk not in ids:
            ids.append(pk)
    if len(ids) > MAX_RULE_CHANNELS:
        raise ValidationError({"channels": f"At most {MAX_RULE_CHANNELS} channels."})
    found = {c.pk: c for c in NotificationChannel.objects.filter(pk__in=ids)}
    unknown = [pk for pk in ids if pk not in found]
    if unknown:
        raise ValidationError({"channels": f"No notification channel with id {unknown[0]}."})
    outside = [c for c in found.values() if c.project_id is not None and c.project_id != project_id]
    if outside:
        where = "global channels only" if project_id is None else "its project's channels and the global ones"
        if project_id is None:
            # A global rule naming a project's channel: the channel exists but is out of scope.
            raise ValidationError({"channels": f"“{outside[0].name}” is a project's channel; a global rule "
                                               f"may name {where}."})
        raise ValidationError({"channels": f"No notification channel with id {outside[0].pk} in this rule's scope "
                                           f"(a project's rule may name {where})."})
    return [found[pk] for pk in ids]


def _rule_authorize(user, rule: AlertRule) -> None:
    """A global rule is staff's (403 naming admin), a project's rule its maintainers' (`manage`);
    a rule of a project the user cannot see is a 404."""
    permissions.authorize(user, "change" if rule.project_id is None else "manage", rule)


def _rule_values(rule: AlertRule) -> dict:
    return {"name": rule.name, "condition": rule.condition, "priority": rule.priority, "enabled": rule.enabled,
            "description": rule.description, "suggested_actions": rule.suggested_actions,
            "repeat_interval_minutes": rule.repeat_interval_minutes,
            "channels": sorted(c.name for c in rule.channels.all()) if rule.pk else []}


def alert_rule_create(*, user, project=None, slug: str = "", **fields) -> AlertRule:
    """A new rule: global (`project` None, staff only) or of a project (its maintainers)."""
    from django.utils.text import slugify

    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise ValidationError({f: "Unknown field." for f in unknown})
    project_id = _project_id(project)
    if project_id is None and user is not None and not permissions.is_admin(user):
        raise PermissionDenied("Global alert rules need an admin (staff) account; give `project` to make a rule "
                               "of one of your projects (its maintainers manage them).")
    _rule_authorize(user, AlertRule(project_id=project_id))
    channels = _rule_channels(project_id, fields.pop("channels", None))
    base = slugify(slug or fields.get("name", ""))[:56] or "rule"
    candidate, n = base, 1
    while AlertRule.objects.filter(slug=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    rule = AlertRule(slug=candidate, project_id=project_id, **fields)
    rule.full_clean()
    with transaction.atomic():
        rule.save()
        rule.channels.set(channels)
        audit_record(user=user, action="create", obj=rule, summary=rule.condition)
        activity_record(title=f"Alert rule created: {rule.name}", action_type="alert_rule", user=user,
                        description=rule.condition, metadata={"rule_id": rule.pk}, project=project_id)
    return rule


def alert_rule_update(*, rule: AlertRule, user, **fields) -> AlertRule:
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise ValidationError({f: "Unknown field." for f in unknown})
    _rule_authorize(user, rule)
    channels = _rule_channels(rule.project_id, fields.pop("channels")) if "channels" in fields else None
    before = _rule_values(rule)
    was_enabled = rule.enabled
    for name, value in fields.items():
        setattr(rule, name, value)
    rule.full_clean()
    with transaction.atomic():
        rule.save()
        if channels is not None:
            rule.channels.set(channels)
        after = _rule_values(rule)
        changed = {k for k in after if before.get(k) != after[k]}
        verb = "updated"
        if changed == {"enabled"}:
            verb = "enabled" if rule.enabled else "disabled"
        audit_record(user=user, action={"enabled": "enable", "disabled": "disable"}.get(verb, "update"), obj=rule,
                     summary=changes_summary(before, after))
        activity_record(title=f"Alert rule {verb}: {rule.name}", action_type="alert_rule", user=user,
                        description=rule.condition, metadata={"rule_id": rule.pk, "enabled": rule.enabled},
                        project=rule.project_id)
        if was_enabled and not rule.enabled:
            for alert in Alert.objects.filter(rule=rule).exclude(status=Alert.Status.RESOLVED):
                _alert_resolve(alert, user=user, note="Its rule was disabled.", auto=True)
    return rule


def alert_rule_set_enabled(*, rule: AlertRule, enabled: bool, user) -> AlertRule:
    return alert_rule_update(rule=rule, user=user, enabled=enabled)


def alert_rule_delete(*, rule: AlertRule, user) -> None:
    """Delete a rule; its open alerts are resolved first (their rows stay, without the rule)."""
    _rule_authorize(user, rule)
    with transaction.atomic():
        for alert in Alert.objects.filter(rule=rule).exclude(status=Alert.Status.RESOLVED):
            _alert_resolve(alert, user=user, note="Its rule was deleted.", auto=True)
        audit_record(user=user, action="delete", obj=rule, summary=rule.condition)
        activity_record(title=f"Alert rule deleted: {rule.name}", action_type="alert_rule", user=user,
                        description=rule.condition, metadata={"rule_id": rule.pk}, project=rule.project_id)
        rule.delete()


def _metric_text(metric: str, value) -> str:
    label, unit = METRICS.get(metric, (metric, ""))
    if value is None:
        return f"{label} unknown"
    return f"{label} {float(value):,.1f}{unit}"


def _check_metric_rules(rules, *, subject_for, values: dict, source: str, open_alerts: dict | None,
                        project_id: int | None = None) -> None:
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
                            value=float(value), source=source, alert_type="resource", project=project_id,
                            metadata={"metric": rule.metric, "held_seconds": round(held, 1)})
        else:
            state.condition_clear(rule.slug, subject)
            if open_alerts is None or (rule.slug, subject) in open_alerts:
                alert_condition_clear(rule=rule, subject=subject,
                                      message=f"{_metric_text(rule.metric, value)}: back within {rule.condition}.")


def alert_rules_check_metrics(*, host: str, values: dict, open_alerts: dict | None = None) -> None:
    """Metric rules about one host (CPU, memory, disk, load, network): alert when the condition has
    held for the rule's duration, resolve automatically when it no longer holds."""
    rules = [r for r in AlertRule.objects.filter(kind=AlertRule.Kind.METRIC, enabled=True, project__isnull=True)
             if r.metric not in SYSTEM_METRICS | PROJECT_METRICS]
    _check_metric_rules(rules, subject_for=lambda r: host, values=values, source=host, open_alerts=open_alerts)


def alert_rules_check_system(*, values: dict) -> None:
    """Metric rules about the whole system (API latency, sockets): subject "system"."""
    rules = [r for r in AlertRule.objects.filter(kind=AlertRule.Kind.METRIC, enabled=True, project__isnull=True)
             if r.metric in SYSTEM_METRICS]
    _check_metric_rules(rules, subject_for=lambda r: "system", values=values, source="system", open_alerts=None)


def alert_rules_check_project(*, project_id: int, values: dict) -> None:
    """Metric rules about one project's serving model (prediction rate, accuracy): the global ones
    and the project's own, subject "project.<id>"; their alerts belong to the project."""
    from django.db.models import Q

    rules = AlertRule.objects.filter(Q(project__isnull=True) | Q(project_id=project_id),
                                     kind=AlertRule.Kind.METRIC, enabled=True, metric__in=sorted(PROJECT_METRICS))
    _check_metric_rules(list(rules), subject_for=lambda r: f"project.{project_id}", values=values,
                        source=f"project.{project_id}", open_alerts=None, project_id=project_id)
