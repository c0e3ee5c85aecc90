"""What a notification says: a subject short enough for a phone, and a body that tells what, where,
since when and what to do, with a link to the alert's page."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from ..models import Alert, Notification

SUBJECT_MAX = 78  # one line of a phone's lock screen


def alert_url(alert: Alert) -> str:
    """The alert's page, absolute (SITE_URL): what every message links to."""
    return f"{settings.SITE_URL.rstrip('/')}{reverse('monitoring:alert-detail', args=[alert.pk])}"


def _subject(text: str) -> str:
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 1].rstrip() + "…"


def render(notification: Notification, alerts: list[Alert]) -> tuple[str, str]:
    """(subject, body) of a notification about these alerts (none for a test)."""
    if notification.kind == Notification.Kind.TEST:
        return (notification.title or "Test notification",
                notification.body or f"A test from the MLOps dashboard ({settings.SITE_URL}).")
    first = alerts[0]
    tag = {"resolved": "RESOLVED", "repeat": "STILL OPEN"}.get(notification.kind, notification.priority.upper())
    extra = f" (+{len(alerts) - 1} more)" if len(alerts) > 1 else ""
    subject = _subject(f"[{tag}] {first.title}{extra}")
    lines = []
    if notification.kind == Notification.Kind.PERSONAL:
        lines += ["A job you started failed (you asked to hear of it: "
                  f"{settings.SITE_URL.rstrip('/')}{reverse('account-notifications')}).", ""]
    elif notification.kind == Notification.Kind.RESOLVED:
        lines += [f"Resolved{' automatically' if first.auto_resolved else ''}: "
                  f"{first.resolution_note or 'the alert was resolved.'}", ""]
    for alert in alerts:
        lines += [
            f"{alert.title}",
            f"What: {alert.message or alert.title}",
            f"Where: {alert.subject}" + (f" (project {alert.project.name})" if alert.project_id else ""),
            f"Since: {alert.created_at:%Y-%m-%d %H:%M:%S} UTC",
        ]
        if alert.suggested_actions:
            lines.append("What to do:")
            lines += [f"- {action}" for action in alert.suggested_actions]
        lines += [f"Open: {alert_url(alert)}", ""]
    return subject, "\n".join(lines).strip()
