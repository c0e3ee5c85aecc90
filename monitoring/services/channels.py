"""Notification channels: create, change, delete, test; and a failing channel's own alert.

A channel's URL holds secrets: it is written here and never read back. Audit entries, activity lines,
events and errors name the channel by its name and `url_masked` only.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404

from mlops_dashboard import permissions
from mlops_dashboard.activity import activity_record
from mlops_dashboard.audit import audit_record, changes_summary
from mlops_dashboard.models import Project

from .. import notify
from ..models import AlertRule, Delivery, Notification, NotificationChannel, Priority
from .alerts import alert_condition_clear, alert_raise
from .notifications import delivery_enqueue

logger = logging.getLogger(__name__)

CHANNEL_FIELDS = ("name", "url", "min_priority", "enabled", "default_route")


class ChannelConflict(Exception):
    """The name is taken in that scope (the API answers 409)."""


def _project_id(project) -> int | None:
    return getattr(project, "pk", project)


def channel_authorize(user, channel: NotificationChannel) -> None:
    """A global channel is staff's (403 naming admin), a project's channel its maintainers' (403
    naming maintainer); a channel of a project the user cannot see is a 404."""
    permissions.authorize(user, "manage", channel)


def _values(channel: NotificationChannel) -> dict:
    # What the audit may say: never the URL, only its masked form.
    return {"name": channel.name, "url": channel.url_masked, "min_priority": channel.min_priority,
            "enabled": channel.enabled, "default_route": channel.default_route}


def _set_url(channel: NotificationChannel, url) -> None:
    try:
        service, masked = notify.describe(url)
    except notify.InvalidURL as exc:
        raise ValidationError({"url": [str(exc)]}) from None
    channel.url, channel.service, channel.url_masked = url.strip(), service, masked


def _check(channel: NotificationChannel) -> None:
    if not str(channel.name or "").strip():
        raise ValidationError({"name": ["Give the channel a name."]})
    channel.name = channel.name.strip()
    if channel.min_priority not in Priority.values:
        raise ValidationError({"min_priority": [f"One of {', '.join(Priority.values)}."]})
    channel.full_clean(validate_constraints=False)
    taken = NotificationChannel.objects.filter(name=channel.name, project_id=channel.project_id) \
        .exclude(pk=channel.pk).exists()
    if taken:
        where = "among the global channels" if channel.project_id is None else "in this project"
        raise ChannelConflict(f"A channel named “{channel.name}” already exists {where}; choose another name.")


def _save(channel: NotificationChannel) -> None:
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError:  # another request took the name between our check and our write
        raise ChannelConflict(f"A channel named “{channel.name}” already exists; choose another name.") from None


def channel_create(*, user, project=None, name: str, url: str, min_priority: str = Priority.LOW,
                   enabled: bool = True, default_route: bool = True) -> NotificationChannel:
    """A new channel: global (`project` None, staff only) or of a project (its maintainers)."""
    project_id = _project_id(project)
    if project_id is None and user is not None and not permissions.is_admin(user):
        raise PermissionDenied("Global notification channels need an admin (staff) account; give `project` to "
                               "make a channel of one of your projects (its maintainers manage them).")
    channel = NotificationChannel(project_id=project_id, name=name, min_priority=min_priority, enabled=enabled,
                                  default_route=default_route, created_by=user if getattr(user, "pk", None) else None)
    channel_authorize(user, channel)
    if project_id is not None and not Project.objects.filter(pk=project_id).exists():
        if permissions.is_admin(user):
            raise ValidationError({"project": [f"No project with id {project_id}."]})
        raise Http404("No such project.")
    _set_url(channel, url)
    _check(channel)
    with transaction.atomic():
        _save(channel)
        audit_record(user=user, action="create", obj=channel,
                     summary=f"{channel.service} {channel.url_masked}, from {channel.min_priority}")
        activity_record(title=f"Notification channel created: {channel.name}", action_type="notification_channel",
                        user=user, description=f"{channel.service} · {channel.url_masked}",
                        metadata={"channel_id": channel.pk}, project=project_id)
    return channel


def channel_update(*, user, channel: NotificationChannel, **fields) -> NotificationChannel:
    """Change some fields; without `url` the URL is kept. Disabling a channel clears its failing alert."""
    unknown = set(fields) - set(CHANNEL_FIELDS)
    if unknown:
        raise ValidationError({f: ["Unknown field (a channel's project cannot change)."] for f in sorted(unknown)})
    channel_authorize(user, channel)
    channel = NotificationChannel.objects.get(pk=channel.pk)  # the stored row, not a caller's edited copy
    before = _values(channel)
    url_changed = "url" in fields and fields["url"] not in (None, "") and fields["url"].strip() != channel.url
    for name, value in fields.items():
        if name == "url":
            if value not in (None, ""):
                _set_url(channel, value)
        else:
            setattr(channel, name, value)
    _check(channel)
    if url_changed:  # a new address starts a new count
        channel.consecutive_failures, channel.last_error = 0, ""
    with transaction.atomic():
        _save(channel)
        after = _values(channel)
        summary = changes_summary(before, after)
        if url_changed and before["url"] == after["url"]:
            summary = "; ".join(p for p in (summary, "url: changed (secrets not shown)") if p)
        changed = {k for k in after if before[k] != after[k]} | ({"url"} if url_changed else set())
        verb = {"enabled": "enabled" if channel.enabled else "disabled"}.get(",".join(sorted(changed)), "updated")
        audit_record(user=user, action={"enabled": "enable", "disabled": "disable"}.get(verb, "update"), obj=channel,
                     summary=summary)
        activity_record(title=f"Notification channel {verb}: {channel.name}", action_type="notification_channel",
                        user=user, description=f"{channel.service} · {channel.url_masked}",
                        metadata={"channel_id": channel.pk, "enabled": channel.enabled}, project=channel.project_id)
        if not channel.enabled or url_changed:
            channel_failing_clear(channel, message=f"{channel.name} was {'disabled' if not channel.enabled else 'changed'}.")
    return channel


def channel_set_enabled(*, user, channel: NotificationChannel, enabled: bool) -> NotificationChannel:
    return channel_update(user=user, channel=channel, enabled=enabled)


def channel_delete(*, user, channel: NotificationChannel) -> None:
    """Delete a channel; its deliveries stay (with its name), its failing alert clears."""
    channel_authorize(user, channel)
    with transaction.atomic():
        channel_failing_clear(channel, message=f"{channel.name} was deleted.")
        audit_record(user=user, action="delete", obj=channel, summary=f"{channel.service} {channel.url_masked}")
        activity_record(title=f"Notification channel deleted: {channel.name}", action_type="notification_channel",
                        user=user, description=f"{channel.service} · {channel.url_masked}",
                        metadata={"channel_id": channel.pk}, project=channel.project_id)
        channel.delete()


def channel_test(*, user, channel: NotificationChannel) -> Delivery:
    """Queue a test message to this channel alone (also when disabled: testing is how one checks it
    before enabling it). Returns its delivery; `notification_sent`/`_failed` tell the outcome."""
    channel_authorize(user, channel)
    who = user.get_username() if getattr(user, "is_authenticated", False) else "the system"
    with transaction.atomic():
        notification = Notification.objects.create(
            kind=Notification.Kind.TEST, status=Notification.Status.SENDING, project_id=channel.project_id,
            priority=Priority.LOW, title=f"Test from the MLOps dashboard: {channel.name}"[:200],
            body=f"A test message sent by {who} to the channel “{channel.name}”. If you read this, it works.")
        delivery = Delivery.objects.create(notification=notification, channel=channel, channel_name=channel.name)
        audit_record(user=user, action="test", obj=channel, summary=f"test message queued (delivery {delivery.pk})")
        transaction.on_commit(lambda: delivery_enqueue(delivery.pk))
    return delivery


# --- a channel that keeps failing ---------------------------------------------------------------------


def _subject(channel: NotificationChannel) -> str:
    return f"channel:{channel.pk}"


def channel_failing_raise(channel: NotificationChannel, *, error: str):
    """A channel that failed NOTIFY_CHANNEL_FAILURES_ALERT attempts in a row: a system alert (global),
    sent on the other channels (`channels_for` leaves the failing one out). `error` is already scrubbed."""
    alert = alert_raise(
        rule_kind=AlertRule.Kind.CHANNEL_FAILING, subject=_subject(channel), alert_type="notification",
        title=f"Notification channel failing: {channel.name}"[:200], source=channel.name,
        message=f"{channel.consecutive_failures} attempts in a row failed ({channel.service} "
                f"{channel.url_masked}); the last: {error}"[:2000],
        metadata={"channel_id": channel.pk, "url_masked": channel.url_masked},
    )
    if alert is None:  # staff disabled the "Notification channel failing" rule
        logger.warning("notification channel %s is failing; its alert rule is disabled", channel.pk)
    return alert


def channel_failing_clear(channel: NotificationChannel, *, message: str = ""):
    return alert_condition_clear(rule_kind=AlertRule.Kind.CHANNEL_FAILING, subject=_subject(channel),
                                 message=message or f"{channel.name} delivered again.")
