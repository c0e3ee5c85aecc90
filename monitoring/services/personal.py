"""The personal route: "notify me when my jobs fail".

A user who opted in (NotificationPreference.my_jobs_failed) and has an email address hears of the
failure of a job they created (processing, training, pipeline run, anomaly detection: the alerts
`job_failed_alert` opens, whose metadata carries the job's `created_by_id`), by email through the first enabled global
email channel (mailto:// or mailtos://), the delivery's recipient swapped for theirs. Silences hold
it back like any other notification. The channel's minimum priority and default route do not apply:
the person asked for it.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.db import transaction

from mlops_dashboard.audit import audit_record

from ..models import Alert, AlertRule, Notification, NotificationChannel, NotificationPreference

logger = logging.getLogger(__name__)

FAILED_KINDS = frozenset({AlertRule.Kind.JOB_FAILED, AlertRule.Kind.TRAINING_FAILED, AlertRule.Kind.PIPELINE_FAILED})
CREATOR_KEY = "created_by_id"  # in a failed job's alert metadata


def personal_channel() -> NotificationChannel | None:
    """The global email channel personal notices go through: the first enabled one by name."""
    for channel in NotificationChannel.objects.filter(project__isnull=True, enabled=True).order_by("name", "id"):
        if channel.is_email:
            return channel
    return None


def preference_get(user) -> dict:
    """What the account page and `GET /api/account/notifications/` show."""
    pref = NotificationPreference.objects.filter(user=user).first()
    channel = personal_channel()
    return {"my_jobs_failed": bool(pref and pref.my_jobs_failed), "email": user.email or None,
            "channel": channel.name if channel else None}


def preference_set(*, user, my_jobs_failed: bool) -> dict:
    """A user changes their own personal route (nobody else's)."""
    with transaction.atomic():
        pref, _ = NotificationPreference.objects.select_for_update().get_or_create(user=user)
        if pref.my_jobs_failed != my_jobs_failed:
            pref.my_jobs_failed = my_jobs_failed
            pref.save(update_fields=["my_jobs_failed", "updated_at"])
            audit_record(user=user, action="update", obj=pref,
                         summary=f"my_jobs_failed: {not my_jobs_failed} → {my_jobs_failed}")
    return preference_get(user)


def _rule_kind(alert: Alert) -> str:
    if alert.rule_id is not None and alert.rule is not None:
        return alert.rule.kind
    return alert.rule_key.removeprefix("kind:")


def _recipient(alert: Alert):
    """The user to tell about this alert (opted in, with an email), or None."""
    creator_id = (alert.metadata or {}).get(CREATOR_KEY)
    if not creator_id or _rule_kind(alert) not in FAILED_KINDS:
        return None
    if not NotificationPreference.objects.filter(user_id=creator_id, my_jobs_failed=True).exists():
        return None
    user = get_user_model().objects.filter(pk=creator_id, is_active=True).first()
    if user is None or not user.email:
        return None
    return user


def alert_personal(alert: Alert) -> Notification | None:
    """Called when a (not silenced) alert opens: a personal notice to the job's creator, if they asked."""
    if _recipient(alert) is None:
        return None
    notification = Notification.objects.create(kind=Notification.Kind.PERSONAL, rule=alert.rule,
                                               project_id=alert.project_id, priority=alert.priority)
    notification.alerts.add(alert)
    from .notifications import _enqueue_send

    transaction.on_commit(lambda: _enqueue_send(notification.pk))
    return notification


def personal_route(alerts: list[Alert]) -> tuple[NotificationChannel | None, str]:
    """(the channel, the recipient's address) of a personal notice, or (None, "") when it cannot go."""
    user = _recipient(alerts[0]) if alerts else None
    channel = personal_channel() if user is not None else None
    if channel is None:
        return None, ""
    return channel, user.email
