"""On-demand anomaly detection over a telemetry source's time range: validation, permissions, the
alignment, and a real worker flagging injected faults whose `anomaly_detected` reaches a socket."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from monitoring import isolation
from monitoring.models import Anomaly, AnomalyDetection
from telemetry import selectors as telemetry_selectors
from telemetry import store
from tests import procs
from tests.conftest import session_cookie
from tests.factories import MetricFactory, ProjectFactory, SourceFactory, UserFactory, member

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
STEP = 60
BASELINE = (T0, T0 + timedelta(hours=6))
RANGE = (T0 + timedelta(hours=6), T0 + timedelta(hours=8))
FAULT = (T0 + timedelta(hours=7), T0 + timedelta(hours=7, minutes=10))
URL = "/api/anomaly/detect/"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def write_trace(source, *, start=T0, end=RANGE[1], fault=FAULT, jitter=3, skip=()):
    """temperature, vibration and power of a machine every minute (a few seconds late), with a slight
    daily cycle and noise; during `fault` the temperature steps up and the vibration spikes."""
    rng = random.Random(7)
    series = {name: MetricFactory(source=source, name=name) for name in ("temperature", "vibration", "power")}
    rows, t = [], start
    while t <= end:
        phase = (t - T0).total_seconds() / 86400 * 2 * math.pi
        values = {"temperature": 70 + 0.5 * math.sin(phase) + rng.gauss(0, 0.3),
                  "vibration": 2 + rng.gauss(0, 0.05), "power": 12 + 0.2 * math.sin(phase) + rng.gauss(0, 0.1)}
        if fault and fault[0] <= t < fault[1]:
            values["temperature"] += 15
            values["vibration"] += 1.5
        at = t + timedelta(seconds=rng.randint(0, jitter))
        for name, value in values.items():
            if (name, t) not in skip:
                rows.append((series[name].pk, at, value))
        t += timedelta(seconds=STEP)
    store.points_write(rows)
    return series


@pytest.fixture
def source(project):
    return SourceFactory(project=project, name="press-07", expected_interval_seconds=STEP)


@pytest.fixture
def api(client, user):
    client.force_login(user)
    return client


def telemetry_body(**extra):
    body = {"source": "press-07", "start": iso(RANGE[0]), "end": iso(RANGE[1]), "contamination": 0.05,
            "baseline_start": iso(BASELINE[0]), "baseline_end": iso(BASELINE[1])}
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def post(api, body):
    return api.post(URL, body, content_type="application/json")


# --- the alignment --------------------------------------------------------------------------------


def test_aligned_rows_carry_a_reading_two_intervals_and_drop_rows_missing_a_metric(source):
    start = T0
    # temperature misses 3 readings in a row at 00:10, 00:11, 00:12: 00:10 and 00:11 carry 00:09's,
    # 00:12 has none within two intervals. vibration misses 00:20 alone: carried.
    skip = {("temperature", start + timedelta(minutes=m)) for m in (10, 11, 12)}
    skip |= {("vibration", start + timedelta(minutes=20))}
    write_trace(source, start=start, end=start + timedelta(minutes=30), fault=None, jitter=0, skip=skip)
    rows = telemetry_selectors.aligned_rows(source, ["temperature", "vibration"], start, start + timedelta(minutes=30))
    times = [datetime.fromtimestamp(ms / 1000, tz=UTC) for ms in rows.times]
    assert len(rows) == 30 and start + timedelta(minutes=12) not in times
    assert start + timedelta(minutes=11) in times and start + timedelta(minutes=20) in times
    i = times.index(start + timedelta(minutes=11))
    assert rows.values[i][0] == rows.values[times.index(start + timedelta(minutes=9))][0]
    assert rows.metrics == ["temperature", "vibration"] and all(len(r) == 2 for r in rows.values)
    # A metric with no reading at all: no row.
    assert len(telemetry_selectors.aligned_rows(source, ["temperature", "nothing"], start, start + timedelta(minutes=30))) == 0


def test_the_range_detector_flags_a_step_fault_against_its_baseline():
    rng = random.Random(1)
    baseline = [[70 + rng.gauss(0, 0.3), 2 + rng.gauss(0, 0.05)] for _ in range(500)]
    rows = [[70 + rng.gauss(0, 0.3), 2 + rng.gauss(0, 0.05)] for _ in range(200)]
    for i in range(100, 110):
        rows[i][0] += 10
    result = isolation.detect_range(rows, contamination=0.02, baseline=baseline)
    flagged = set(map(int, result.flagged.nonzero()[0]))
    assert set(range(100, 110)) <= flagged and len(flagged) <= 25
    assert all(int(result.deviating[i]) == 0 for i in range(100, 110))
    assert isolation.severity_for(result.threshold + 0.2, result.threshold) == "critical"
    assert isolation.severity_for(result.threshold + 0.01, result.threshold) == "low"
    # Without a baseline, the contamination share of the rows is flagged.
    alone = isolation.detect_range(rows, contamination=0.05)
    assert alone.n_flagged == pytest.approx(10, abs=2)


# --- validation and permissions ----------------------------------------------------------------------


def test_bad_requests_answer_400_naming_the_field_and_store_nothing(api, source, ready_dataset):
    write_trace(source)
    dataset = ready_dataset("titanic.csv")
    cases = [
        ({"contamination": 0.05}, "source"),  # neither
        (telemetry_body(dataset=dataset.pk), "source"),  # both
        (telemetry_body(start=None), "start"),
        (telemetry_body(start="yesterday"), "start"),
        (telemetry_body(start="2026-13-45T00:00:00Z"), "start"),
        (telemetry_body(end=iso(RANGE[0] - timedelta(minutes=1))), "end"),
        (telemetry_body(end=iso(RANGE[0] + timedelta(days=40))), "end"),
        (telemetry_body(metrics=["temperature", "humidity"]), "metrics"),
        (telemetry_body(contamination=0.9), "contamination"),
        (telemetry_body(columns=["x"]), "columns"),
        (telemetry_body(use_baseline=False), "use_baseline"),  # a baseline given without use_baseline
        ({"dataset": dataset.pk, "start": iso(RANGE[0])}, "start"),
    ]
    for body, field in cases:
        response = post(api, body)
        assert response.status_code == 400, (body, response.json())
        assert field in response.json()["errors"], (body, response.json())
    assert "humidity" in post(api, telemetry_body(metrics=["humidity"])).json()["errors"]["metrics"][0]
    assert not AnomalyDetection.objects.exists()


def test_too_few_aligned_rows_answer_400_saying_how_many(api, source):
    write_trace(source, start=BASELINE[1] - timedelta(minutes=60))  # an hour of baseline only
    response = post(api, telemetry_body())
    assert response.status_code == 400
    assert "61 aligned rows" in response.json()["errors"]["baseline_start"][0]
    response = post(api, telemetry_body(start=iso(RANGE[0]), end=iso(RANGE[0] + timedelta(minutes=30)),
                                        use_baseline=False, baseline_start=None, baseline_end=None))
    assert response.status_code == 400 and "31 aligned rows" in response.json()["errors"]["start"][0]
    # Epoch milliseconds are times too; without a baseline the range alone is enough.
    response = post(api, telemetry_body(start=int(RANGE[0].timestamp() * 1000), end=int(RANGE[1].timestamp() * 1000),
                                        use_baseline=False, baseline_start=None, baseline_end=None))
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["source_name"] == "press-07" and body["dataset_id"] is None and body["rows_range"] == 121
    assert body["metrics"] == ["power", "temperature", "vibration"] and body["use_baseline"] is False


def test_default_baseline_is_the_seven_days_before_start(api, source):
    write_trace(source, start=RANGE[0] - timedelta(hours=3))
    response = post(api, telemetry_body(baseline_start=None, baseline_end=None, metrics=["temperature"]))
    assert response.status_code == 202, response.json()
    detection = AnomalyDetection.objects.get(pk=response.json()["id"])
    assert detection.baseline_end == RANGE[0] and detection.baseline_start == RANGE[0] - timedelta(days=7)
    assert detection.rows_baseline == 181 and detection.metrics == ["temperature"]
    assert str(detection).startswith(f"Anomaly detection #{detection.pk} on press-07")


def test_permissions_viewer_403_outsider_404_unknown_source_404(client, source):
    write_trace(source)
    viewer = UserFactory(username="vic")
    member(viewer, "viewer", project=source.project)
    client.force_login(viewer)
    response = post(client, telemetry_body())
    assert response.status_code == 403 and "editor" in response.json()["detail"]
    outsider = UserFactory(username="olga")
    member(outsider, "editor", project=ProjectFactory(name="Other", slug="other"))
    client.force_login(outsider)
    assert post(client, telemetry_body()).status_code == 404
    assert post(client, telemetry_body(source=str(source.pk))).status_code == 404
    client.force_login(viewer)
    assert post(client, telemetry_body(source="press-99")).status_code == 404
    assert not AnomalyDetection.objects.exists()


def test_same_name_in_two_projects_needs_the_project(client, source):
    write_trace(source)
    other = ProjectFactory(name="Other", slug="other")
    SourceFactory(project=other, name="press-07", expected_interval_seconds=STEP)
    both = UserFactory(username="bea")
    member(both, "editor", project=source.project)
    member(both, "editor", project=other)
    client.force_login(both)
    assert post(client, telemetry_body()).status_code == 404
    response = post(client, telemetry_body(project=source.project_id))
    assert response.status_code == 202 and response.json()["source_id"] == source.pk


# --- through a real worker and a real socket ---------------------------------------------------------------


def test_a_range_detection_flags_injected_faults_and_their_anomalies_reach_the_socket(
        worker, server, open_socket, client, user, source, events):
    write_trace(source)
    socket = open_socket(cookie=session_cookie(client, user))
    response = post(client, telemetry_body(contamination=0.02))
    assert response.status_code == 202, response.json()
    detection_id = response.json()["id"]

    def observed(event):
        return datetime.fromisoformat(event["observed_at"].replace("Z", "+00:00"))

    got = socket.recv_until(lambda e: e["type"] == "anomaly_detected" and e.get("detection_id") == detection_id
                            and FAULT[0] <= observed(e) <= FAULT[1] + timedelta(minutes=1), timeout=120)
    event = got[-1]
    before = [e for e in got if e["type"] == "anomaly_detected" and e.get("detection_id") == detection_id]
    assert len(before) <= 3, before  # the fault's readings come first but for a false alarm or two
    assert event["entity"] == "press-07" and event["source_id"] == source.pk
    assert event["project_id"] == source.project_id and event["metric"] in ("temperature", "vibration")
    socket.expect("anomaly_detection_completed", timeout=120, detection_id=detection_id, status="succeeded")

    detection = AnomalyDetection.objects.get(pk=detection_id)
    assert detection.status == "succeeded", detection.error
    assert detection.n_rows == 121 and detection.rows_baseline == 361
    anomalies = list(Anomaly.objects.filter(detection=detection).order_by("observed_at"))
    assert len(anomalies) == detection.n_flagged
    inside = [a for a in anomalies if FAULT[0] <= a.observed_at < FAULT[1] + timedelta(minutes=1)]
    assert len(inside) >= 9  # the fault's ten readings (the first one may be carried over)
    assert len(anomalies) - len(inside) <= 5  # few false alarms
    first = inside[0]
    assert first.source == "telemetry" and first.telemetry_source_id == source.pk and first.entity == "press-07"
    assert set(first.details["values"]) == {"power", "temperature", "vibration"}
    assert first.value == first.details["values"][first.metric]
    assert first.severity in ("low", "medium", "high", "critical") and first.project_id == source.project_id
    sent = procs.wait_for(lambda: [e for e in events("anomaly_detected") if e.get("detection_id") == detection_id]
                          if len(events("anomaly_detection_completed")) else None, timeout=60, message="the events")
    assert len(sent) == min(50, len(anomalies))
    progress = [e["progress"] for e in events("anomaly_detection_progress") if e["detection_id"] == detection_id]
    assert progress and progress == sorted(progress)
    events.expect("anomaly_detection_progress", detection_id=detection_id, project_id=source.project_id)
    # The API shows it.
    body = client.get(f"/api/anomaly/detect/{detection_id}/").json()
    assert body["source_name"] == "press-07" and body["n_flagged"] == len(anomalies) and len(body["top_rows"]) == 50
    listed = client.get(f"/api/anomalies/?source=telemetry").json()["results"]
    assert listed and listed[0]["telemetry_source"] == source.pk and listed[0]["observed_at"]


def test_a_detection_whose_data_went_away_fails_cleanly(api, source, events):
    from monitoring import services
    from telemetry.models import Point

    series = write_trace(source)
    response = post(api, telemetry_body(use_baseline=False, baseline_start=None, baseline_end=None))
    assert response.status_code == 202
    Point.objects.filter(series_id__in=[m.pk for m in series.values()], timestamp__gte=RANGE[0]).delete()
    # Run here (the queued message, if a worker takes it later, finds the row already ended).
    services.anomaly_detection_run(detection_id=response.json()["id"])
    detection = AnomalyDetection.objects.get(pk=response.json()["id"])
    assert detection.status == "failed" and "The range now has 2 aligned rows" in detection.error  # the two carried over
    events.expect("anomaly_detection_completed", detection_id=detection.pk, status="failed", entity="press-07")
    assert not Anomaly.objects.filter(detection=detection).exists()


def test_an_in_process_run_records_each_flagged_reading_and_sends_the_first_50(api, source, events):
    from monitoring import services

    write_trace(source)
    response = post(api, telemetry_body(contamination=0.5, use_baseline=False, baseline_start=None,
                                        baseline_end=None))
    assert response.status_code == 202
    detection = services.anomaly_detection_run(detection_id=response.json()["id"])
    assert detection.status == "succeeded" and detection.n_flagged > 50
    assert Anomaly.objects.filter(detection=detection).count() == detection.n_flagged
    sent = [e for e in events("anomaly_detected") if e.get("detection_id") == detection.pk]
    assert len(sent) == 50 and [e["observed_at"] for e in sent] == sorted(e["observed_at"] for e in sent)
    events.expect("anomaly_detection_completed", detection_id=detection.pk, status="succeeded",
                  n_flagged=detection.n_flagged, n_rows=121)
    # Deleting it takes its anomalies and score file; the retention pruner treats it like any other.
    services.anomaly_detection_delete(detection=detection, user=None)
    assert not Anomaly.objects.filter(source="telemetry").exists()


def test_retention_prunes_old_telemetry_detections_and_keeps_a_datasets_latest(project):
    from django.utils import timezone

    from monitoring.services.rollup import anomalies_prune
    from tests.factories import AnomalyDetectionFactory, TelemetryDetectionFactory

    old = timezone.now() - timedelta(days=400)
    telemetry = TelemetryDetectionFactory(status="succeeded", finished_at=old)
    kept = AnomalyDetectionFactory(status="succeeded", finished_at=old)
    Anomaly.objects.create(source="telemetry", entity=telemetry.source_name, metric="temperature", value=1.0,
                           score=0.7, severity="low", detection=telemetry, project=telemetry.project,
                           telemetry_source=telemetry.source, observed_at=old)
    assert str(telemetry).endswith(f"on {telemetry.source.name} (succeeded)")
    anomalies_prune(timezone.now() - timedelta(days=30))
    assert list(AnomalyDetection.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not Anomaly.objects.exists()
