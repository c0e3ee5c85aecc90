"""Across real processes: metrics collected through a real beat schedule and Celery worker arrive on a
real socket and are stored; an ASGI server's own collector counts its sockets and their ping round
trips; the on-demand IsolationForest runs in a real worker on titanic.csv."""

from __future__ import annotations

import time

import pytest
from django.template.loader import render_to_string

from monitoring.models import Anomaly, AnomalyDetection, MetricSample
from tests import procs
from tests.conftest import session_cookie

from .conftest import FAST

pytestmark = pytest.mark.stack


@pytest.fixture
def own_worker(transactional_db):
    started = []

    def _start(**env):
        worker = procs.Worker(concurrency=2, **env).start()
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        worker.stop()


def test_beat_and_a_worker_collect_samples_that_arrive_on_a_real_socket(server, open_socket, client, user, rules,
                                                                        own_worker):
    sock = open_socket(cookie=session_cookie(client, user))
    # The worker's own collector thread is off: every sample here comes through beat's schedule.
    worker = own_worker(beat=True, **FAST, MONITORING_HOST="beat-host", MONITORING_COLLECTOR_ROLE="off")

    got = sock.recv_until(lambda e: e["type"] == "system_metrics" and e["host"] == "beat-host", timeout=90)
    metrics = got[-1]
    assert metrics["role"] == "worker" and 0 <= metrics["cpu_percent"] <= 100
    assert 0 < metrics["memory_percent"] <= 100 and 0 < metrics["disk_percent"] <= 100
    assert metrics["current_health"] in ("healthy", "warning", "critical")
    assert "current_accuracy" not in metrics and "predictions_per_minute" not in metrics  # a host's figures only
    types = {e["type"] for e in got}
    got += sock.recv_until(lambda e: e["type"] == "system_metrics" and e["host"] == "beat-host", timeout=60)
    types |= {e["type"] for e in got}
    assert {"performance_metrics", "chart_data"} <= types

    # The checks run on the same schedule: the worker that runs them reports itself with its queue.
    health = sock.recv_until(lambda e: e["type"] == "service_health" and any(
        s["name"] == "celery" and s["status"] == "healthy" for s in e["services"]), timeout=60)[-1]
    celery = next(s for s in health["services"] if s["name"] == "celery")
    mine = next(w for w in celery["workers"] if w["name"] == worker.hostname)
    assert "celery" in mine["queues"] and mine["active_count"] >= 0
    assert {s["name"] for s in health["services"]} == {"database", "redis", "channel_layer", "celery",
                                                       "socket_server", "model_serving"}

    # One sample per host per interval, whoever asks (the collector thread and beat both do): over
    # any stretch the test times itself, at most one more sample than lock periods (0.9 interval)
    # began, plus one already under way. A slow machine only takes fewer.
    raw = MetricSample.objects.filter(host="beat-host", resolution="raw")
    started, before = time.monotonic(), raw.count()
    procs.wait_for(lambda: raw.count() >= before + 10, timeout=120, message="ten more stored samples")
    taken, elapsed = raw.count() - before, time.monotonic() - started
    assert taken <= elapsed / 0.9 + 2, (taken, elapsed)

    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(name="monitoring-collect")
    assert task.interval.every == 1 and task.task == "monitoring.metrics_collect"


def test_an_asgi_server_reports_its_sockets_and_ping_round_trips(client, user, rules, transactional_db):
    server = procs.Server(**FAST, MONITORING_HOST="asgi-host").start()
    try:
        from websockets.sync.client import connect

        from django.conf import settings

        cookie = session_cookie(client, user)
        headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"}
        def reported(sock, connections, timeout=60):
            import json
            import time

            deadline, seen = time.monotonic() + timeout, []
            while time.monotonic() < deadline:
                event = json.loads(sock.recv(timeout=60))
                if event["type"] == "system_metrics" and event["host"] == "asgi-host":
                    seen.append((event["active_connections"], event["ws_response_time_ms"]))
                    if event["active_connections"] == connections and event["ws_response_time_ms"] is not None:
                        return event
            raise AssertionError(f"no system_metrics with {connections} sockets in {timeout} s; (sockets, rtt) seen: {seen[-10:]}")

        with connect(server.ws_url, additional_headers=headers, origin=server.url) as a:
            with connect(server.ws_url, additional_headers=headers, origin=server.url):
                a.send('{"type": "ping", "ts": 1, "rtt": 42}')
                event = reported(a, 2)
                assert event["role"] == "asgi" and event["ws_response_time_ms"] == 42
            assert reported(a, 1)["active_connections"] == 1  # a closed socket leaves the count
            # An API request through this server is timed by the middleware.
            import httpx

            httpx.get(server.url + "/api/monitoring/system/", cookies={settings.SESSION_COOKIE_NAME: cookie})
            sample = procs.wait_for(
                lambda: MetricSample.objects.filter(host="asgi-host", api_response_time_ms__isnull=False).first(),
                timeout=60, message="a sample with the API p95")
            assert sample.api_response_time_ms > 0 and sample.role == "asgi"
    finally:
        server.stop()


def test_isolation_forest_on_titanic_through_a_real_worker(worker, client, user, ready_dataset, events):
    dataset = ready_dataset("titanic.csv")
    client.force_login(user)
    response = client.post("/api/anomaly/detect/", {"dataset": dataset.pk, "contamination": 0.05},
                           content_type="application/json")
    assert response.status_code == 202, response.json()
    detection_id = response.json()["id"]
    assert response.json()["status"] == "queued"

    detection = procs.wait_for(
        lambda: AnomalyDetection.objects.filter(pk=detection_id, status__in=["succeeded", "failed"]).first(),
        timeout=90, message="the detection to finish")
    assert detection.status == "succeeded", detection.error
    assert detection.n_rows == 891 and 30 <= detection.n_flagged <= 60
    assert detection.share_flagged == pytest.approx(detection.n_flagged / 891, abs=1e-6)
    assert "fare" in detection.columns_used and "age" in detection.columns_used
    assert "sex" not in detection.columns_used
    top = detection.top_rows
    assert len(top) == 50 and [r["score"] for r in top] == sorted((r["score"] for r in top), reverse=True)
    assert top[0]["score"] == pytest.approx(detection.max_score, abs=1e-4) and top[0]["flagged"]
    assert set(top[0]["values"]) == set(dataset.column_names)

    body = client.get(f"/api/anomaly/detect/{detection_id}/").json()
    assert body["status"] == "succeeded" and len(body["top_rows"]) == 50
    assert client.get(f"/api/anomaly/datasets/{dataset.pk}/").json()["id"] == detection_id
    scores = client.get(f"/api/anomaly/detect/{detection_id}/scores/").json()
    assert scores["count"] == 891 and len(scores["scores"]) == 891
    assert sum(s > scores["threshold"] for s in scores["scores"]) == pytest.approx(detection.n_flagged, abs=2)
    page = client.get(f"/api/anomaly/detect/{detection_id}/scores/?offset=880&limit=50").json()
    assert len(page["scores"]) == 11

    # The worker publishes once its transaction has committed: the row can read succeeded a moment before.
    [event] = procs.wait_for(lambda: [e for e in events("anomaly_detected") if e.get("detection_id") == detection_id],
                             timeout=60, message="anomaly_detected")
    assert (event["source"], event["entity"], event["metric"]) == ("dataset", "titanic", "isolation_forest")
    assert event["value"] == pytest.approx(detection.share_flagged) and event["dataset_id"] == dataset.pk
    assert event["anomaly_score"] == pytest.approx(detection.max_score, abs=1e-4)
    assert event["severity"] == "medium"  # about 5% of the rows
    assert Anomaly.objects.get(detection=detection).severity == "medium"

    html = render_to_string("monitoring/includes/dataset_anomalies.html", {"dataset": dataset})
    assert f'data-row="{top[0]["row"]}"' in html and "891" in html and 'data-flagged="true"' in html


def test_a_server_started_as_make_run_starts_it_reports_its_sockets_and_api_times(client, user, own_worker):
    """`make run` leaves the host's samples to the workers (MONITORING_COLLECTOR_ROLE=worker on its
    servers): the servers still report their open sockets and API p95, which the workers' samples
    and the dashboard show; the host's samples stay the workers'."""
    import httpx
    from django.conf import settings
    from websockets.sync.client import connect

    host = "make-run-host"
    server = procs.Server(**FAST, MONITORING_HOST=host, MONITORING_COLLECTOR_ROLE="worker").start()
    try:
        own_worker(**FAST, MONITORING_HOST=host)
        cookie = session_cookie(client, user)
        client.force_login(user)
        headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"}
        with connect(server.ws_url, additional_headers=headers, origin=server.url):
            procs.wait_for(lambda: client.get("/api/monitoring/system/").json()["active_connections"] == 1,
                           timeout=60, message="the dashboard's open sockets to count the server's socket")
            httpx.get(server.url + "/api/monitoring/system/", cookies={settings.SESSION_COOKIE_NAME: cookie})
            procs.wait_for(lambda: MetricSample.objects.filter(host=host, api_response_time_ms__gt=0).exists(),
                           timeout=60, message="a sample with the server's API p95")
        assert set(MetricSample.objects.filter(host=host).values_list("role", flat=True)) == {"worker"}
    finally:
        server.stop()
