"""Silences, snoozes and maintenance windows: what holds an alert back from being notified.

- A silence holds from `starts_at` to `ends_at` (at most SILENCE_MAX_DAYS long) for the alerts
  matching all its matchers; a snooze is a silence made for one alert (its rule, subject and
  project), at most SNOOZE_MAX_MINUTES. A maintenance window holds from each time its cron fires,
  for `duration_minutes` (1..MAINTENANCE_MAX_MINUTES).
- Whose it is (`project`): the `project` matcher's, or the project of the rule its `rule` matcher
  names; otherwise it is global. A project's silence always carries its `project` matcher (added
  when only the rule named it), so it never holds another project's or a system alert back.
  Global ones are staff's, a project's its maintainers' (`manage`; 404 when the project is invisible).
- Held-back alerts are still recorded and shown as silenced (`Alert.silence`, `silenced_until`):
  creating a silence marks the matching unresolved alerts at once, expiring one early clears them
  (another silence or window may still hold them); each change publishes `system_alert`.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from mlops_dashboard import permissions
from mlops_dashboard.activity import activity_record
from mlops_dashboard.audit import audit_record, changes_summary
from mlops_dashboard.events import catalog, publish_on_commit
from mlops_dashboard.models import Project

from .. import silencing
from ..models import Alert, AlertRule, MaintenanceWindow, Silence
from ..payloads import alert_payload

SILENCE_MAX_DAYS = 90
SNOOZE_MAX_MINUTES = 7 * 24 * 60
MAINTENANCE_MAX_MINUTES = 7 * 24 * 60
COMMENT_MAX = 500
# How many unresolved alerts a new or ended silence re-marks at once (the rest at their next check).
REMARK_LIMIT = 500


class Conflict(Exception):
    """The silence's state does not allow it (already expired): the API answers 409."""


def silence_for(*, rule: str, priority: str, subject: str, project_id: int | None, now=None):
    """(the silence, when it ends) of the first active silence or maintenance window matching an alert
    (the silence is None for a window), or None when nothing holds it back."""
    now = now or timezone.now()
    for silence in Silence.objects.filter(starts_at__lte=now, ends_at__gt=now).order_by("-ends_at"):
        if silencing.matches(silence.matchers, rule=rule, priority=priority, subject=subject, project_id=project_id):
            return silence, silence.ends_at
    for window in MaintenanceWindow.objects.filter(enabled=True):
        if silencing.matches(window.matchers, rule=rule, priority=priority, subject=subject, project_id=project_id):
            until = silencing.window_active(window.cron, window.duration_minutes, now)
            if until is not None:
                return None, until
    return None


# --- whose it is ---------------------------------------------------------------------------------------


def _owned_matchers(user, raw) -> tuple[dict, int | None]:
    """The cleaned matchers (with the `project` matcher a project's silence always carries) and the
    project they belong to; ValidationError naming the matcher, Http404 for an invisible project."""
    try:
        matchers = silencing.clean_matchers(raw)
    except silencing.InvalidMatchers as exc:
        raise ValidationError({"matchers": [f"{k}: {v}" if k != "matchers" else v for k, v in exc.errors.items()]})
    project_id = matchers.get("project")
    rule = AlertRule.objects.filter(slug=matchers["rule"]).first() if "rule" in matchers else None
    if rule is not None and rule.project_id is not None:
        if not permissions.can_see(user, rule):
            raise Http404("No such alert rule.")
        if project_id is not None and project_id != rule.project_id:
            raise ValidationError({"matchers": [f"project: the rule {rule.slug} is project {rule.project_id}'s, "
                                                f"not {project_id}'s; leave `project` out or name its own."]})
        project_id = rule.project_id
    if project_id is not None:
        if not Project.objects.filter(pk=project_id).exists():
            if permissions.is_admin(user):
                raise ValidationError({"matchers": [f"project: no project with id {project_id}."]})
            raise Http404("No such project.")
        matchers["project"] = project_id
    return matchers, project_id


def _authorize(user, obj) -> None:
    """Global ones are staff's (403 naming admin); a project's, its maintainers' (404 when invisible)."""
    permissions.authorize(user, "manage", obj)


# --- the alerts they hold back ----------------------------------------------------------------------------


def _remark(alerts, now=None) -> int:
    """Recompute what holds each of these unresolved alerts back now; publish the ones that changed.
    An open alert no silence holds any more and that was never notified (it opened silenced) is
    notified now, like an alert that opens (its repeats and resolution follow)."""
    from .notifications import alert_opened  # notifications imports this module

    now = now or timezone.now()
    changed = 0
    for alert in alerts.exclude(status=Alert.Status.RESOLVED).select_related("rule", "acknowledged_by",
                                                                                "resolved_by")[:REMARK_LIMIT]:
        held = silence_for(rule=alert.rule_key, priority=alert.priority, subject=alert.subject,
                           project_id=alert.project_id, now=now)
        silence, until = held if held else (None, None)
        if (alert.silence_id, alert.silenced_until) == (getattr(silence, "pk", None), until):
            continue
        Alert.objects.filter(pk=alert.pk).update(silence=silence, silenced_until=until)
        alert.silence, alert.silenced_until = silence, until
        if until is None and alert.status == Alert.Status.OPEN and alert.last_notified_at is None:
            alert_opened(alert)
        publish_on_commit(catalog.SystemAlert(alert=alert_payload(alert), project_id=alert.project_id))
        changed += 1
    return changed


def silences_sweep(*, now=None, lookback: timedelta = timedelta(minutes=10)) -> int:
    """Beat's part (from notifications_sweep): mark the alerts of silences that started lately and of
    maintenance windows that hold now, and unmark those whose silence or window has ended (an open
    one that was never notified is notified then). Returns how many alerts changed."""
    now = now or timezone.now()
    changed = 0
    with transaction.atomic():
        changed += _remark(Alert.objects.filter(silenced_until__isnull=False, silenced_until__lte=now), now)
        for silence in Silence.objects.filter(starts_at__lte=now, starts_at__gt=now - lookback, ends_at__gt=now):
            changed += _remark(_matching(silence.matchers, silence.project_id).filter(silence__isnull=True), now)
        for window in MaintenanceWindow.objects.filter(enabled=True):
            if silencing.window_active(window.cron, window.duration_minutes, now) is not None:
                changed += _remark(_matching(window.matchers, window.project_id).filter(
                    silence__isnull=True, silenced_until__isnull=True), now)
    return changed


def _candidates(project_id: int | None):
    rows = Alert.objects.exclude(status=Alert.Status.RESOLVED)
    return rows.filter(project_id=project_id) if project_id is not None else rows


def _matching(matchers: dict, project_id: int | None):
    ids = [a.pk for a in _candidates(project_id).only("pk", "rule_key", "priority", "subject", "project_id")
           .order_by("-last_seen_at")[:REMARK_LIMIT * 4]
           if silencing.matches(matchers, rule=a.rule_key, priority=a.priority, subject=a.subject,
                                project_id=a.project_id)]
    return Alert.objects.filter(pk__in=ids[:REMARK_LIMIT])


def _describe(matchers: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in matchers.items())


# --- silences and snoozes --------------------------------------------------------------------------------------


def _when(value, field: str):
    if value is None:
        return None
    if timezone.is_naive(value):
        raise ValidationError({field: "A date and time with its timezone (e.g. 2026-01-01T12:00:00Z)."})
    return value


def silence_create(*, user, matchers, ends_at, starts_at=None, comment: str = "",
                   kind: str = Silence.Kind.SILENCE) -> Silence:
    """A silence from `starts_at` (default now; a past time counts as now) to `ends_at` (in the future,
    after the start, at most SILENCE_MAX_DAYS later). 400 naming the field; 403/404 as `_authorize`."""
    cleaned, project_id = _owned_matchers(user, matchers)
    _authorize(user, Silence(project_id=project_id))  # before saying anything about the rest
    now = timezone.now()
    starts_at, ends_at = _when(starts_at, "starts_at"), _when(ends_at, "ends_at")
    if ends_at is None:
        raise ValidationError({"ends_at": "When the silence ends."})
    start = max(starts_at or now, now)
    errors = {}
    if ends_at <= now:
        errors["ends_at"] = "The end is in the past: a silence ends in the future."
    elif ends_at <= start:
        errors["ends_at"] = "The end comes after the start."
    elif ends_at - start > timedelta(days=SILENCE_MAX_DAYS):
        errors["ends_at"] = f"A silence lasts at most {SILENCE_MAX_DAYS} days; use a maintenance window for longer."
    if start - now > timedelta(days=SILENCE_MAX_DAYS):
        errors["starts_at"] = f"A silence starts within {SILENCE_MAX_DAYS} days."
    if not isinstance(comment, str) or len(comment) > COMMENT_MAX:
        errors["comment"] = f"At most {COMMENT_MAX} characters."
    if errors:
        raise ValidationError(errors)
    silence = Silence(kind=kind, matchers=cleaned, project_id=project_id, starts_at=start, ends_at=ends_at,
                      comment=comment.strip(), created_by=user if getattr(user, "is_authenticated", False) else None)
    _authorize(user, silence)
    silence.full_clean()
    with transaction.atomic():
        silence.save()
        until = f"{silence.ends_at:%Y-%m-%d %H:%M} UTC"
        audit_record(user=user, action="create", obj=silence,
                     summary=f"{silence.get_kind_display().lower()} {_describe(cleaned)} until {until}")
        activity_record(title=f"{silence.get_kind_display()}: {_describe(cleaned)}"[:200], action_type="silence",
                        user=user, description=f"Until {until}. {silence.comment}".strip(),
                        metadata={"silence_id": silence.pk, "kind": kind}, project=project_id)
        if silence.is_active(now):
            _remark(_matching(cleaned, project_id))
    return silence


def silence_expire(*, user, silence: Silence) -> Silence:
    """End it now (the row stays, expired); the alerts it held are shown unsilenced again unless
    another silence holds them. 409 when it has already ended."""
    _authorize(user, silence)
    now = timezone.now()
    with transaction.atomic():
        locked = Silence.objects.select_for_update().get(pk=silence.pk)
        if locked.ends_at <= now:
            raise Conflict(f"The {locked.get_kind_display().lower()} already ended at "
                           f"{locked.ends_at:%Y-%m-%d %H:%M} UTC.")
        was = locked.state
        locked.ends_at = now
        if locked.starts_at > now:  # a pending one never started
            locked.starts_at = now
        locked.save(update_fields=["ends_at", "starts_at"])
        audit_record(user=user, action="expire", obj=locked, summary=f"{was} → expired; {_describe(locked.matchers)}")
        activity_record(title=f"{locked.get_kind_display()} ended: {_describe(locked.matchers)}"[:200],
                        action_type="silence", user=user, metadata={"silence_id": locked.pk},
                        project=locked.project_id)
        _remark(Alert.objects.filter(silence=locked))
    return locked


def alert_snooze(*, user, alert: Alert, minutes: int) -> Silence:
    """A snooze of one alert: a silence of its rule, subject (exactly) and project, for 1..7 days."""
    _authorize(user, Silence(project_id=alert.project_id))
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= SNOOZE_MAX_MINUTES:
        raise ValidationError({"minutes": f"From 1 to {SNOOZE_MAX_MINUTES} minutes (7 days)."})
    if alert.status == Alert.Status.RESOLVED:
        permissions.authorize(user, "view", alert)
        raise Conflict("The alert is resolved: there is nothing to snooze.")
    subject = alert.subject.replace("[", "[[]").replace("*", "[*]").replace("?", "[?]")
    matchers = {"rule": alert.rule_key, "subject": subject}
    if alert.project_id is not None:
        matchers["project"] = alert.project_id
    if alert.project_id is None and alert.rule_id is not None and alert.rule.project_id is not None:
        matchers["project"] = alert.rule.project_id
    return silence_create(user=user, matchers=matchers, ends_at=timezone.now() + timedelta(minutes=minutes),
                          comment=f"Snoozed for {minutes} min: {alert.title}"[:COMMENT_MAX], kind=Silence.Kind.SNOOZE)


# --- maintenance windows -----------------------------------------------------------------------------------------


def window_errors(cron, duration_minutes, comment) -> dict:
    errors = {}
    try:
        silencing.parse_cron(cron if isinstance(cron, str) else "")
    except ValueError as exc:
        errors["cron"] = str(exc)
    if isinstance(duration_minutes, bool) or not isinstance(duration_minutes, int) \
            or not 1 <= duration_minutes <= MAINTENANCE_MAX_MINUTES:
        errors["duration_minutes"] = f"From 1 to {MAINTENANCE_MAX_MINUTES} minutes (7 days)."
    if not isinstance(comment, str) or len(comment) > COMMENT_MAX:
        errors["comment"] = f"At most {COMMENT_MAX} characters."
    return errors


def _window_values(window: MaintenanceWindow) -> dict:
    return {"matchers": _describe(window.matchers), "cron": window.cron, "duration_minutes": window.duration_minutes,
            "comment": window.comment, "enabled": window.enabled}


def maintenance_window_create(*, user, matchers, cron: str, duration_minutes: int, comment: str = "",
                              enabled: bool = True) -> MaintenanceWindow:
    cleaned, project_id = _owned_matchers(user, matchers)
    _authorize(user, MaintenanceWindow(project_id=project_id))
    errors = window_errors(cron, duration_minutes, comment)
    if errors:
        raise ValidationError(errors)
    window = MaintenanceWindow(matchers=cleaned, project_id=project_id, cron=" ".join(cron.split()),
                               duration_minutes=duration_minutes, comment=comment.strip(), enabled=bool(enabled),
                               created_by=user if getattr(user, "is_authenticated", False) else None)
    _authorize(user, window)
    window.full_clean()
    with transaction.atomic():
        window.save()
        audit_record(user=user, action="create", obj=window,
                     summary=f"{window.cron} for {window.duration_minutes} min: {_describe(cleaned)}")
        activity_record(title=f"Maintenance window: {window.cron} for {window.duration_minutes} min"[:200],
                        action_type="maintenance_window", user=user, description=_describe(cleaned),
                        metadata={"window_id": window.pk}, project=project_id)
        _remark(_matching(cleaned, project_id))
    return window


WINDOW_FIELDS = ("matchers", "cron", "duration_minutes", "comment", "enabled")


def maintenance_window_update(*, user, window: MaintenanceWindow, **fields) -> MaintenanceWindow:
    unknown = set(fields) - set(WINDOW_FIELDS)
    if unknown:
        raise ValidationError({f: "Unknown field." for f in unknown})
    _authorize(user, window)
    before = _window_values(window)
    old_project = window.project_id
    if "matchers" in fields:
        window.matchers, window.project_id = _owned_matchers(user, fields["matchers"])
        if window.project_id != old_project:
            _authorize(user, window)  # moving it needs the right on both sides
    cron = fields.get("cron", window.cron)
    errors = window_errors(cron, fields.get("duration_minutes", window.duration_minutes),
                            fields.get("comment", window.comment))
    if errors:
        window.refresh_from_db()
        raise ValidationError(errors)
    window.cron = " ".join(cron.split())
    window.duration_minutes = fields.get("duration_minutes", window.duration_minutes)
    window.comment = fields.get("comment", window.comment).strip()
    window.enabled = bool(fields.get("enabled", window.enabled))
    window.full_clean()
    with transaction.atomic():
        window.save()
        audit_record(user=user, action="update", obj=window, summary=changes_summary(before, _window_values(window)))
        activity_record(title=f"Maintenance window updated: {window.cron}"[:200], action_type="maintenance_window",
                        user=user, metadata={"window_id": window.pk}, project=window.project_id)
        _remark(_candidates(window.project_id if window.project_id == old_project else None).filter(silence__isnull=True))
    return window


def maintenance_window_delete(*, user, window: MaintenanceWindow) -> None:
    _authorize(user, window)
    with transaction.atomic():
        audit_record(user=user, action="delete", obj=window,
                     summary=f"{window.cron} for {window.duration_minutes} min: {_describe(window.matchers)}")
        activity_record(title=f"Maintenance window deleted: {window.cron}"[:200], action_type="maintenance_window",
                        user=user, metadata={"window_id": window.pk}, project=window.project_id)
        project_id = window.project_id
        window.delete()
        _remark(_candidates(project_id).filter(silence__isnull=True, silenced_until__isnull=False))


def silences_visible(*, user, state: str | None = None, project=None, limit: int = 0):
    """The silences the user may read (global ones and their projects'), newest first; `state`:
    active, pending or expired."""
    now = timezone.now()
    rows = permissions.visible(Silence.objects.select_related("created_by", "project"), user, include_global=True)
    if project is not None:
        rows = rows.filter(project_id=getattr(project, "pk", project))
    if state == "active":
        rows = rows.filter(starts_at__lte=now, ends_at__gt=now)
    elif state == "pending":
        rows = rows.filter(starts_at__gt=now)
    elif state == "expired":
        rows = rows.filter(ends_at__lte=now)
    rows = rows.order_by("-starts_at", "-id")
    return rows[:limit] if limit else rows

