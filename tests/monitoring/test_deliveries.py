"""Delivery you can trust, end to end through the real session worker: a channel pointing at a
closed port retries with exponential backoff and fails for good, its errors never hold the URL's
secrets (deliveries, the channel, events, the alert, pages, admin), its own system alert opens and
reaches the OTHER channel (a real HTTP server), and a success clears it."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.conf import settings

from monitoring import services
from monitoring.models import Alert, AlertRule, Delivery, NotificationChannel
from monitoring.services import channels as channel_services
from tests.factories import NotificationChannelFactory
from tests.procs import wait_for
from tests.receivers import closed_port

pytestmark = pytest.mark.django_db(transaction=True)

SECRETS = ("s3cretpass", "t0ken-path", "hookuser", "qv4lue")


def _clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked: {text[:300]}"


def _when(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def test_a_closed_port_retries_with_backoff_raises_the_failing_alert_on_the_other_channel_and_a_success_clears_it(
        client, staff_user, worker, webhook_server, events, rules):
    assert settings.NOTIFY_MAX_ATTEMPTS == 3 and settings.NOTIFY_CHANNEL_FAILURES_ALERT <= 3
    bad = NotificationChannelFactory(
        name="broken hook", url=f"jsons://hookuser:s3cretpass@127.0.0.1:{closed_port()}/t0ken-path?key=qv4lue")
    good = NotificationChannelFactory(name="good hook", url=webhook_server.url())

    alert = services.alert_raise(rule_kind="metric", rule=AlertRule.objects.get(slug="cpu-high"), subject="h1",
                                 title="CPU above 90% on h1", message="CPU 97.0% — CPU > 90% for 60 s.")
    # The alert itself is there at once: sending is the worker's business, after the grouping window.
    assert Alert.objects.filter(pk=alert.pk, status="open").exists()
    assert not Delivery.objects.exists()

    first = webhook_server.wait(1, predicate=lambda m: "CPU above 90% on h1" in m["json"]["title"])[0]
    assert f"/monitoring/alerts/{alert.pk}/" in first["json"]["message"]

    failed = wait_for(lambda: (lambda got: got if len(got) >= 3 else None)(
        [e for e in events("notification_failed") if e["channel_id"] == bad.pk and e["kind"] == "firing"]),
        timeout=90, message="three failed attempts on the broken channel")
    failed.sort(key=lambda e: e["attempt"])
    assert [(e["attempt"], e["retrying"]) for e in failed] == [(1, True), (2, True), (3, False)]
    assert failed[0]["retry_in"] == settings.NOTIFY_RETRY_BASE_SECONDS
    assert failed[1]["retry_in"] == 2 * settings.NOTIFY_RETRY_BASE_SECONDS and failed[2].get("retry_in") is None
    # The waits really happen (lower bounds only: a slow machine only makes them longer).
    assert _when(failed[1]) - _when(failed[0]) >= settings.NOTIFY_RETRY_BASE_SECONDS - 0.05
    assert _when(failed[2]) - _when(failed[1]) >= 2 * settings.NOTIFY_RETRY_BASE_SECONDS - 0.05
    assert all(e["alert_id"] == alert.pk and e["error"] and e["channel_name"] == "broken hook" for e in failed)
    for event in failed:
        _clean(str(event))

    # The alert shows its deliveries: sent on one channel, failed with a scrubbed error on the other.
    wait_for(lambda: not Delivery.objects.filter(notification__alerts=alert, status="pending").exists(), timeout=60,
             message="the alert's deliveries to finish")
    by_channel = {d.channel_id: d for d in services.alert_deliveries(alert)}
    assert (by_channel[good.pk].status, by_channel[good.pk].attempts) == ("sent", 1)
    broken = by_channel[bad.pk]
    assert (broken.status, broken.attempts) == ("failed", 3) and broken.error
    _clean(broken.error)
    bad.refresh_from_db()
    assert bad.consecutive_failures == 3 and bad.last_error and bad.last_failed_at
    _clean(bad.last_error)

    # Its own system alert opened and went out on the other channel only.
    failing = wait_for(lambda: Alert.objects.filter(subject=f"channel:{bad.pk}", status="open").first(), timeout=30,
                       message="the failing channel's alert")
    assert failing.project_id is None and "Notification channel failing: broken hook" in failing.title
    _clean(f"{failing.title} {failing.message} {failing.metadata}")
    received = webhook_server.wait(1, predicate=lambda m: "Notification channel failing" in m["json"]["title"])[0]
    _clean(str(received))
    wait_for(lambda: Delivery.objects.filter(notification__alerts=failing, status="sent").exists(), timeout=60,
             message="the failing alert's delivery")
    assert set(Delivery.objects.filter(notification__alerts=failing).values_list("channel_id", flat=True)) == {good.pk}

    # Nothing shows the secrets: the API, the Monitoring page, the admin.
    client.force_login(staff_user)
    for url in (f"/api/notification-channels/{bad.pk}/", "/api/notification-channels/", f"/api/alerts/{failing.pk}/",
                "/monitoring/", f"/admin/monitoring/notificationchannel/{bad.pk}/change/",
                "/admin/monitoring/notificationchannel/", "/admin/monitoring/delivery/",
                f"/admin/monitoring/delivery/{broken.pk}/change/"):
        response = client.get(url)
        assert response.status_code == 200, url
        _clean(response.content.decode())

    # The service works again: a successful send clears the alert (its resolution goes to the other channel).
    NotificationChannel.objects.filter(pk=bad.pk).update(url=webhook_server.url("fixed"))
    delivery = channel_services.channel_test(user=staff_user, channel=NotificationChannel.objects.get(pk=bad.pk))
    webhook_server.wait(1, predicate=lambda m: m["path"] == "/fixed")
    wait_for(lambda: Alert.objects.filter(pk=failing.pk, status="resolved").exists(), timeout=60,
             message="the failing alert to clear")
    assert Delivery.objects.get(pk=delivery.pk).status == "sent"
    bad.refresh_from_db()
    assert bad.consecutive_failures == 0 and bad.last_sent_at is not None
    # Its resolution goes out once, on the other channel too: the second message about it there.
    about = webhook_server.wait(2, predicate=lambda m: m["path"] == "/hook" and "Notification channel failing"
                                in m["json"]["title"])
    _clean(str(about))


def test_a_delivery_to_a_disabled_channel_ends_without_counting_against_it(rules, events):
    """A delivery queued before its channel was disabled ends at once, without a send: no failure
    count on the channel, no failing alert."""
    from monitoring.models import Notification

    channel = NotificationChannelFactory(name="paused", url=f"json://127.0.0.1:{closed_port()}/x")
    notification = Notification.objects.create(kind="firing", status="sending", priority="high", title="t", body="b")
    delivery = Delivery.objects.create(notification=notification, channel=channel, channel_name=channel.name)
    NotificationChannel.objects.filter(pk=channel.pk).update(enabled=False, consecutive_failures=2)
    assert services.delivery_attempt(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error) == ("failed", 1, "The channel was disabled.")
    channel.refresh_from_db()
    assert channel.consecutive_failures == 2 and channel.last_failed_at is None
    assert not Alert.objects.filter(subject=f"channel:{channel.pk}").exists()
    events.expect("notification_failed", channel_id=channel.pk, retrying=False, error="The channel was disabled.")


def test_scrub_removes_every_secret_of_the_url_from_an_error():
    """The scrubbing every stored or published error goes through (apprise's own messages rarely
    quote the URL, but a transport's exception does: `... Max retries exceeded with url: /path?key=`)."""
    from monitoring import notify

    url = "jsons://hookuser:s3cretpass@hooks.example.com/t0ken-path?key=qv4lue"
    error = ("HTTPSConnectionPool(host='hooks.example.com', port=443): Max retries exceeded with url: "
             "/t0ken-path?key=qv4lue; auth hookuser:s3cretpass; quoted s3cret%70ass; " + url)
    scrubbed = notify.scrub(error, url)
    _clean(scrubbed)
    assert "hooks.example.com" in scrubbed and "***" in scrubbed
    assert notify.mask(url) == "jsons://***@hooks.example.com/***"
