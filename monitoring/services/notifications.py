"""Notifications: from an alert to messages on channels.

- An alert that opens under an active silence (or maintenance window) is marked silenced and not
  notified. Otherwise it joins its rule's pending group: the first alert of a rule starts one, and
  the alerts of the rule that open within NOTIFY_GROUP_SECONDS go out with it as one message.
- A due notification picks its channels (the rule's, or every enabled default-route channel; a
  project rule's alerts reach the project's channels and the global ones, a global rule's the
  global ones only; never below a channel's minimum priority) and makes one Delivery per channel.
- A delivery is a Celery task with retries and exponential backoff; each attempt publishes
  `notification_sent` or `notification_failed` (its error without the URL's secrets).
- Beat's sweep sends due groups that nobody sent (a worker lost their countdown), and repeats
  still-open alerts every `repeat_interval_minutes` of their rule. An acknowledged alert is not
  repeated (someone is on it). A resolution goes out once, to the channels that carried the alert.
- A failed job's alert also goes to its creator when they asked for it (services/personal.py).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from mlops_dashboard.events import catalog, publish_on_commit

from .. import notify
from ..models import PRIORITY_RANK, Alert, Delivery, Notification, NotificationChannel
from . import messages, personal
from .silences import silence_for, silences_sweep

logger = logging.getLogger(__name__)


# --- from alerts to notifications ----------------------------------------------------------------


def alert_opened(alert: Alert) -> Notification | None:
    """Called (in the alert's transaction) when an alert opens: silence it, or add it to its rule's
    pending group. Returns the group, or None when silenced."""
    if _silence(alert):
        return None
    personal.alert_personal(alert)
    rule_key = alert.rule_key
    key = f"firing|{rule_key}|{alert.project_id or ''}"
    now = timezone.now()
    for _ in range(3):
        group = Notification.objects.select_for_update().filter(group_key=key, status=Notification.Status.PENDING).first()
        if group is None:
            try:
                with transaction.atomic():
                    group = Notification.objects.create(
                        kind=Notification.Kind.FIRING, group_key=key, rule=alert.rule, project_id=alert.project_id,
                        priority=alert.priority, send_after=now + timedelta(seconds=settings.NOTIFY_GROUP_SECONDS))
            except IntegrityError:  # another process started the group between our read and write
                continue
            delay = max(settings.NOTIFY_GROUP_SECONDS, 0)
            transaction.on_commit(lambda gid=group.pk: _enqueue_send(gid, countdown=delay))
        elif PRIORITY_RANK.get(alert.priority, 0) > PRIORITY_RANK.get(group.priority, 0):
            group.priority = alert.priority
            group.save(update_fields=["priority"])
        group.alerts.add(alert)
        return group
    logger.warning("could not group alert %s", alert.pk)
    return None


def alert_resolved(alert: Alert) -> Notification | None:
    """Called when an alert resolves: its resolution goes out once, to where it was notified."""
    if alert.last_notified_at is None or alert.is_silenced:
        return None
    return _notification_now(Notification.Kind.RESOLVED, [alert])


def _silence(alert: Alert) -> bool:
    held = silence_for(rule=alert.rule_key, priority=alert.priority, subject=alert.subject,
                       project_id=alert.project_id)
    if held is None:
        return False
    silence, until = held
    Alert.objects.filter(pk=alert.pk).update(silence=silence, silenced_until=until)
    alert.silence, alert.silenced_until = silence, until
    return True


def _notification_now(kind: str, alerts: list[Alert]) -> Notification:
    first = alerts[0]
    notification = Notification.objects.create(kind=kind, rule=first.rule, project_id=first.project_id,
                                               priority=first.priority, status=Notification.Status.PENDING)
    notification.alerts.add(*alerts)
    transaction.on_commit(lambda: _enqueue_send(notification.pk))
    return notification


def _enqueue_send(notification_id: int, countdown: float = 0) -> None:
    from ..tasks import notification_send

    try:
        notification_send.apply_async(args=[notification_id], countdown=countdown)
    except Exception:  # the broker is down: beat's sweep sends it once it is back
        logger.warning("could not enqueue notification %s", notification_id, exc_info=True)


# --- sending a notification ------------------------------------------------------------------------


def channels_for(notification: Notification, alerts: list[Alert] = ()) -> list[NotificationChannel]:
    """The enabled channels a notification goes to, at or above their minimum priority (a failing
    channel's own alert goes to the others)."""
    if notification.kind == Notification.Kind.RESOLVED:
        # Where the alert went: the channels that carried its firing or repeat messages, still enabled.
        return list(NotificationChannel.objects.filter(
            enabled=True, deliveries__notification__alerts__in=[a.pk for a in alerts],
            deliveries__notification__kind__in=[Notification.Kind.FIRING, Notification.Kind.REPEAT],
        ).distinct().order_by("project_id", "name", "id"))
    rule = notification.rule
    scope = Q(project__isnull=True)
    if rule is not None and rule.project_id is not None:
        scope |= Q(project_id=rule.project_id)
    named = list(rule.channels.all()) if rule is not None else []
    candidates = [c for c in named if c.enabled] if named else list(
        NotificationChannel.objects.filter(scope, enabled=True, default_route=True))
    if named:  # a rule names only channels it may use: its project's and the global ones
        allowed = {c.pk for c in NotificationChannel.objects.filter(scope)}
        candidates = [c for c in candidates if c.pk in allowed]
    rank = PRIORITY_RANK.get(notification.priority, 0)
    failing = {a.metadata.get("channel_id") for a in alerts if a.subject.startswith("channel:")}
    return [c for c in candidates if PRIORITY_RANK.get(c.min_priority, 0) <= rank and c.pk not in failing]


def notification_send(*, notification_id: int) -> list[Delivery]:
    """Make the due notification's message and its deliveries (once, whoever calls first)."""
    with transaction.atomic():
        # of=self: PostgreSQL refuses FOR UPDATE on the nullable side of the rule's outer join.
        notification = Notification.objects.select_for_update(of=("self",)).filter(
            pk=notification_id, status=Notification.Status.PENDING).select_related("rule").first()
        if notification is None:
            return []
        if notification.send_after > timezone.now() + timedelta(seconds=0.5):
            return []  # an early countdown (clock skew): the sweep sends it when due
        alerts = list(notification.alerts.select_related("rule", "project").order_by("created_at", "id"))
        firing = notification.kind in (Notification.Kind.FIRING, Notification.Kind.REPEAT)
        if firing or notification.kind == Notification.Kind.PERSONAL:
            # Silenced (or, when firing, resolved or acknowledged) since they joined: not announced.
            alerts = [a for a in alerts if (a.status == Alert.Status.OPEN or not firing) and not _silence(a)]
            if not alerts:
                notification.status = Notification.Status.SILENCED
                notification.group_key = ""
                notification.save(update_fields=["status", "group_key"])
                return []
            notification.priority = max((a.priority for a in alerts), key=lambda p: PRIORITY_RANK.get(p, 0))
        recipient = ""
        if notification.kind == Notification.Kind.PERSONAL:
            channel, recipient = personal.personal_route(alerts)
            channels = [channel] if channel is not None else []
        else:
            channels = channels_for(notification, alerts)
        notification.title, notification.body = messages.render(notification, alerts)
        notification.status = Notification.Status.SENDING if channels else Notification.Status.SKIPPED
        notification.group_key = ""
        notification.save(update_fields=["title", "body", "status", "group_key", "priority"])
        if firing and channels:
            Alert.objects.filter(pk__in=[a.pk for a in alerts]).update(last_notified_at=timezone.now())
        deliveries = [Delivery.objects.create(notification=notification, channel=c, channel_name=c.name,
                                              recipient=recipient) for c in channels]
        for delivery in deliveries:
            transaction.on_commit(lambda did=delivery.pk: delivery_enqueue(did))
    return deliveries


def delivery_enqueue(delivery_id: int, countdown: float = 0) -> None:
    from ..tasks import notification_deliver

    try:
        notification_deliver.apply_async(args=[delivery_id], countdown=countdown)
    except Exception:
        logger.warning("could not enqueue delivery %s", delivery_id, exc_info=True)


def retry_delay(attempt: int) -> float:
    """Seconds before the attempt after `attempt` (1-based): base × 2^(attempt-1)."""
    return settings.NOTIFY_RETRY_BASE_SECONDS * (2 ** max(attempt - 1, 0))


def delivery_attempt(*, delivery_id: int) -> float | None:
    """One attempt of a delivery: send, record, announce. Returns the seconds to wait before the next
    attempt, or None when it is over (sent, failed for good, or nothing to do)."""
    delivery = (Delivery.objects.select_related("notification", "channel")
                .filter(pk=delivery_id, status=Delivery.Status.PENDING).first())
    if delivery is None:
        return None
    channel, notification = delivery.channel, delivery.notification
    attempt = delivery.attempts + 1
    tried = False  # only a real send counts for (or against) the channel
    if channel is None:
        result = notify.SendResult(False, "The channel was deleted.")
    elif not channel.enabled and notification.kind != Notification.Kind.TEST:
        result = notify.SendResult(False, "The channel was disabled.")
    else:
        tried = True
        url = notify.with_recipient(channel.url, delivery.recipient) if delivery.recipient else channel.url
        result = notify.send(url, title=notification.title, body=notification.body,
                             timeout=settings.NOTIFY_TIMEOUT_SECONDS)
    now = timezone.now()
    final = result.ok or attempt >= settings.NOTIFY_MAX_ATTEMPTS or not tried
    with transaction.atomic():
        status = Delivery.Status.SENT if result.ok else (Delivery.Status.FAILED if final else Delivery.Status.PENDING)
        error = "" if result.ok else (notify.scrub(result.error, channel.url) if channel else result.error)[:1000]
        updated = Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING, attempts=delivery.attempts) \
            .update(attempts=attempt, status=status, error=error, last_attempt_at=now, sent_at=now if result.ok else None)
        if not updated:
            return None  # another delivery of the same task got there first
        alert_ids = list(notification.alerts.values_list("pk", flat=True)[:1])
        common = dict(notification_id=notification.pk, kind=notification.kind,
                      alert_id=alert_ids[0] if alert_ids else None, channel_id=channel.pk if channel else None,
                      channel_name=delivery.channel_name, attempt=attempt, project_id=_topic_project(notification, channel))
        if result.ok:
            publish_on_commit(catalog.NotificationSent(**common))
        else:
            delay = None if final else retry_delay(attempt)
            publish_on_commit(catalog.NotificationFailed(**common, error=error, retrying=not final, retry_in=delay))
        if tried:
            _channel_outcome(channel, ok=result.ok, error=error, now=now)
        if final and not Delivery.objects.filter(notification=notification, status=Delivery.Status.PENDING).exists():
            Notification.objects.filter(pk=notification.pk, status=Notification.Status.SENDING).update(
                status=Notification.Status.DONE)
    return None if final else retry_delay(attempt)


def _topic_project(notification: Notification, channel: NotificationChannel | None) -> int | None:
    if notification.kind == Notification.Kind.TEST:
        return channel.project_id if channel else None
    return notification.project_id


def _channel_outcome(channel: NotificationChannel, *, ok: bool, error: str, now) -> None:
    """Keep the channel's failure count; past NOTIFY_CHANNEL_FAILURES_ALERT in a row its own system
    alert opens (sent on the other channels); a success clears it."""
    from . import channels as channel_services

    if ok:
        NotificationChannel.objects.filter(pk=channel.pk).update(consecutive_failures=0, last_sent_at=now)
        if channel.consecutive_failures:
            _quietly(channel_services.channel_failing_clear, channel)
        return
    NotificationChannel.objects.filter(pk=channel.pk).update(
        consecutive_failures=F("consecutive_failures") + 1, last_error=error, last_failed_at=now)
    channel.refresh_from_db(fields=["consecutive_failures"])
    if channel.consecutive_failures >= settings.NOTIFY_CHANNEL_FAILURES_ALERT:
        _quietly(channel_services.channel_failing_raise, channel, error=error)


def _quietly(fn, *args, **kwargs) -> None:
    """The channel's own alert is a courtesy: failing to raise or clear it must not undo the
    delivery's record (its own savepoint)."""
    try:
        with transaction.atomic():
            fn(*args, **kwargs)
    except Exception:
        logger.warning("%s failed", fn.__name__, exc_info=True)


# --- beat -------------------------------------------------------------------------------------------


def notifications_sweep(*, now=None) -> dict:
    """Send the groups that are due (their countdown task was lost) and the repeats that are due;
    mark and unmark the alerts of silences and maintenance windows that started or ended."""
    now = now or timezone.now()
    silenced = silences_sweep(now=now)
    due = list(Notification.objects.filter(status=Notification.Status.PENDING,
                                           send_after__lte=now - timedelta(seconds=5)).values_list("pk", flat=True)[:100])
    for notification_id in due:
        notification_send(notification_id=notification_id)
    repeats = 0
    open_alerts = (Alert.objects.filter(status=Alert.Status.OPEN, last_notified_at__isnull=False)
                   .select_related("rule").filter(rule__repeat_interval_minutes__gt=0))
    for alert in open_alerts[:500]:
        if alert.last_notified_at + timedelta(minutes=alert.rule.repeat_interval_minutes) > now:
            continue
        with transaction.atomic():
            claimed = Alert.objects.filter(pk=alert.pk, last_notified_at=alert.last_notified_at).update(last_notified_at=now)
            if claimed and not _silence(alert):
                _notification_now(Notification.Kind.REPEAT, [alert])
                repeats += 1
    return {"due": len(due), "repeats": repeats, "silences_changed": silenced}


def alert_deliveries(alert: Alert) -> list[Delivery]:
    """The deliveries of every notification about an alert, newest first."""
    return list(Delivery.objects.filter(notification__alerts=alert).select_related("notification", "channel")
                .order_by("-created_at", "-id")[:50])
