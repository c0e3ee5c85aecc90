"""Routing, grouping and repeats: which channels a rule's alerts reach (scope, named channels, default
route, minimum priority), one message per rule's window, repeats of still-open alerts, the resolution
once to the same channels; the messages; the alert's page and its deliveries. Real receivers (an HTTP
server, an SMTP server); the last tests go through the session's real Celery worker."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from monitoring import services
from monitoring.models import Alert, AlertRule, Delivery, Notification, NotificationChannel
from monitoring.services.messages import SUBJECT_MAX
from tests.factories import NotificationChannelFactory, ProjectFactory, SilenceFactory, UserFactory, member
from tests.receivers import SmtpServer, closed_port

pytestmark = pytest.mark.django_db


def raise_alert(rule: AlertRule, subject="h1", priority=None, title=None):
    return services.alert_raise(rule=rule, rule_kind=rule.kind, subject=subject, priority=priority,
                                title=title or f"{rule.name} on {subject}", message="CPU 97.0% — CPU > 90% for 60 s.")


def send_due(alert: Alert) -> list[Delivery]:
    """Send the pending notification of this alert now (its window passed)."""
    notification = Notification.objects.get(alerts=alert, status=Notification.Status.PENDING)
    Notification.objects.filter(pk=notification.pk).update(send_after=timezone.now())
    return services.notification_send(notification_id=notification.pk)


def routed(alert: Alert) -> set[str]:
    return {d.channel_name for d in send_due(alert)}


# --- the rule's channels on the API ---------------------------------------------------------------


def test_a_rule_names_channels_of_its_scope_only(client, staff_user, user, rules):
    alpha, beta = ProjectFactory(slug="alpha"), ProjectFactory(slug="beta")
    member(user, "maintainer", alpha)
    glob = NotificationChannelFactory(name="ops")
    mine = NotificationChannelFactory(name="alpha-team", project=alpha)
    theirs = NotificationChannelFactory(name="beta-team", project=beta)
    client.force_login(user)
    body = {"name": "Training failed (alpha)", "kind": "training_failed", "priority": "high", "project": alpha.pk}
    response = client.post("/api/alert-rules/", {**body, "channels": [mine.pk, theirs.pk]}, content_type="application/json")
    assert response.status_code == 400 and "channels" in response.json()["errors"]
    assert "beta-team" not in response.content.decode()  # another project's channel is as unknown as a missing one
    response = client.post("/api/alert-rules/", {**body, "channels": [999999]}, content_type="application/json")
    assert response.status_code == 400 and "channels" in response.json()["errors"]
    response = client.post("/api/alert-rules/", {**body, "channels": ["x"]}, content_type="application/json")
    assert response.status_code == 400 and "channels" in response.json()["errors"]
    assert not AlertRule.objects.filter(project=alpha).exists()
    response = client.post("/api/alert-rules/", {**body, "channels": [mine.pk, glob.pk], "repeat_interval_minutes": 30},
                           content_type="application/json")
    assert response.status_code == 201, response.json()
    rule = response.json()
    assert sorted(rule["channels"]) == sorted([mine.pk, glob.pk]) and set(rule["channel_names"]) == {"ops", "alpha-team"}
    assert rule["repeat_interval_minutes"] == 30
    url = f"/api/alert-rules/{rule['id']}/"
    assert client.patch(url, {"enabled": True}, content_type="application/json").json()["channels"] == rule["channels"]
    assert client.patch(url, {"channels": [theirs.pk]}, content_type="application/json").status_code == 400
    assert sorted(client.get(url).json()["channels"]) == sorted(rule["channels"])  # unchanged by the refusal
    assert client.patch(url, {"repeat_interval_minutes": 7 * 24 * 60 + 1}, content_type="application/json").status_code == 400
    assert client.patch(url, {"channels": []}, content_type="application/json").json()["channels"] == []
    # A global rule names global channels only.
    client.force_login(staff_user)
    response = client.post("/api/alert-rules/", {"name": "Disk", "kind": "metric", "metric": "disk_percent",
                                                 "threshold": 95, "channels": [mine.pk]}, content_type="application/json")
    assert response.status_code == 400 and "channels" in response.json()["errors"]


def test_the_rule_form_shows_and_saves_its_channels(client, staff_user, rules):
    ops = NotificationChannelFactory(name="ops")
    rule = rules["cpu-high"]
    client.force_login(staff_user)
    page = client.get(f"/monitoring/?rule={rule.pk}").content.decode()
    assert 'name="channels"' in page and "ops" in page and 'name="repeat_interval_minutes"' in page
    form = {"name": rule.name, "kind": "metric", "metric": "cpu_percent", "comparison": "gt", "threshold": "90",
            "duration_seconds": "60", "priority": "high", "enabled": "on", "channels": [ops.pk],
            "repeat_interval_minutes": "15"}
    assert client.post(f"/monitoring/rules/{rule.pk}/", form).status_code == 302
    rule.refresh_from_db()
    assert list(rule.channels.all()) == [ops] and rule.repeat_interval_minutes == 15


# --- routing --------------------------------------------------------------------------------------


def test_routing_by_scope_default_route_and_minimum_priority(rules):
    alpha, beta = ProjectFactory(slug="alpha"), ProjectFactory(slug="beta")
    NotificationChannelFactory(name="ops")
    NotificationChannelFactory(name="quiet", default_route=False)
    NotificationChannelFactory(name="pager", min_priority="critical")
    NotificationChannelFactory(name="off", enabled=False)
    NotificationChannelFactory(name="alpha-team", project=alpha)
    NotificationChannelFactory(name="beta-team", project=beta)
    # A global rule's alert: the global default-route channels at or below its priority.
    assert routed(raise_alert(rules["cpu-high"])) == {"ops"}
    assert routed(raise_alert(rules["disk-high"], priority="critical")) == {"ops", "pager"}
    # A global rule's alert about a project's job still goes to the global channels only.
    failed = services.alert_raise(rule=rules["training-failed"], rule_kind="training_failed", subject="training_job.1",
                                  title="Failed: training #1", project=alpha)
    assert failed.project_id == alpha.pk and routed(failed) == {"ops"}
    # A project rule's alert: the project's channels and the global ones, never another project's.
    project_rule = AlertRule.objects.create(slug="alpha-training", project=alpha, name="Alpha training",
                                            kind="training_failed", priority="high")
    alert = services.alert_raise(rule=project_rule, rule_kind="training_failed", subject="training_job.2",
                                 title="Failed: training #2", project=alpha)
    assert routed(alert) == {"ops", "alpha-team"}
    # A rule that names channels: those (enabled, in scope), default route or not.
    quiet, off = (NotificationChannel.objects.get(name=n) for n in ("quiet", "off"))
    project_rule.channels.set([quiet, off])
    alert = services.alert_raise(rule=project_rule, rule_kind="training_failed", subject="training_job.3",
                                 title="Failed: training #3", project=alpha)
    assert routed(alert) == {"quiet"}
    # Nothing to send to: the notification is skipped, the alert is not marked notified.
    project_rule.channels.set([off])
    alert = services.alert_raise(rule=project_rule, rule_kind="training_failed", subject="training_job.4",
                                 title="Failed: training #4", project=alpha)
    assert routed(alert) == set()
    alert.refresh_from_db()
    assert alert.last_notified_at is None
    assert Notification.objects.get(alerts=alert).status == Notification.Status.SKIPPED


def test_alerts_of_one_rule_group_and_other_rules_do_not_join(webhook_server, rules):
    NotificationChannelFactory(url=webhook_server.url())
    cpu = [raise_alert(rules["cpu-high"], f"h{i}") for i in range(5)]
    disk = raise_alert(rules["disk-high"], "h1")
    groups = Notification.objects.filter(status="pending")
    assert groups.count() == 2
    assert {a.pk for a in groups.get(alerts=cpu[0]).alerts.all()} == {a.pk for a in cpu}
    assert list(groups.get(alerts=disk).alerts.all()) == [disk]
    # A second alert of one subject repeats the open alert: no new member, no new group.
    assert raise_alert(rules["cpu-high"], "h0").pk == cpu[0].pk and groups.count() == 2


# --- repeats and the resolution ----------------------------------------------------------------


def deliver(deliveries):
    for delivery in deliveries:
        services.delivery_attempt(delivery_id=delivery.pk)


def test_a_still_open_alert_repeats_until_acknowledged_and_its_resolution_goes_once_to_the_same_channels(
        webhook_server, rules):
    first = NotificationChannelFactory(name="first", url=webhook_server.url("first"))
    rule = rules["cpu-high"]
    rule.repeat_interval_minutes = 30
    rule.save()
    alert = raise_alert(rule)
    deliver(send_due(alert))
    (fired,) = webhook_server.wait(1)
    assert fired["json"]["title"].startswith("[HIGH]") and fired["path"] == "/first"
    assert services.notifications_sweep()["repeats"] == 0  # not due yet
    # Due: one repeat, sent at once.
    alert.refresh_from_db()
    Alert.objects.filter(pk=alert.pk).update(last_notified_at=alert.last_notified_at - timedelta(minutes=31))
    assert services.notifications_sweep()["repeats"] == 1
    repeat = Notification.objects.get(alerts=alert, kind="repeat")
    deliver(services.notification_send(notification_id=repeat.pk))
    assert webhook_server.wait(2)[1]["json"]["title"].startswith("[STILL OPEN]")
    assert services.notifications_sweep()["repeats"] == 0  # it was just sent
    # Acknowledged: someone is on it, no more repeats.
    services.alert_acknowledge(alert=alert, user=UserFactory(staff=True))
    Alert.objects.filter(pk=alert.pk).update(last_notified_at=timezone.now() - timedelta(minutes=120))
    assert services.notifications_sweep()["repeats"] == 0
    # The rule now names another channel: the resolution still goes where the alert went, once.
    second = NotificationChannelFactory(name="second", url=webhook_server.url("second"))
    rule.channels.set([second])
    services.alert_condition_clear(rule=rule, subject="h1", message="CPU 20.0%: back within CPU > 90%.")
    (resolution,) = Notification.objects.filter(alerts=alert, kind="resolved")
    deliveries = services.notification_send(notification_id=resolution.pk)
    assert [d.channel_id for d in deliveries] == [first.pk]
    deliver(deliveries)
    got = webhook_server.wait(3)
    assert got[2]["json"]["title"].startswith("[RESOLVED]") and got[2]["path"] == "/first"
    assert "back within" in got[2]["json"]["message"]
    with pytest.raises(services.Conflict):
        services.alert_resolve(alert=alert, user=UserFactory(staff=True))
    assert Notification.objects.filter(alerts=alert, kind="resolved").count() == 1
    assert len(webhook_server.settle(0.5)) == 3


def test_an_alert_never_notified_resolves_quietly(rules):
    silenced = SilenceFactory(matchers={"rule": "cpu-high"})
    alert = raise_alert(rules["cpu-high"])
    assert alert.silence_id == silenced.pk
    services.alert_condition_clear(rule=rules["cpu-high"], subject="h1")
    assert not Notification.objects.filter(alerts=alert).exists()


# --- messages and the alert's page --------------------------------------------------------------


def test_the_message_says_what_where_since_and_what_to_do_with_a_short_subject_and_a_link(smtp_server, rules):
    NotificationChannelFactory(url=smtp_server.url(to="oncall@example.com"))
    long = "Worker missing: " + "celery@" + "very-long-host-name-" * 8
    alert = raise_alert(rules["worker-missing"], subject="worker:celery@x", title=long)
    deliver(send_due(alert))
    (message,) = smtp_server.wait(1)
    subject = message["Subject"]
    assert len(subject) <= SUBJECT_MAX and subject.startswith("[CRITICAL] Worker missing") and subject.endswith("…")
    text = SmtpServer.text(message)
    assert "What:" in text and "Where: worker:celery@x" in text and "Since:" in text and "What to do:" in text
    link = f"{settings.SITE_URL.rstrip('/')}/monitoring/alerts/{alert.pk}/"
    assert link in text and link.startswith("http")


def test_the_alert_page_and_the_deliveries_api_show_each_delivery_without_secrets(client, user, other_user, rules):
    alpha = member(user, "viewer", ProjectFactory(slug="alpha"))
    member(other_user, "maintainer", ProjectFactory(slug="beta"))
    NotificationChannelFactory(name="broken", url=f"jsons://user:s3cretpass@127.0.0.1:{closed_port()}/t0ken-path")
    alert = services.alert_raise(rule=rules["training-failed"], rule_kind="training_failed", subject="training_job.9",
                                 title="Failed: training #9", project=alpha,
                                 suggested_actions=["Check the target column."])
    (delivery,) = send_due(alert)
    assert services.delivery_attempt(delivery_id=delivery.pk) is not None  # failed, will retry
    client.force_login(user)
    page = client.get(f"/monitoring/alerts/{alert.pk}/")
    html = page.content.decode()
    assert page.status_code == 200
    for text in ("Failed: training #9", "training_job.9", "Check the target column.", "broken", 'data-status="pending"',
                 "alpha"):
        assert text.lower() in html.lower(), text
    assert "s3cretpass" not in html and "t0ken-path" not in html
    assert 'src="/static/js/pages/alert_detail.js"' in html and "<script>" not in html
    fragment = client.get(f"/monitoring/alerts/{alert.pk}/body/").content.decode()
    assert fragment.startswith("<div id=\"alert-body\"") or 'id="alert-body"' in fragment
    (row,) = client.get(f"/api/alerts/{alert.pk}/deliveries/").json()
    assert row["channel_name"] == "broken" and row["attempts"] == 1 and row["status"] == "pending"
    assert row["kind"] == "firing" and row["error"] and "s3cretpass" not in row["error"]
    assert set(row) == {"id", "channel_id", "channel_name", "status", "attempts", "error", "last_attempt_at",
                        "sent_at", "kind"}
    # The Monitoring page's row links to it.
    assert f'href="/monitoring/alerts/{alert.pk}/"' in client.get("/monitoring/").content.decode()
    # Another project's alert is as unknown as a missing one.
    client.force_login(other_user)
    for url in (f"/monitoring/alerts/{alert.pk}/", f"/monitoring/alerts/{alert.pk}/body/",
                f"/api/alerts/{alert.pk}/deliveries/"):
        assert client.get(url).status_code == 404, url


# --- through the session's worker -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_five_failures_of_one_rule_within_the_window_make_one_message(worker, webhook_server, rules):
    NotificationChannelFactory(url=webhook_server.url())
    rule = rules["processing-job-failed"]
    with transaction.atomic():  # all five open before the group's countdown can even start
        alerts = [services.alert_raise(rule=rule, rule_kind=rule.kind, subject=f"processing_job.{i}",
                                       title=f"Failed: processing job #{i}", message="boom") for i in range(5)]
    (message,) = webhook_server.wait(1, timeout=60)
    assert "(+4 more)" in message["json"]["title"]
    assert all(f"processing job #{i}" in message["json"]["message"] for i in range(5))
    # Well past the window (and a retry's backoff): still one message.
    assert len(webhook_server.settle(settings.NOTIFY_GROUP_SECONDS * 2 + 2)) == 1
    assert Delivery.objects.get().status == "sent"
    assert {a.pk for a in Notification.objects.get().alerts.all()} == {a.pk for a in alerts}


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL (SQLite locks the file)")
def test_two_processes_opening_alerts_of_one_rule_at_once_make_one_group(rules):
    from django.db import connections

    rule = rules["cpu-high"]
    barrier, errors = threading.Barrier(4), []

    def open_one(subject):
        try:
            barrier.wait(timeout=30)
            raise_alert(rule, subject)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=open_one, args=(f"h{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    (group,) = Notification.objects.filter(status="pending")
    assert group.alerts.count() == 4


def test_the_admin_edits_a_rules_channels_in_scope_only(client, staff_user, rules):
    glob = NotificationChannelFactory(name="ops")
    theirs = NotificationChannelFactory(name="beta-team", project=ProjectFactory(slug="beta"))
    client.force_login(staff_user)
    form = {"slug": "load", "name": "Load", "kind": "metric", "metric": "load_1", "comparison": "gt", "threshold": "4",
            "duration_seconds": "0", "priority": "low", "enabled": "on", "description": "", "suggested_actions": "[]",
            "repeat_interval_minutes": "60"}
    response = client.post("/admin/monitoring/alertrule/add/", {**form, "channels": [theirs.pk]})
    assert response.status_code == 200 and "global rule may name global channels only" in response.content.decode()
    assert not AlertRule.objects.filter(slug="load").exists()
    assert client.post("/admin/monitoring/alertrule/add/", {**form, "channels": [glob.pk]}).status_code == 302
    rule = AlertRule.objects.get(slug="load")
    assert list(rule.channels.all()) == [glob] and rule.repeat_interval_minutes == 60
    assert 'id="id_channels"' in client.get(f"/admin/monitoring/alertrule/{rule.pk}/change/").content.decode()
