"""The monitoring API: polling fallbacks that answer what the events carry, alerts and rules, the
activity feed, anomalies, and 4xx on bad input."""

import pytest

from mlops_dashboard.activity import activity_record
from monitoring import services
from monitoring.models import Alert, AlertRule

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(client, user):
    client.force_login(user)
    return client


@pytest.mark.parametrize("url", ["/api/monitoring/system/", "/api/monitoring/metrics/", "/api/activity/",
                                 "/api/alerts/", "/api/alert-rules/", "/api/anomalies/", "/api/anomaly/detect/"])
def test_endpoints_need_a_login(client, url):
    assert client.get(url).status_code in (401, 403)


def test_system_answers_the_last_system_metrics_of_each_host_and_the_health(api, feed, events, rules):
    feed("h1", cpu_percent=85)
    feed("h2", cpu_percent=10)
    body = api.get("/api/monitoring/system/").json()
    assert body["health"]["level"] == "warning" and "h1" in body["health"]["reason"]
    by_host = {h["host"]: h for h in body["hosts"]}
    published = {e["host"]: e for e in events("system_metrics")}
    for host in ("h1", "h2"):
        for field, value in published[host].items():
            if field not in ("type", "id", "timestamp"):
                assert by_host[host][field] == value, field
        assert by_host[host]["stale"] is False
    events.expect("system_metrics", host="h1", cpu_percent=85.0, current_health="warning")
    events.expect("performance_metrics", cpu_usage=10.0, memory_usage=40.0, disk_usage=50.0)
    events.expect("chart_data", resource={"host": "h2", "cpu": 10.0, "memory": 40.0},
                  network={"host": "h2", "sent_rate": 1000.0, "recv_rate": 2000.0})


def test_metrics_series_and_bad_queries(api, feed):
    feed("h1", cpu_percent=12)
    body = api.get("/api/monitoring/metrics/?minutes=5").json()
    assert body["resolution"] == "raw" and body["hosts"]["h1"]["cpu_percent"] == [12.0]
    for query in ("minutes=0", "minutes=abc", "minutes=999999"):
        response = api.get(f"/api/monitoring/metrics/?{query}")
        assert response.status_code == 400 and "minutes" in response.json()["errors"]


def test_activity_pages_and_filters_with_the_event_payload(api, user, other_user, events, project):
    activity_record(title="one", action_type="upload", user=user, project=project)
    activity_record(title="two", action_type="deploy", user=other_user, project=project)
    activity_record(title="three", action_type="upload", user=other_user, project=project)
    body = api.get("/api/activity/?limit=2").json()
    assert body["count"] >= 3 and len(body["results"]) == 2 and body["next"]
    assert [a["title"] for a in api.get("/api/activity/?action_type=upload").json()["results"]][:2] == ["three", "one"]
    assert [a["title"] for a in api.get("/api/activity/?user=bob").json()["results"]] == ["three", "two"]
    assert [a["title"] for a in api.get(f"/api/activity/?user={user.pk}&action_type=upload").json()["results"]] == ["one"]
    published = {e["activity"]["id"]: e["activity"] for e in events("activity_update")}
    events.expect("activity_update", activity={"title": "three", "action_type": "upload", "user": "bob"})
    for item in api.get("/api/activity/").json()["results"]:
        if item["id"] in published:
            assert item == published[item["id"]]
    response = api.get("/api/activity/?user=nobody")
    assert response.status_code == 400 and "user" in response.json()["errors"]


def test_acknowledge_and_resolve_through_the_api(api, rules, events, project):
    alert = services.alert_raise(rule_kind="training_failed", subject="training_job.1", title="failed", project=project)
    listed = api.get("/api/alerts/?status=open").json()
    assert listed["count"] == 1 and listed["results"][0] == events("system_alert")[0]["alert"]
    response = api.post(f"/api/alerts/{alert.pk}/acknowledge/")
    assert response.status_code == 200 and response.json()["status"] == "acknowledged"
    assert response.json()["acknowledged_by"] == "alice" and response.json()["actions"] == ["resolve"]
    conflict = api.post(f"/api/alerts/{alert.pk}/acknowledge/")
    assert conflict.status_code == 409 and conflict["Content-Type"] == "application/problem+json"
    response = api.post(f"/api/alerts/{alert.pk}/resolve/", {"note": "retrained"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["status"] == "resolved"
    assert response.json()["resolution_note"] == "retrained"
    assert api.post(f"/api/alerts/{alert.pk}/resolve/").status_code == 409
    assert api.post("/api/alerts/999999/resolve/").status_code == 404
    assert [e["alert"]["status"] for e in events("system_alert")] == ["open", "acknowledged", "resolved"]
    assert api.get("/api/alerts/?status=unresolved").json()["count"] == 0
    assert api.get("/api/alerts/?status=bogus").status_code == 400
    assert api.get("/api/alerts/?priority=urgent").status_code == 400


def test_alert_rules_create_update_disable_with_validation(client, staff_user, rules):
    client.force_login(staff_user)  # global rules are staff's
    api = client
    response = api.post("/api/alert-rules/", {"name": "Load high", "kind": "metric", "metric": "load_1",
                                              "comparison": "gt", "threshold": 8, "duration_seconds": 120,
                                              "priority": "medium"}, content_type="application/json")
    assert response.status_code == 201, response.json()
    rule = response.json()
    assert rule["slug"] == "load-high" and rule["condition"] == "Load (1 min) > 8 for 120 s"
    response = api.patch(f"/api/alert-rules/{rule['id']}/", {"enabled": False}, content_type="application/json")
    assert response.status_code == 200 and response.json()["enabled"] is False
    bad = api.post("/api/alert-rules/", {"name": "x", "kind": "metric", "threshold": 1}, content_type="application/json")
    assert bad.status_code == 400 and "metric" in bad.json()["errors"]
    bad = api.post("/api/alert-rules/", {"name": "x", "kind": "metric", "metric": "cpu_percent", "threshold": 1,
                                         "priority": "urgent"}, content_type="application/json")
    assert bad.status_code == 400 and "priority" in bad.json()["errors"]
    bad = api.patch(f"/api/alert-rules/{rule['id']}/", {"slug": "other"}, content_type="application/json")
    assert bad.status_code == 400 and "slug" in bad.json()["errors"]
    bad = api.patch(f"/api/alert-rules/{rule['id']}/", {"duration_seconds": -5}, content_type="application/json")
    assert bad.status_code == 400 and "duration_seconds" in bad.json()["errors"]


def test_anomalies_list_and_filters(api, rules):
    services.anomaly_record(source="metrics", entity="h1", metric="cpu_percent", value=99, score=20, severity="critical",
                            alert=True)
    services.anomaly_record(source="metrics", entity="h2", metric="memory_percent", value=90, score=7, severity="low")
    assert api.get("/api/anomalies/").json()["count"] == 2
    assert [a["entity"] for a in api.get("/api/anomalies/?severity=critical").json()["results"]] == ["h1"]
    assert Alert.objects.filter(subject="h1:cpu_percent").exists()  # alert=True: the detector confirmed it


@pytest.mark.parametrize("body, field", [
    ({}, "dataset"),
    ({"dataset": "abc"}, "dataset"),
    ({"dataset": 999999}, "dataset"),
    ({"dataset": "READY", "contamination": 0}, "contamination"),
    ({"dataset": "READY", "contamination": 0.6}, "contamination"),
    ({"dataset": "READY", "contamination": "lots"}, "contamination"),
    ({"dataset": "READY", "columns": ["nope"]}, "columns"),
    ({"dataset": "READY", "columns": ["sex"]}, "columns"),
    ({"dataset": "READY", "columns": "age"}, "columns"),
    ({"dataset": "BUSY"}, "dataset"),
])
def test_detection_rejects_bad_input_naming_the_field(api, ready_dataset, body, field):
    from datasets.models import Dataset

    ready = ready_dataset("titanic.csv")
    busy = Dataset.objects.create(name="busy", status="profiling", file="datasets/x.csv", project=ready.project)
    body = {k: (ready.pk if v == "READY" else busy.pk if v == "BUSY" else v) for k, v in body.items()}
    response = api.post("/api/anomaly/detect/", body, content_type="application/json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"], response.json()


def test_detection_endpoints_404(api, ready_dataset):
    dataset = ready_dataset("penguins.csv")
    assert api.get("/api/anomaly/detect/999999/").status_code == 404
    response = api.get(f"/api/anomaly/datasets/{dataset.pk}/")
    assert response.status_code == 404 and "penguins" in response.json()["detail"]
    assert api.get("/api/anomaly/datasets/999999/").status_code == 404


def test_a_detections_score_file_goes_with_its_dataset(ready_dataset, user, django_capture_on_commit_callbacks):
    import numpy as np
    from django.core.files.storage import default_storage

    from datasets import services as dataset_services
    from monitoring.models import AnomalyDetection

    dataset = ready_dataset("penguins.csv")
    detection = services.anomaly_detection_start(dataset=dataset, contamination=0.1, user=user)
    services.anomaly_detection_run(detection_id=detection.pk)  # in-process, as a worker would
    detection.refresh_from_db()
    assert detection.status == "succeeded" and default_storage.exists(detection.scores_file.name)
    scores = services.anomaly_detection_scores(detection=detection)
    assert scores.dtype == np.float32 and scores.shape == (detection.n_rows,)
    with django_capture_on_commit_callbacks(execute=True):
        dataset_services.dataset_delete(user=None, dataset=dataset)
    assert not AnomalyDetection.objects.exists() and not default_storage.exists(detection.scores_file.name)


def test_an_alert_rule_description_over_its_length_is_a_clear_400(api, rules):
    body = {"name": "Load high", "kind": "metric", "metric": "load_1", "comparison": "gt", "threshold": 8,
            "duration_seconds": 0, "priority": "medium", "description": "d" * 2_001}
    response = api.post("/api/alert-rules/", body, content_type="application/json")
    assert response.status_code == 400 and "description" in response.json()["errors"]
    assert not AlertRule.objects.filter(name="Load high").exists()
