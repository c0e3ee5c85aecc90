"""Pages: the dashboard home, Monitoring and System require a login and render from the database;
the rule form creates, edits, enables and disables rules, and shows errors by field."""

import pytest
from django.template.loader import render_to_string

from mlops_dashboard.activity import activity_record
from monitoring import services
from monitoring.models import AlertRule

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("url", ["/", "/monitoring/", "/monitoring/system/"])
def test_pages_require_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_dashboard_renders_what_the_database_holds(client, user, rules, feed, ready_dataset):
    from datasets.models import ProcessingJob

    dataset = ready_dataset("penguins.csv")
    ProcessingJob.objects.create(dataset=dataset, project=dataset.project, operation="clean", status="running", progress=42,
                                 current_step="dropping duplicates")
    services.alert_raise(rule_kind="training_failed", subject="training_job.3", title="Training #3 failed",
                         project=dataset.project)
    feed("worker-1", cpu_percent=91, memory_percent=50, disk_percent=30)
    activity_record(title="Dataset uploaded: penguins", action_type="upload", user=user, project=dataset.project)
    client.force_login(user)
    html = client.get("/").content.decode()
    assert 'data-host="worker-1"' in html and 'data-metric="cpu_percent" data-level="warning"' in html
    assert "Training #3 failed" in html and 'id="alert-count">1<' in html
    assert "dropping duplicates" in html and 'aria-valuenow="42"' in html
    assert "No model deployed yet" in html
    assert "Dataset uploaded: penguins" in html  # the project's activity feed
    assert "logged in" not in html  # a login is no project's: staff's feed only
    assert 'id="dashboard-data"' in html and "js/pages/dashboard.js" in html and "css/monitoring.css" in html


def test_dashboard_shows_the_deployed_model(client, user, ready_dataset):
    from django.utils import timezone

    from training.models import ModelVersion

    dataset = ready_dataset("titanic.csv")
    ModelVersion.objects.create(name="titanic-sgd", version=3, status="active", algorithm="sgd", task="classification",
                                target_column="survived", validation_score=0.81, dataset=dataset,
                                artifact="models/x.joblib", artifact_sha256="0" * 64, deployed_at=timezone.now(), project=dataset.project,
                                prediction_count=1234)
    client.force_login(user)
    html = client.get("/").content.decode()
    assert "titanic-sgd" in html and "v3" in html and "81.0%" in html and 'data-status="active"' in html
    assert 'id="predictions-total">1234<' in html


def test_monitoring_page_renders_charts_alerts_anomalies_and_rules(client, staff_user, rules):
    services.alert_raise(rule_kind="worker_missing", subject="worker:w1", title="Worker missing: w1")
    services.anomaly_record(source="metrics", entity="h1", metric="cpu_percent", value=99, score=7, severity="low")
    client.force_login(staff_user)
    html = client.get("/monitoring/").content.decode()
    for canvas in ("chart-cpu", "chart-memory", "chart-disk", "chart-network", "chart-latency", "chart-predictions"):
        assert f'id="{canvas}"' in html
    assert "vendor/uplot/uPlot.min.css" in html and "js/pages/monitoring.js" in html  # uPlot, from its module
    assert "Worker missing: w1" in html and 'data-action="acknowledge"' in html
    assert 'data-anomaly-id="' in html and "cpu_percent" in html
    assert "CPU above 90%" in html and "Create rule" in html


def test_system_page_lists_components_and_workers(client, user):
    client.force_login(user)
    html = client.get("/monitoring/system/").content.decode()
    for name in ("database", "redis", "channel_layer", "celery", "socket_server", "model_serving", "broker",
                 "event_bus", "scheduler"):
        assert f'data-component="{name}"' in html
    assert 'data-component="database" data-status="healthy"' in html


def test_rule_form_creates_edits_toggles_and_shows_errors(client, staff_user, rules):
    client.force_login(staff_user)  # a global rule (active_connections is the system's): staff's
    response = client.post("/monitoring/rules/", {"name": "Sockets", "kind": "metric", "metric": "active_connections",
                                                  "comparison": "gt", "threshold": "500", "duration_seconds": "0",
                                                  "priority": "low", "enabled": "on", "scope": "global",
                                                  "suggested_actions_text": "Add a server\n\nScale out"})
    assert response.status_code == 302
    rule = AlertRule.objects.get(name="Sockets")
    assert rule.suggested_actions == ["Add a server", "Scale out"] and rule.enabled and rule.project is None

    page = client.get(f"/monitoring/?rule={rule.pk}").content.decode()
    assert "Edit “Sockets”" in page and f'action="/monitoring/rules/{rule.pk}/"' in page
    response = client.post(f"/monitoring/rules/{rule.pk}/", {"name": "Sockets", "kind": "metric",
                                                             "metric": "active_connections", "comparison": "gte",
                                                             "threshold": "800", "duration_seconds": "30",
                                                             "priority": "high"})
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.threshold, rule.priority, rule.enabled) == (800, "high", False)  # unchecked: disabled

    client.post(f"/monitoring/rules/{rule.pk}/toggle/")
    rule.refresh_from_db()
    assert rule.enabled

    bad = client.post("/monitoring/rules/", {"name": "No metric", "kind": "metric", "comparison": "gt",
                                             "threshold": "", "duration_seconds": "0", "priority": "low"})
    assert bad.status_code == 400
    html = bad.content.decode()
    assert 'data-error-for="metric"' in html and 'data-error-for="threshold"' in html
    assert not AlertRule.objects.filter(name="No metric").exists()


def test_the_dataset_anomalies_include_renders_its_contract(rf, user, ready_dataset):
    dataset = ready_dataset("titanic.csv")
    html = render_to_string("monitoring/includes/dataset_anomalies.html", {"dataset": dataset, "user": user})
    assert f'data-dataset-id="{dataset.pk}"' in html and "No detection has run on this dataset yet." in html
    assert 'value="age"' in html and 'value="sex"' not in html  # numeric columns only
    assert "js/pages/dataset_anomalies.js" in html


def test_the_dataset_anomalies_result_fragment_renders_the_latest_detection(client, user, ready_dataset):
    from monitoring.models import AnomalyDetection

    dataset = ready_dataset("titanic.csv")
    client.force_login(user)
    url = f"/monitoring/datasets/{dataset.pk}/anomalies/"
    html = client.get(url).content.decode()
    assert html.startswith("<div data-field=\"result\" data-status=\"\">") and "No detection has run" in html
    AnomalyDetection.objects.create(dataset=dataset, project=dataset.project, status="succeeded", contamination=0.05, n_rows=891, n_flagged=2,
                                    share_flagged=2 / 891, max_score=0.7, threshold=0.6, columns_used=["age", "fare"],
                                    top_rows=[{"row": r, "score": 0.7 - r / 100, "flagged": True,
                                               "values": {"age": 30 + r, "fare": None}} for r in range(5)])
    html = client.get(url + "?limit=3").content.decode()
    assert 'data-status="succeeded"' in html and "<strong>2</strong> of <strong>891</strong>" in html
    assert html.count("<tr data-row=") == 3 and "<th scope=\"col\">fare</th>" in html


def test_the_alert_and_anomaly_fragments_are_the_rows_of_the_pages(client, user, rules):
    alert = services.alert_raise(rule_kind="worker_missing", subject="worker:w1", title="Worker missing: w1")
    anomaly = services.anomaly_record(source="metrics", entity="worker-1", metric="memory_percent", value=97.0,
                                      score=3.0, severity="low", baseline=40.0)
    client.force_login(user)
    row = client.get(f"/monitoring/alerts/{alert.pk}/row/").content.decode()
    assert f'<tr data-alert-id="{alert.pk}" data-status="open">' in row and "Worker missing: w1" in row
    item = client.get(f"/monitoring/alerts/{alert.pk}/item/").content.decode()
    assert f'<li class="alert-item" data-alert-id="{alert.pk}"' in item
    row = client.get(f"/monitoring/anomalies/{anomaly.pk}/row/").content.decode()
    assert f'<tr data-anomaly-id="{anomaly.pk}">' in row and "memory_percent" in row
    for path in ("alerts/999999/row/", "alerts/999999/item/", "anomalies/999999/row/"):
        assert client.get(f"/monitoring/{path}").status_code == 404


def test_the_dashboard_and_system_widgets_are_fragments_the_pages_morph_in(client, user, feed, ready_dataset):
    from datasets.models import ProcessingJob

    dataset = ready_dataset("penguins.csv")
    job = ProcessingJob.objects.create(dataset=dataset, project=dataset.project, operation="clean", status="running",
                                       progress=42, current_step="dropping duplicates")
    feed("worker-1", cpu_percent=91, memory_percent=50, disk_percent=30)
    fragments = ("/activity/", "/monitoring/hosts/", f"/monitoring/jobs/processing/{job.pk}/item/",
                 "/monitoring/system/services/rows/", "/monitoring/system/integrations/rows/",
                 "/monitoring/system/workers/")
    for url in fragments:
        assert client.get(url).status_code == 302  # login required
    client.force_login(user)
    dashboard = client.get("/").content.decode()
    hosts = client.get("/monitoring/hosts/").content.decode()
    assert hosts.startswith('<ul class="hosts" id="hosts">') and 'data-host="worker-1"' in hosts
    assert hosts in dashboard  # the same include renders the page and the fragment
    activity_record(title="Dataset uploaded: penguins", action_type="upload", user=user, project=dataset.project)
    activity = client.get("/activity/").content.decode()
    assert activity.startswith('<ul class="activity-list" id="dash-activity">') and "Dataset uploaded" in activity

    item = client.get(f"/monitoring/jobs/processing/{job.pk}/item/").content.decode()
    assert item.startswith(f'<li class="job-item" data-job-key="processing-{job.pk}" data-kind="processing" '
                           'data-status="running">')
    assert item in dashboard and "dropping duplicates" in item and 'aria-valuenow="42"' in item
    ProcessingJob.objects.filter(pk=job.pk).update(status="succeeded", progress=100)
    item = client.get(f"/monitoring/jobs/processing/{job.pk}/item/").content.decode()
    assert 'data-status="succeeded"' in item and 'aria-valuenow="100"' in item  # a finished job shows how it ended
    for url in (f"/monitoring/jobs/training/{job.pk}/item/", "/monitoring/jobs/processing/999999/item/",
                "/monitoring/system/nothing/rows/"):
        assert client.get(url).status_code == 404

    services_rows = client.get("/monitoring/system/services/rows/").content.decode()
    assert services_rows.startswith('<tbody id="service-rows">') and 'data-component="database"' in services_rows
    integrations = client.get("/monitoring/system/integrations/rows/").content.decode()
    assert integrations.startswith('<tbody id="integration-rows">') and 'data-component="broker"' in integrations
    workers = client.get("/monitoring/system/workers/").content.decode()
    assert workers.startswith('<div class="workers" id="workers">')


@pytest.mark.parametrize("fields, error_for", [
    ({"description": "d" * 2_001}, "description"),
    ({"suggested_actions_text": "\n".join(f"action {i}" for i in range(11))}, "suggested_actions_text"),
    ({"suggested_actions_text": "a" * 501}, "suggested_actions_text"),
])
def test_the_rule_form_refuses_text_over_its_length_instead_of_cutting_it(client, user, rules, fields, error_for):
    client.force_login(user)  # a maintainer: a rule of the project, about its serving model
    response = client.post("/monitoring/rules/", {"name": "Long", "kind": "metric", "metric": "model_accuracy",
                                                  "comparison": "gt", "threshold": "500", "duration_seconds": "0",
                                                  "priority": "low", **fields})
    assert response.status_code == 400
    assert f'data-error-for="{error_for}"' in response.content.decode()
    assert not AlertRule.objects.filter(name="Long").exists()
