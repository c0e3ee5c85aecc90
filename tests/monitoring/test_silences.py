"""Silences, snoozes and maintenance windows: the API's contract and validation, who may make them,
their effect on alerts (marked silenced at once, cleared when one ends early), the silenced filter,
maintenance windows at the right times, and end to end through the session's real worker and a
real HTTP receiver: a silence made from an alert stops its rule's next message and lets it through
again once it has ended."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.test import Client
from django.utils import timezone

from mlops_dashboard.models import AuditEntry
from monitoring import silencing
from monitoring import services
from monitoring.models import Alert, AlertRule, MaintenanceWindow, Notification, Silence
from tests import procs
from tests.factories import (AlertFactory, AlertRuleFactory, MaintenanceWindowFactory, NotificationChannelFactory,
                             ProjectFactory, SilenceFactory, UserFactory, member)

UTC = dt_timezone.utc


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post(client, url, body=None, method="post"):
    return getattr(client, method)(url, json.dumps(body or {}), content_type="application/json")


def later(**kw) -> str:
    return (timezone.now() + timedelta(**kw)).isoformat()


@pytest.fixture
def team(db):
    alpha = ProjectFactory(slug="alpha", name="Alpha")
    beta = ProjectFactory(slug="beta", name="Beta")
    people = {name: UserFactory(username=name) for name in ("maint", "edit", "view", "bee")}
    member(people["maint"], "maintainer", alpha)
    member(people["edit"], "editor", alpha)
    member(people["view"], "viewer", alpha)
    member(people["bee"], "maintainer", beta)
    people["staff"] = UserFactory(username="root", staff=True)
    rule = AlertRuleFactory(slug="alpha-jobs", project=alpha, kind="job_failed", metric="", threshold=None,
                            name="Alpha jobs failing")
    return {"alpha": alpha, "beta": beta, "rule": rule, **people}


def project_alert(team, subject="processing_job.1"):
    return AlertFactory(rule=team["rule"], project=team["alpha"], subject=subject, alert_type="job_failed")


# --- pure: maintenance schedules -----------------------------------------------------------------------------


def test_a_window_holds_from_each_firing_for_its_duration():
    saturday_2am = "0 2 * * 6"  # 2026-12-05 is a Saturday
    assert silencing.window_active(saturday_2am, 60, datetime(2026, 12, 5, 2, 0, tzinfo=UTC)) == \
        datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
    assert silencing.window_active(saturday_2am, 60, datetime(2026, 12, 5, 2, 59, 59, tzinfo=UTC)) is not None
    assert silencing.window_active(saturday_2am, 60, datetime(2026, 12, 5, 3, 0, tzinfo=UTC)) is None
    assert silencing.window_active(saturday_2am, 60, datetime(2026, 12, 5, 1, 59, tzinfo=UTC)) is None
    assert silencing.window_active(saturday_2am, 60, datetime(2026, 12, 6, 2, 30, tzinfo=UTC)) is None  # Sunday
    # Across midnight: 23:00 for 2 h holds at 00:30 the next day.
    assert silencing.window_active("0 23 * * *", 120, datetime(2026, 12, 6, 0, 30, tzinfo=UTC)) == \
        datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
    assert silencing.window_active("not a cron", 60, datetime(2026, 12, 5, 2, 0, tzinfo=UTC)) is None


@pytest.mark.django_db
def test_silence_for_a_window_gives_its_end_and_no_silence(rules):
    window = MaintenanceWindowFactory(matchers={"rule": "cpu-high"}, cron="0 2 * * *", duration_minutes=60)
    at = datetime(2026, 12, 5, 2, 15, tzinfo=UTC)
    held = services.silence_for(rule="cpu-high", priority="high", subject="h1", project_id=None, now=at)
    assert held == (None, datetime(2026, 12, 5, 3, 0, tzinfo=UTC))
    assert services.silence_for(rule="disk-full", priority="high", subject="h1", project_id=None, now=at) is None
    window.enabled = False
    window.save()
    assert services.silence_for(rule="cpu-high", priority="high", subject="h1", project_id=None, now=at) is None


# --- the API: silences ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_silence_a_global_rule_and_matching_alerts_show_silenced(team, rules):
    alert = AlertFactory(rule=rules["cpu-high"], subject="h1")
    other = AlertFactory(rule=rules["cpu-high"], subject="h2")
    response = post(as_user(team["staff"]), "/api/silences/", {
        "matchers": {"rule": "cpu-high", "subject": "h1"}, "ends_at": later(hours=2), "comment": "disk swap"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "silence" and body["state"] == "active" and body["project"] is None
    assert body["matchers"] == {"rule": "cpu-high", "subject": "h1"} and body["created_by"] == "root"
    assert set(body) == {"id", "kind", "matchers", "project", "starts_at", "ends_at", "comment", "created_by",
                         "created_at", "state"}
    alert.refresh_from_db()
    other.refresh_from_db()
    assert alert.is_silenced and alert.silence_id == body["id"] and not other.is_silenced
    staff = as_user(team["staff"])
    assert [a["id"] for a in staff.get("/api/alerts/?silenced=true").json()["results"]] == [alert.pk]
    assert alert.pk not in [a["id"] for a in staff.get("/api/alerts/?silenced=false").json()["results"]]
    assert other.pk in [a["id"] for a in staff.get("/api/alerts/?silenced=false").json()["results"]]
    assert staff.get("/api/alerts/?silenced=maybe").status_code == 400
    assert AuditEntry.objects.filter(action="create", object_type__icontains="silence").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field"), [
    ({"matchers": {}, "ends_at": "+1"}, "matchers"),
    ({"matchers": {"colour": "red"}, "ends_at": "+1"}, "matchers"),
    ({"matchers": {"priority": "urgent"}, "ends_at": "+1"}, "matchers"),
    ({"matchers": "cpu-high", "ends_at": "+1"}, "matchers"),
    ({"matchers": {"rule": "cpu-high"}}, "ends_at"),
    ({"matchers": {"rule": "cpu-high"}, "ends_at": "-1"}, "ends_at"),
    ({"matchers": {"rule": "cpu-high"}, "ends_at": "+2400"}, "ends_at"),  # 100 days
    ({"matchers": {"rule": "cpu-high"}, "ends_at": "+1", "starts_at": "+2"}, "ends_at"),
    ({"matchers": {"rule": "cpu-high"}, "ends_at": "tomorrow"}, "ends_at"),
    ({"matchers": {"rule": "cpu-high"}, "ends_at": "+1", "comment": "x" * 501}, "comment"),
    ({"matchers": {"project": 999999}, "ends_at": "+1"}, "matchers"),
])
def test_bad_silences_are_400_naming_the_field_and_change_nothing(team, rules, body, field):
    for key in ("ends_at", "starts_at"):
        value = body.get(key)
        if isinstance(value, str) and value[:1] in "+-" and value[1:].isdigit():
            body[key] = (timezone.now() + timedelta(hours=int(value))).isoformat()
    response = post(as_user(team["staff"]), "/api/silences/", body)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert not Silence.objects.exists()


@pytest.mark.django_db
def test_a_maintainer_silences_its_project_rule_and_the_project_matcher_is_added(team):
    alert = project_alert(team)
    response = post(as_user(team["maint"]), "/api/silences/", {"matchers": {"rule": "alpha-jobs"},
                                                                 "ends_at": later(hours=1)})
    assert response.status_code == 201, response.content
    assert response.json()["matchers"] == {"rule": "alpha-jobs", "project": team["alpha"].pk}
    assert response.json()["project"] == team["alpha"].pk
    alert.refresh_from_db()
    assert alert.is_silenced
    # Its own project's silence never holds another project's alerts of a global rule back.
    response = post(as_user(team["maint"]), "/api/silences/", {"matchers": {"rule": "alpha-jobs",
                                                                             "project": team["beta"].pk},
                                                                 "ends_at": later(hours=1)})
    assert response.status_code == 400 and "matchers" in response.json()["errors"]


@pytest.mark.django_db
def test_who_may_silence(team, rules):
    global_body = {"matchers": {"rule": "cpu-high"}, "ends_at": later(hours=1)}
    alpha_body = {"matchers": {"project": team["alpha"].pk, "subject": "training_job.*"}, "ends_at": later(hours=1)}
    # A global silence: staff only (403 naming admin for a maintainer).
    response = post(as_user(team["maint"]), "/api/silences/", global_body)
    assert response.status_code == 403 and "admin" in response.json()["detail"]
    # A project's: its maintainers; an editor or a viewer is refused naming the role; an outsider 404.
    for name in ("edit", "view"):
        response = post(as_user(team[name]), "/api/silences/", alpha_body)
        assert response.status_code == 403 and "maintainer" in response.json()["detail"], name
    assert post(as_user(team["bee"]), "/api/silences/", alpha_body).status_code == 404
    assert post(as_user(team["bee"]), "/api/silences/", {"matchers": {"rule": "alpha-jobs"},
                                                          "ends_at": later(hours=1)}).status_code == 404
    assert not Silence.objects.exists()
    assert post(as_user(team["maint"]), "/api/silences/", alpha_body).status_code == 201
    assert post(as_user(team["staff"]), "/api/silences/", global_body).status_code == 201
    # Lists: the global ones and the user's projects'.
    assert len(as_user(team["view"]).get("/api/silences/").json()["results"]) == 2
    assert len(as_user(team["bee"]).get("/api/silences/").json()["results"]) == 1


@pytest.mark.django_db
def test_expiring_ends_it_now_keeps_the_row_and_unsilences_its_alerts(team, rules):
    alert = AlertFactory(rule=rules["cpu-high"], subject="h1")
    staff = as_user(team["staff"])
    first = post(staff, "/api/silences/", {"matchers": {"rule": "cpu-high"}, "ends_at": later(hours=1)}).json()
    longer = post(staff, "/api/silences/", {"matchers": {"subject": "h1"}, "ends_at": later(hours=3)}).json()
    alert.refresh_from_db()
    assert alert.silence_id == longer["id"]
    assert staff.delete(f"/api/silences/{longer['id']}/").status_code == 204
    alert.refresh_from_db()
    assert alert.is_silenced and alert.silence_id == first["id"]  # the other still holds it
    assert staff.delete(f"/api/silences/{first['id']}/").status_code == 204
    alert.refresh_from_db()
    assert not alert.is_silenced and alert.silence_id is None
    assert Silence.objects.count() == 2 and all(s.state == "expired" for s in Silence.objects.all())
    again = staff.delete(f"/api/silences/{first['id']}/")
    assert again.status_code == 409
    assert [s["id"] for s in staff.get("/api/silences/?state=expired").json()["results"]] == \
        sorted([first["id"], longer["id"]], reverse=True)
    assert staff.get("/api/silences/?state=active").json()["results"] == []
    assert staff.get("/api/silences/?state=soon").status_code == 400


@pytest.mark.django_db
def test_a_pending_silence_does_not_mark_alerts_yet(team, rules):
    alert = AlertFactory(rule=rules["cpu-high"], subject="h1")
    staff = as_user(team["staff"])
    body = post(staff, "/api/silences/", {"matchers": {"rule": "cpu-high"}, "starts_at": later(hours=1),
                                          "ends_at": later(hours=2)}).json()
    assert body["state"] == "pending"
    alert.refresh_from_db()
    assert not alert.is_silenced
    assert [s["id"] for s in staff.get("/api/silences/?state=pending").json()["results"]] == [body["id"]]
    assert staff.delete(f"/api/silences/{body['id']}/").status_code == 204
    assert Silence.objects.get().state == "expired"


@pytest.mark.django_db
def test_expire_rights(team, rules):
    global_silence = SilenceFactory()
    alpha_silence = SilenceFactory(matchers={"project": team["alpha"].pk}, project=team["alpha"])
    assert as_user(team["maint"]).delete(f"/api/silences/{global_silence.pk}/").status_code == 403
    assert as_user(team["edit"]).delete(f"/api/silences/{alpha_silence.pk}/").status_code == 403
    assert as_user(team["bee"]).delete(f"/api/silences/{alpha_silence.pk}/").status_code == 404
    assert as_user(team["maint"]).delete(f"/api/silences/{alpha_silence.pk}/").status_code == 204
    assert as_user(team["staff"]).delete(f"/api/silences/{global_silence.pk}/").status_code == 204


# --- snoozes --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_snooze_one_alert_alone(team, rules):
    alert = AlertFactory(rule=rules["cpu-high"], subject="h[1]*")
    neighbour = AlertFactory(rule=rules["cpu-high"], subject="h[1]-b")
    response = post(as_user(team["staff"]), f"/api/alerts/{alert.pk}/snooze/", {"minutes": 60})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "snooze" and body["matchers"]["rule"] == "cpu-high"
    ends = datetime.fromisoformat(body["ends_at"])
    assert timedelta(minutes=59) < ends - timezone.now() <= timedelta(minutes=60)
    alert.refresh_from_db()
    neighbour.refresh_from_db()
    assert alert.is_silenced and not neighbour.is_silenced  # the subject is matched literally
    payload = as_user(team["staff"]).get(f"/api/alerts/{alert.pk}/").json()
    assert payload["silenced"] is True and payload["silence_id"] == body["id"]


@pytest.mark.django_db
@pytest.mark.parametrize("minutes", [0, -5, 7 * 24 * 60 + 1, "soon", None])
def test_snooze_bounds(team, rules, minutes):
    alert = AlertFactory(rule=rules["cpu-high"], subject="h1")
    response = post(as_user(team["staff"]), f"/api/alerts/{alert.pk}/snooze/", {"minutes": minutes})
    assert response.status_code == 400 and "minutes" in response.json()["errors"]
    assert not Silence.objects.exists()


@pytest.mark.django_db
def test_snooze_rights_follow_the_alerts_rule(team, rules):
    job = project_alert(team)
    system = AlertFactory(rule=rules["cpu-high"], subject="h1")
    assert post(as_user(team["edit"]), f"/api/alerts/{job.pk}/snooze/", {"minutes": 60}).status_code == 403
    assert post(as_user(team["bee"]), f"/api/alerts/{job.pk}/snooze/", {"minutes": 60}).status_code == 404
    assert post(as_user(team["maint"]), f"/api/alerts/{system.pk}/snooze/", {"minutes": 60}).status_code == 403
    response = post(as_user(team["maint"]), f"/api/alerts/{job.pk}/snooze/", {"minutes": 60})
    assert response.status_code == 201
    assert response.json()["matchers"] == {"rule": "alpha-jobs", "subject": "processing_job.1",
                                           "project": team["alpha"].pk}
    job.status = "resolved"
    job.save()
    assert post(as_user(team["maint"]), f"/api/alerts/{job.pk}/snooze/", {"minutes": 60}).status_code == 409


# --- maintenance windows ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_maintenance_windows_crud_and_validation(team, rules):
    staff = as_user(team["staff"])
    response = post(staff, "/api/maintenance-windows/", {"matchers": {"rule": "cpu-high"}, "cron": "0 2 * * 6",
                                                        "duration_minutes": 90, "comment": "backups"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["project"] is None and body["enabled"] is True and "active_until" in body
    for bad, field in [({"cron": "every night"}, "cron"), ({"cron": "0 25 * * *"}, "cron"),
                       ({"duration_minutes": 0}, "duration_minutes"), ({"duration_minutes": 10081}, "duration_minutes"),
                       ({"matchers": {}}, "matchers")]:
        response = post(staff, "/api/maintenance-windows/", {"matchers": {"rule": "cpu-high"}, "cron": "0 2 * * *",
                                                            "duration_minutes": 30, **bad})
        assert response.status_code == 400 and field in response.json()["errors"], (bad, response.content)
        response = post(staff, f"/api/maintenance-windows/{body['id']}/", bad, method="patch")
        assert response.status_code == 400 and field in response.json()["errors"], (bad, response.content)
    assert MaintenanceWindow.objects.count() == 1
    assert MaintenanceWindow.objects.get().cron == "0 2 * * 6"
    response = post(staff, f"/api/maintenance-windows/{body['id']}/", {"enabled": False}, method="patch")
    assert response.status_code == 200 and response.json()["enabled"] is False
    assert staff.put(f"/api/maintenance-windows/{body['id']}/", "{}", content_type="application/json").status_code == 405
    # A maintainer: its project's windows only.
    maint = as_user(team["maint"])
    assert post(maint, "/api/maintenance-windows/", {"matchers": {"rule": "cpu-high"}, "cron": "0 2 * * *",
                                                    "duration_minutes": 30}).status_code == 403
    response = post(maint, "/api/maintenance-windows/", {"matchers": {"rule": "alpha-jobs"}, "cron": "*/5 * * * *",
                                                        "duration_minutes": 5})
    assert response.status_code == 201 and response.json()["matchers"]["project"] == team["alpha"].pk
    assert response.json()["active_until"] is not None  # every 5 minutes for 5 minutes: always
    assert as_user(team["edit"]).delete(f"/api/maintenance-windows/{response.json()['id']}/").status_code == 403
    assert as_user(team["bee"]).delete(f"/api/maintenance-windows/{response.json()['id']}/").status_code == 404
    assert maint.delete(f"/api/maintenance-windows/{body['id']}/").status_code == 403
    assert maint.delete(f"/api/maintenance-windows/{response.json()['id']}/").status_code == 204
    assert staff.delete(f"/api/maintenance-windows/{body['id']}/").status_code == 204
    assert not MaintenanceWindow.objects.exists()


@pytest.mark.django_db
def test_an_active_window_marks_alerts_and_holds_new_ones_back(team, rules, webhook_server):
    NotificationChannelFactory(url=webhook_server.url())
    old = AlertFactory(rule=rules["cpu-high"], subject="h9")
    staff = as_user(team["staff"])
    window = post(staff, "/api/maintenance-windows/", {"matchers": {"rule": "cpu-high"}, "cron": "* * * * *",
                                                      "duration_minutes": 2}).json()
    old.refresh_from_db()
    assert old.is_silenced and old.silence_id is None
    alert = services.alert_raise(rule_kind="metric", rule=rules["cpu-high"], subject="h1", title="CPU above 90% on h1")
    alert.refresh_from_db()
    assert alert.is_silenced and not Notification.objects.filter(alerts=alert).exists()
    assert staff.delete(f"/api/maintenance-windows/{window['id']}/").status_code == 204
    alert.refresh_from_db()
    assert not alert.is_silenced


@pytest.mark.django_db
def test_the_schema_documents_the_routes(team):
    schema = as_user(team["staff"]).get("/api/schema/", HTTP_ACCEPT="application/json")
    if schema.status_code != 200:
        pytest.skip("no JSON schema route")
    paths = schema.json()["paths"]
    assert set(paths["/api/silences/"]["post"]["responses"]) >= {"201", "400", "403", "404"}
    assert set(paths["/api/silences/{id}/"]["delete"]["responses"]) >= {"204", "403", "404", "409"}
    assert set(paths["/api/alerts/{id}/snooze/"]["post"]["responses"]) >= {"201", "400", "403", "404", "409"}
    assert "active_until" in json.dumps(schema.json()["components"]["schemas"]["MaintenanceWindow"])


# --- end to end: the real worker, a real HTTP receiver -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_silence_from_an_alert_stops_its_next_message_until_it_ends(worker, webhook_server, rules):
    staff = UserFactory(username="oncall", staff=True)
    client = as_user(staff)
    NotificationChannelFactory(url=webhook_server.url())

    def raise_cpu(subject):
        return services.alert_raise(rule_kind="metric", rule=AlertRule.objects.get(slug="cpu-high"), subject=subject,
                                    title=f"CPU above 90% on {subject}", message="CPU 97%")

    first = raise_cpu("h1")
    (message,) = webhook_server.wait(1)
    assert "h1" in message["json"]["title"]

    # A silence made from the alert (its rule and subject, as the row prefills them).
    payload = client.get(f"/api/alerts/{first.pk}/").json()
    response = post(client, "/api/silences/", {"matchers": {"rule": payload["rule"], "subject": payload["subject"]},
                                               "ends_at": later(hours=2), "comment": "looking into it"})
    assert response.status_code == 201, response.content
    silence_id = response.json()["id"]
    assert client.get(f"/api/alerts/{first.pk}/").json()["silenced"] is True
    services.alert_resolve(alert=first, user=staff)

    # The rule's next alert on h1 is recorded, silenced, not sent; another host's is (the control).
    held = raise_cpu("h1")
    assert Alert.objects.get(pk=held.pk).is_silenced
    raise_cpu("h2")
    messages = webhook_server.wait(2)
    assert "h2" in messages[1]["json"]["title"] and "more" not in messages[1]["json"]["title"]
    assert not Notification.objects.filter(alerts=held).exists()

    # Ended early: the alert it held (still open, never notified) goes out, and so does the next one.
    assert client.delete(f"/api/silences/{silence_id}/").status_code == 204
    held.refresh_from_db()
    assert not held.is_silenced
    messages = webhook_server.wait(3)
    assert "h1" in messages[2]["json"]["title"] and "RESOLVED" not in messages[2]["json"]["title"]
    procs.wait_for(lambda: Alert.objects.get(pk=held.pk).last_notified_at, timeout=60, message="held notified")
    services.alert_resolve(alert=Alert.objects.get(pk=held.pk), user=staff)
    raise_cpu("h1")
    titles = [m["json"]["title"] for m in webhook_server.wait(5)[3:]]
    assert sorted("RESOLVED" in t for t in titles) == [False, True] and all("h1" in t for t in titles), titles
    assert len(webhook_server.settle(1)) == 5


@pytest.mark.django_db
def test_beat_marks_silences_that_start_and_notifies_what_they_held_once_they_end(team, rules):
    alert = services.alert_raise(rule_kind="metric", rule=rules["cpu-high"], subject="h1", title="CPU on h1")
    Notification.objects.all().delete()  # its group: as if sent nowhere yet
    silence = SilenceFactory(matchers={"rule": "cpu-high"}, starts_at=timezone.now() + timedelta(minutes=1))
    assert services.notifications_sweep()["silences_changed"] == 0  # pending: nothing yet
    Silence.objects.filter(pk=silence.pk).update(starts_at=timezone.now() - timedelta(seconds=5))
    assert services.notifications_sweep()["silences_changed"] == 1
    alert.refresh_from_db()
    assert alert.is_silenced and alert.silence_id == silence.pk
    assert services.notifications_sweep()["silences_changed"] == 0  # once
    # It ends by itself (shortened: the alert marked with its new end, as a silence made so would).
    ends = timezone.now() + timedelta(seconds=1)
    Silence.objects.filter(pk=silence.pk).update(ends_at=ends)
    Alert.objects.filter(pk=alert.pk).update(silenced_until=ends)
    procs.wait_for(lambda: timezone.now() > ends, timeout=10, message="the silence's end")
    assert services.notifications_sweep()["silences_changed"] == 1
    alert.refresh_from_db()
    assert not alert.is_silenced and alert.silenced_until is None
    assert Notification.objects.filter(alerts=alert, kind="firing", status="pending").exists()


# --- the admin and the Monitoring page -------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_expires_silences_and_edits_windows_through_the_services(team, rules):
    client = as_user(team["staff"])
    alert = AlertFactory(rule=rules["cpu-high"], subject="h1")
    silence = services.silence_create(user=team["staff"], matchers={"rule": "cpu-high"}, ends_at=timezone.now() +
                                      timedelta(hours=1))
    assert client.get("/admin/monitoring/silence/").status_code == 200
    assert client.get(f"/admin/monitoring/silence/{silence.pk}/change/").status_code == 200
    client.post("/admin/monitoring/silence/", {"action": "expire_silences", "_selected_action": [silence.pk]})
    silence.refresh_from_db()
    alert.refresh_from_db()
    assert silence.state == "expired" and not alert.is_silenced
    bad = client.post("/admin/monitoring/maintenancewindow/add/", {
        "matchers": '{"rule": "cpu-high"}', "cron": "at night", "duration_minutes": "60", "comment": "", "enabled": "on"})
    assert bad.status_code == 200 and not MaintenanceWindow.objects.exists()
    response = client.post("/admin/monitoring/maintenancewindow/add/", {
        "matchers": '{"rule": "alpha-jobs"}', "cron": "0 2 * * 6", "duration_minutes": "60", "comment": "",
        "enabled": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    window = MaintenanceWindow.objects.get()
    assert window.project_id == team["alpha"].pk and window.matchers["project"] == team["alpha"].pk
    assert client.get("/admin/monitoring/maintenancewindow/").status_code == 200


@pytest.mark.django_db
def test_the_monitoring_page_shows_silences_windows_and_the_buttons_by_role(team, rules):
    from mlops_dashboard.models import ProjectPreference

    alert = project_alert(team)
    services.silence_create(user=team["maint"], matchers={"rule": "alpha-jobs"}, ends_at=timezone.now() +
                            timedelta(hours=1), comment="deploying")
    MaintenanceWindowFactory(matchers={"project": team["alpha"].pk}, project=team["alpha"], comment="backups")
    for name in ("maint", "view"):
        ProjectPreference.objects.update_or_create(user=team[name], defaults={"project": team["alpha"]})
    page = as_user(team["maint"]).get("/monitoring/").content.decode()
    assert 'data-action="silence"' in page and 'data-action="snooze"' in page and "Silenced until" in page
    assert "deploying" in page and "backups" in page and 'data-action="expire-silence"' in page
    assert 'id="silence-dialog"' in page and 'data-action="delete-window"' in page
    page = as_user(team["view"]).get("/monitoring/").content.decode()
    assert 'data-action="silence"' not in page and 'data-action="expire-silence"' not in page
    assert "needs the maintainer role" in page
    row = as_user(team["view"]).get(f"/monitoring/alerts/{alert.pk}/row/").content.decode()
    assert 'data-field="silenced"' in row and "Silenced until" in row
    for url in ("/monitoring/silences/section/", "/monitoring/maintenance-windows/section/"):
        response = as_user(team["bee"]).get(url)
        assert response.status_code == 200 and "deploying" not in response.content.decode()
        assert "backups" not in response.content.decode()


@pytest.mark.django_db
def test_the_role_is_checked_before_the_body(team, rules):
    job = project_alert(team)
    assert post(as_user(team["edit"]), f"/api/alerts/{job.pk}/snooze/", {"minutes": 0}).status_code == 403
    assert post(as_user(team["edit"]), "/api/silences/", {"matchers": {"project": team["alpha"].pk},
                                                          "ends_at": later(hours=-1)}).status_code == 403
    assert post(as_user(team["bee"]), "/api/maintenance-windows/", {
        "matchers": {"project": team["alpha"].pk}, "cron": "0 2 * * *", "duration_minutes": 0}).status_code in (400, 404)
