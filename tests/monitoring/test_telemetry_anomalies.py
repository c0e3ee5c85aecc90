"""Streaming anomaly detection on telemetry: readings ingested through telemetry.services.points_ingest
are scored against their series' recent history (monitoring.services.telemetry_anomalies)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from monitoring import telemetry_detector
from monitoring.models import Alert, Anomaly
from monitoring.services import telemetry_anomalies
from telemetry import services as telemetry_services
from telemetry import signals as telemetry_signals
from telemetry.models import Metric, Source
from tests.conftest import session_cookie

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import telemetry_traces  # noqa: E402

T0 = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
STEP = 60  # s between readings


def readings(values, *, start=0, source="press-07", metric="temperature", t0=T0):
    return [telemetry_services.Reading(source=source, metric=metric, timestamp=t0 + timedelta(seconds=(start + i) * STEP),
                                       value=float(v)) for i, v in enumerate(values) if v is not None]


@pytest.fixture
def ingest(user, project, django_capture_on_commit_callbacks):
    """ingest(readings, project=...) -> the scoring's counts: points_ingest, then the scoring task's
    service on what its signal said (what the worker runs), in this process."""

    def _ingest(items, *, project=project):
        sent = []
        uid = "test-telemetry-scoring"
        telemetry_signals.points_ingested.connect(lambda **kw: sent.append(kw), weak=False, dispatch_uid=uid)
        try:
            with django_capture_on_commit_callbacks(execute=True):
                telemetry_services.points_ingest(user=user, project=project, readings=items)
        finally:
            telemetry_signals.points_ingested.disconnect(dispatch_uid=uid)
        counts = {"scored": 0, "opened": 0, "closed": 0, "skipped": 0}
        for kw in sent:
            with django_capture_on_commit_callbacks(execute=True):  # its events go out on commit
                result = telemetry_anomalies.telemetry_points_score(
                    project_id=kw["project_id"], series=telemetry_anomalies.batches_series(kw["batches"]))
            counts = {k: counts[k] + result[k] for k in counts}
        return counts

    return _ingest


def noise(n, *, level=62.0, sigma=0.4, seed=1):
    rng = np.random.default_rng(seed)
    return np.round(level + rng.normal(0, sigma, n), 1).tolist()


@pytest.mark.django_db
def test_a_step_fault_opens_one_anomaly_and_one_alert_which_resolves_when_it_ends(ingest, rules, project, events):
    values = noise(200)
    for i in range(100, 130):  # 30 readings 10 °C up: a heater stuck on
        values[i] += 10.0
    assert ingest(readings(values[:80]))["opened"] == 0
    counts = ingest(readings(values[80:125], start=80))  # the fault begins
    assert counts["opened"] == 1 and counts["scored"] == 45

    anomaly = Anomaly.objects.get()
    source = Source.objects.get(name="press-07")
    assert (anomaly.source, anomaly.entity, anomaly.metric, anomaly.telemetry_source, anomaly.project) == (
        "telemetry", "press-07", "temperature", source, project)
    assert T0 + timedelta(minutes=100) <= anomaly.observed_at <= T0 + timedelta(minutes=105)
    assert anomaly.value >= 70 and abs(anomaly.baseline - 62) < 1 and anomaly.score >= 6
    events.expect("anomaly_detected", source="telemetry", entity="press-07", metric="temperature",
                  source_id=source.pk, project_id=project.pk, anomaly_id=anomaly.pk,
                  observed_at=anomaly.observed_at.isoformat())

    alert = Alert.objects.get(rule_key="telemetry-anomaly")
    assert alert.subject == f"press-07#{source.pk}:temperature" and alert.project_id == project.pk
    assert alert.status == "open" and alert.priority in ("low", "medium") and anomaly.alert_id == alert.pk
    assert "press-07" in alert.title and "temperature" in alert.title
    events.expect("system_alert", alert={"id": alert.pk, "status": "open"}, project_id=project.pk)
    # Back to normal for a while (the readings after the fault): resolved, and one anomaly only.
    ingest(readings(values[125:], start=125))
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.auto_resolved and "back near" in alert.resolution_note
    assert Anomaly.objects.count() == 1 and Alert.objects.filter(rule_key="telemetry-anomaly").count() == 1


@pytest.mark.django_db
def test_the_direction_and_enabled_of_a_series_apply(ingest, rules):
    values = noise(160)
    for i in range(100, 130):
        values[i] -= 10.0
    ingest(readings(values[:2]))
    metric = Metric.objects.get(name="temperature")
    metric.anomaly = {"enabled": False}
    metric.save()
    ingest(readings(values[2:], start=2))
    assert not Anomaly.objects.exists() and not Alert.objects.exists()

    # Only up is bad for this one: the same drop is nothing; on again with both ways, it is one.
    other = readings(values, metric="power")
    ingest(other[:2])
    Metric.objects.filter(name="power").update(anomaly={"direction": "up"})
    ingest(other[2:])
    assert not Anomaly.objects.exists()
    Metric.objects.filter(name="power").update(anomaly={})
    ingest(readings(values, metric="power", start=1000))
    assert list(Anomaly.objects.values_list("metric", flat=True)) == ["power"]


@pytest.mark.django_db
def test_normal_noise_glitches_and_a_daily_cycle_raise_nothing(ingest, rules):
    trace = telemetry_traces.make_trace("daily_cycle", np.random.default_rng(7), step=120.0, hours=30)
    items = [telemetry_services.Reading(source="press-07", metric=m, value=v,
                                        timestamp=datetime.fromtimestamp(ms / 1000, tz=UTC))
             for _, m, ms, v in trace.readings()]
    scored = 0
    for a in range(0, len(items), 900):
        scored += ingest(items[a:a + 900])["scored"]
    assert scored == len(items)
    assert not Anomaly.objects.exists() and not Alert.objects.exists()


@pytest.mark.django_db
def test_a_stuck_sensor_is_an_anomaly(ingest, rules):
    values = noise(140)
    values[90:120] = [values[89]] * 30  # the driver repeats its last reading
    ingest(readings(values))
    anomaly = Anomaly.objects.get()
    assert anomaly.details["kind"] == "stuck" and anomaly.value == values[89]
    assert T0 + timedelta(minutes=90) <= anomaly.observed_at <= T0 + timedelta(minutes=105)
    alert = Alert.objects.get(rule_key="telemetry-anomaly")
    assert alert.title.startswith("Stuck sensor") and alert.status == "resolved"  # it varies again at 120


@pytest.mark.django_db
def test_a_disabled_rule_records_the_anomaly_without_an_alert(ingest, rules):
    rules["telemetry-anomaly"].enabled = False
    rules["telemetry-anomaly"].save()
    values = noise(140)
    for i in range(100, 130):
        values[i] += 10.0
    ingest(readings(values))
    assert Anomaly.objects.count() == 1 and not Alert.objects.exists()


def test_settings_of_a_series_are_checked():
    assert telemetry_anomalies.anomaly_spec_validate({"direction": "down", "agree": 2, "of": 4}) == {
        "direction": "down", "agree": 2, "of": 4}
    assert telemetry_anomalies.anomaly_spec_validate(None) == {}
    for bad, field in (({"direction": "sideways"}, "anomaly.direction"), ({"agree": 5, "of": 3}, "anomaly.agree"),
                       ({"window": 5}, "anomaly.window"), ({"sensitivity": 1}, "unknown field"),
                       ({"enabled": "no"}, "anomaly.enabled"), ({"min_change": -1}, "anomaly.min_change"),
                       ([1, 2], "an object")):
        with pytest.raises(ValidationError) as error:
            telemetry_anomalies.anomaly_spec_validate(bad)
        assert field in error.value.message_dict["anomaly"][0], (bad, error.value.message_dict)
    spec = telemetry_detector.spec_from({"enabled": False})
    assert spec.enabled is False and spec.window == telemetry_detector.DEFAULT.window


def test_a_fault_reaches_a_socket_of_the_project_through_the_worker(server, worker, open_socket, client, user,
                                                                    project, rules):
    sock = open_socket(cookie=session_cookie(client, user))
    values = noise(130)
    for i in range(100, 130):
        values[i] += 10.0
    telemetry_services.points_ingest(user=user, project=project, readings=readings(values[:100]))
    # The fault arrives reading by reading, as a machine sends it: each request is scored in the worker.
    for i in range(100, 110):
        telemetry_services.points_ingest(user=user, project=project, readings=readings(values[i:i + 1], start=i))
    event = sock.expect("anomaly_detected", timeout=60, source="telemetry", entity="press-07", metric="temperature",
                        project_id=project.pk)
    source = Source.objects.get(name="press-07")
    assert event["source_id"] == source.pk
    observed = datetime.fromisoformat(event["observed_at"])
    assert T0 + timedelta(minutes=100) <= observed <= T0 + timedelta(minutes=110)
    sock.expect("system_alert", timeout=30, alert={"status": "open", "subject": f"press-07#{source.pk}:temperature"})
    assert Anomaly.objects.filter(source="telemetry").count() == 1


@pytest.mark.django_db(transaction=True)
def test_workers_scoring_the_same_series_at_once_score_each_reading_once(user, project, rules):
    """Two workers handed overlapping batches of one series (a retry, a duplicate request) at the
    same moment: the series' lock makes them take turns, and each reading is scored once."""
    import threading

    from django.db import connection

    values = noise(140)
    for i in range(100, 130):
        values[i] += 10.0
    # Not through the session's worker here: the two scorers are this test's threads.
    uid = "monitoring.telemetry_points_score"
    telemetry_signals.points_ingested.disconnect(dispatch_uid=uid)
    try:
        telemetry_services.points_ingest(user=user, project=project, readings=readings(values))
    finally:
        telemetry_signals.points_ingested.connect(telemetry_anomalies.points_ingested_enqueue, dispatch_uid=uid)
    metric = Metric.objects.get(name="temperature")
    ms = [int((T0 + timedelta(seconds=i * STEP)).timestamp() * 1000) for i in (0, 139)]
    series = [{"metric_id": metric.pk, "source_id": metric.source_id, "start": ms[0], "end": ms[1], "count": 140}]
    results, barrier = [], threading.Barrier(2)

    def score():
        try:
            barrier.wait()
            results.append(telemetry_anomalies.telemetry_points_score(project_id=project.pk, series=series))
        finally:
            connection.close()

    threads = [threading.Thread(target=score) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(r["scored"] for r in results) == [0, 140]
    assert sum(r["opened"] for r in results) == 1 and Anomaly.objects.count() == 1
