"""Notification channels: create, change, delete, test; and a failing channel's own alert."""

from __future__ import annotations

from ..models import AlertRule, NotificationChannel
from .alerts import alert_condition_clear, alert_raise


def _subject(channel: NotificationChannel) -> str:
    return f"channel:{channel.pk}"


def channel_failing_raise(channel: NotificationChannel, *, error: str):
    """A channel that failed NOTIFY_CHANNEL_FAILURES_ALERT attempts in a row: a system alert (global),
    sent on the other channels."""
    return alert_raise(
        rule_kind=AlertRule.Kind.CUSTOM, subject=_subject(channel), alert_type="notification",
        title=f"Notification channel failing: {channel.name}", source=channel.name, priority="high",
        message=f"{channel.consecutive_failures} attempts in a row failed; the last: {error}"[:2000],
        suggested_actions=["Check the channel's URL and the service it points at, then send a test."],
        metadata={"channel_id": channel.pk},
    )


def channel_failing_clear(channel: NotificationChannel):
    return alert_condition_clear(rule_kind=AlertRule.Kind.CUSTOM, subject=_subject(channel),
                                 message=f"{channel.name} delivered again.")
