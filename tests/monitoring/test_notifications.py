"""From an alert to a message: grouping, channels by scope and priority, deliveries with retries,
and silences holding alerts back. Real receivers (an SMTP server, an HTTP server), the services
called in the test's process."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import services
from monitoring.models import Alert, Delivery, Notification
from tests.factories import NotificationChannelFactory, SilenceFactory
from tests.receivers import SmtpServer, closed_port

pytestmark = pytest.mark.django_db


def raise_cpu(subject="h1"):
    return services.alert_raise(rule_kind="metric", rule=services_rule("cpu-high"), subject=subject,
                                title=f"CPU above 90% on {subject}", message="CPU 97.0% — CPU > 90% for 60 s.")


def services_rule(slug):
    from monitoring.models import AlertRule

    return AlertRule.objects.get(slug=slug)


def send_due(group: Notification) -> list[Delivery]:
    Notification.objects.filter(pk=group.pk).update(send_after=timezone.now())
    return services.notification_send(notification_id=group.pk)


def test_an_alert_reaches_a_webhook_and_an_email(webhook_server, smtp_server):
    hook = NotificationChannelFactory(name="hook", url=webhook_server.url())
    mail = NotificationChannelFactory(name="mail", url=smtp_server.url(to="oncall@example.com"))
    alert = raise_cpu()
    group = Notification.objects.get(alerts=alert)
    deliveries = send_due(group)
    assert {d.channel_id for d in deliveries} == {hook.pk, mail.pk}
    for delivery in deliveries:
        assert services.delivery_attempt(delivery_id=delivery.pk) is None
    body = webhook_server.wait(1)[0]["json"]
    assert body["title"].startswith("[HIGH] CPU above 90% on h1") and f"/monitoring/alerts/{alert.pk}/" in body["message"]
    message = smtp_server.wait(1)[0]
    assert message["Subject"].startswith("[HIGH] CPU above 90% on h1") and len(message["Subject"]) <= 78
    assert message.envelope_to == ["oncall@example.com"]
    assert f"/monitoring/alerts/{alert.pk}/" in SmtpServer.text(message)
    assert set(Delivery.objects.values_list("status", "attempts")) == {("sent", 1)}


def test_alerts_of_one_rule_within_the_window_are_one_message(webhook_server):
    NotificationChannelFactory(url=webhook_server.url())
    alerts = [raise_cpu(f"h{i}") for i in range(5)]
    groups = set(Notification.objects.filter(alerts__in=alerts).values_list("pk", flat=True))
    assert len(groups) == 1
    (delivery,) = send_due(Notification.objects.get(pk=groups.pop()))
    services.delivery_attempt(delivery_id=delivery.pk)
    (body,) = webhook_server.wait(1)
    assert "(+4 more)" in body["json"]["title"]


def test_a_closed_port_fails_with_backoff_then_for_good_without_secrets():
    channel = NotificationChannelFactory(url=f"jsons://user:s3cretpass@127.0.0.1:{closed_port()}/t0ken-path")
    raise_cpu()
    (delivery,) = send_due(Notification.objects.get())
    waits = [services.delivery_attempt(delivery_id=delivery.pk) for _ in range(3)]
    assert waits[0] and waits[1] == 2 * waits[0] and waits[2] is None
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == 3 and delivery.error
    assert "s3cretpass" not in delivery.error and "t0ken-path" not in delivery.error
    channel.refresh_from_db()
    assert channel.consecutive_failures == 3
    failing = Alert.objects.get(subject=f"channel:{channel.pk}")
    assert failing.status == "open" and "channel failing" in failing.title


def test_a_silenced_alert_is_recorded_and_marked_not_notified(webhook_server):
    NotificationChannelFactory(url=webhook_server.url())
    SilenceFactory(matchers={"rule": "cpu-high"})
    alert = raise_cpu()
    alert.refresh_from_db()
    assert alert.is_silenced and not Notification.objects.filter(alerts=alert).exists()
    assert services.alert_payload(alert)["silenced"] is True


def test_a_still_open_alert_repeats_and_its_resolution_goes_once(webhook_server):
    NotificationChannelFactory(url=webhook_server.url())
    alert = raise_cpu()
    (delivery,) = send_due(Notification.objects.get(alerts=alert))
    services.delivery_attempt(delivery_id=delivery.pk)
    Alert.objects.filter(pk=alert.pk).update(last_notified_at=timezone.now() - timedelta(minutes=241))
    assert services.notifications_sweep()["repeats"] == 1
    assert services.notifications_sweep()["repeats"] == 0
    repeat = Notification.objects.get(kind="repeat")
    (delivery,) = services.notification_send(notification_id=repeat.pk)
    services.delivery_attempt(delivery_id=delivery.pk)
    assert webhook_server.wait(2)[1]["json"]["title"].startswith("[STILL OPEN]")
    alert.refresh_from_db()
    services.alert_condition_clear(rule=alert.rule, subject="h1")
    resolved = Notification.objects.get(kind="resolved")
    (delivery,) = services.notification_send(notification_id=resolved.pk)
    services.delivery_attempt(delivery_id=delivery.pk)
    assert webhook_server.wait(3)[2]["json"]["title"].startswith("[RESOLVED]")
