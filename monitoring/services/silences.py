"""Silences, snoozes and maintenance windows: what holds an alert back from being notified."""

from __future__ import annotations

from django.utils import timezone

from .. import silencing
from ..models import MaintenanceWindow, Silence


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
