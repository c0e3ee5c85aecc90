"""Silent telemetry sources: nothing for TELEMETRY_SILENT_FACTOR × the expected interval opens one
alert under the telemetry-silent rule (the source's project's); the next reading resolves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring.models import Alert
from monitoring.services import telemetry_anomalies
from telemetry import services as telemetry_services
from telemetry.models import Source
from tests.factories import ProjectFactory, member

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def send(user, project, *, at, source="press-07", value=1.0):
    telemetry_services.points_ingest(user=user, project=project, now=at, readings=[
        telemetry_services.Reading(source=source, metric="temperature", timestamp=at, value=value)])


@pytest.mark.django_db
def test_a_silent_source_alerts_once_and_its_next_reading_resolves_it(user, project, rules, events,
                                                                      django_capture_on_commit_callbacks):
    send(user, project, at=T0)
    Source.objects.filter(name="press-07").update(expected_interval_seconds=60)
    check = telemetry_anomalies.telemetry_silent_check
    assert check(now=T0 + timedelta(seconds=179)) == {"silent": 0, "back": 0}  # 3 × 60 s not passed yet
    assert not Alert.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        assert check(now=T0 + timedelta(seconds=181)) == {"silent": 1, "back": 0}
    source = Source.objects.get(name="press-07")
    assert source.silent_since == T0 + timedelta(seconds=180)
    alert = Alert.objects.get(rule_key="telemetry-silent")
    assert (alert.status, alert.project_id, alert.subject, alert.priority) == (
        "open", project.pk, f"press-07#{source.pk}", "medium")
    assert alert.title == "Silent: press-07"
    assert "since 2026-12-02 10:00:00 UTC" in alert.message and "every 60 s" in alert.message
    events.expect("system_alert", alert={"id": alert.pk, "status": "open"}, project_id=project.pk)
    # Later checks change nothing: one alert, not one per check.
    assert check(now=T0 + timedelta(minutes=30)) == {"silent": 0, "back": 0}
    alert.refresh_from_db()
    assert alert.occurrences == 1

    # It reports again: the next check resolves it (the scoring task does it at once, see below).
    send(user, project, at=T0 + timedelta(minutes=31))
    assert check(now=T0 + timedelta(minutes=31, seconds=5)) == {"silent": 0, "back": 1}
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.auto_resolved and "reports again" in alert.resolution_note
    assert Source.objects.get(pk=source.pk).silent_since is None


@pytest.mark.django_db
def test_a_new_reading_resolves_at_once_through_the_scoring(user, project, rules, django_capture_on_commit_callbacks):
    send(user, project, at=T0)
    telemetry_anomalies.telemetry_silent_check(now=T0 + timedelta(minutes=10))
    alert = Alert.objects.get(rule_key="telemetry-silent")
    sent = []
    from telemetry import signals

    signals.points_ingested.connect(lambda **kw: sent.append(kw), weak=False, dispatch_uid="t-silent")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            send(user, project, at=timezone_now())
    finally:
        signals.points_ingested.disconnect(dispatch_uid="t-silent")
    telemetry_anomalies.telemetry_points_score(project_id=project.pk,
                                               series=telemetry_anomalies.batches_series(sent[0]["batches"]))
    alert.refresh_from_db()
    assert alert.status == "resolved"


def timezone_now():
    from django.utils import timezone

    return timezone.now()


@pytest.mark.django_db
def test_a_projects_own_rule_applies_and_a_disabled_one_keeps_quiet(user, project, rules):
    from monitoring import services

    other = member(user, "editor", ProjectFactory(name="Plant B", slug="plant-b"))
    send(user, project, at=T0)
    send(user, other, at=T0)  # the same name in another project: its own source, its own alert
    mine = services.alert_rule_create(user=user, project=project, name="Press silent", kind="telemetry_silent",
                                      priority="high")
    telemetry_anomalies.telemetry_silent_check(now=T0 + timedelta(hours=1))
    alerts = {a.project_id: a for a in Alert.objects.filter(alert_type="telemetry")}
    assert alerts[project.pk].rule_id == mine.pk and alerts[project.pk].priority == "high"
    assert alerts[other.pk].rule_key == "telemetry-silent" and alerts[other.pk].priority == "medium"
    assert alerts[project.pk].subject != alerts[other.pk].subject

    services.alert_rule_update(rule=mine, user=user, enabled=False)  # resolves its open alert
    send(user, project, at=T0 + timedelta(hours=2))
    telemetry_anomalies.telemetry_silent_check(now=T0 + timedelta(hours=3))
    assert not Alert.objects.filter(project=project).exclude(status="resolved").exists()
    assert Source.objects.get(project=project).silent_since is not None  # silent, without an alert
