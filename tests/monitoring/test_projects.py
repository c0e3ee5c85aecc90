"""Monitoring by project (issue 14): global rules and system alerts are everyone's to read and
staff's to change; a project's rules are its maintainers', its job alerts its members' (editors
acknowledge them); anomaly detections take their dataset's project; the dashboard shows the current
project; nothing on `dashboard` carries a project's figures."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.utils import timezone

from mlops_dashboard.events import bus
from mlops_dashboard.models import AuditEntry, ProjectPreference
from monitoring import services
from monitoring.models import Alert, AlertRule, AnomalyDetection
from tests.factories import ModelVersionFactory, ProjectFactory, UserFactory, member

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def team(db):
    """Project A (the default) with a maintainer, an editor and a viewer; project B with its own
    editor (an outsider to A); and staff."""
    a = ProjectFactory()
    b = ProjectFactory(slug="b", name="Project B")
    people = {name: UserFactory(username=name) for name in ("maint", "edit", "view", "bee")}
    member(people["maint"], "maintainer", a)
    member(people["edit"], "editor", a)
    member(people["view"], "viewer", a)
    member(people["bee"], "editor", b)
    people["staff"] = UserFactory(username="root", staff=True)
    return {"a": a, "b": b, **people}


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_json(client, url, body=None, method="post"):
    return getattr(client, method)(url, json.dumps(body or {}), content_type="application/json")


def job_alert(project, job_id=1, title=None):
    return services.alert_raise(rule_kind="training_failed", subject=f"training_job.{job_id}", project=project,
                                title=title or f"Training job #{job_id} failed")


# --- global rules: staff only ----------------------------------------------------------------------------


def test_non_staff_cannot_disable_edit_or_delete_a_global_rule(team, rules):
    rule = rules["training-failed"]
    for name in ("maint", "edit", "view", "bee"):
        client = as_user(team[name])
        assert client.get(f"/api/alert-rules/{rule.pk}/").status_code == 200  # everyone reads it
        for response in (post_json(client, f"/api/alert-rules/{rule.pk}/", {"enabled": False}, "patch"),
                         post_json(client, f"/api/alert-rules/{rule.pk}/", {"threshold": 5}, "patch"),
                         client.delete(f"/api/alert-rules/{rule.pk}/"),
                         client.post(f"/monitoring/rules/{rule.pk}/toggle/")):
            assert response.status_code == 403, (name, response)
        detail = post_json(client, f"/api/alert-rules/{rule.pk}/", {"enabled": False}, "patch").json()["detail"]
        assert "admin" in detail
    rule.refresh_from_db()
    assert rule.enabled  # the kind is not silenced
    # Not by making a global one either: a non-staff create without `project` is refused.
    response = post_json(as_user(team["maint"]), "/api/alert-rules/", {"name": "Mine", "kind": "training_failed"})
    assert response.status_code == 403 and "admin" in response.json()["detail"]
    # Staff may.
    staff = as_user(team["staff"])
    assert post_json(staff, f"/api/alert-rules/{rule.pk}/", {"enabled": False}, "patch").json()["enabled"] is False
    entry = AuditEntry.objects.get(action="disable", object_id=str(rule.pk))
    assert entry.username == "root" and entry.project_id is None and "enabled: True → False" in entry.summary


def test_the_monitoring_page_shows_global_rules_locked_to_non_staff(team, rules):
    html = as_user(team["maint"]).get("/monitoring/").content.decode()
    rule = rules["cpu-high"]
    row = html[html.index(f'data-rule-id="{rule.pk}"'):]
    row = row[:row.index("</tr>")]
    assert "Disable" not in row and "Edit</a>" not in row and "locked-action" in row and "admin" in row
    staff_html = as_user(team["staff"]).get("/monitoring/").content.decode()
    staff_row = staff_html[staff_html.index(f'data-rule-id="{rule.pk}"'):]
    assert "Disable" in staff_row[:staff_row.index("</tr>")]


# --- project rules: maintainers ---------------------------------------------------------------------------


def test_a_maintainer_manages_the_projects_rules_and_an_editor_cannot(team, rules):
    a = team["a"]
    maint = as_user(team["maint"])
    response = post_json(maint, "/api/alert-rules/", {"name": "Slow model", "kind": "metric",
                                                      "metric": "model_accuracy", "comparison": "lt",
                                                      "threshold": 0.7, "project": a.pk})
    assert response.status_code == 201, response.json()
    rule = response.json()
    assert rule["project"] == a.pk
    assert AuditEntry.objects.filter(action="create", object_id=str(rule["id"]), project=a).exists()

    editor = as_user(team["edit"])
    for response in (post_json(editor, f"/api/alert-rules/{rule['id']}/", {"enabled": False}, "patch"),
                     editor.delete(f"/api/alert-rules/{rule['id']}/"),
                     post_json(editor, "/api/alert-rules/", {"name": "x", "kind": "job_stalled", "project": a.pk})):
        assert response.status_code == 403 and "maintainer" in response.json()["detail"]
    assert as_user(team["view"]).get(f"/api/alert-rules/{rule['id']}/").status_code == 200  # members read
    # An outsider neither sees it nor learns it exists.
    bee = as_user(team["bee"])
    assert bee.get(f"/api/alert-rules/{rule['id']}/").status_code == 404
    assert rule["id"] not in [r["id"] for r in bee.get("/api/alert-rules/?limit=100").json()["results"]]
    assert post_json(bee, "/api/alert-rules/", {"name": "x", "kind": "job_stalled", "project": a.pk}).status_code == 404

    # ?project= lists that project's rules only; without it, the global ones too.
    listed = {r["id"] for r in maint.get(f"/api/alert-rules/?project={a.pk}&limit=100").json()["results"]}
    assert listed == {rule["id"]}
    assert len(maint.get("/api/alert-rules/?limit=100").json()["results"]) == len(rules) + 1

    # Host and worker rules stay global: a project's rule cannot watch them.
    bad = post_json(maint, "/api/alert-rules/", {"name": "CPU", "kind": "metric", "metric": "cpu_percent",
                                                 "comparison": "gt", "threshold": 90, "project": a.pk})
    assert bad.status_code == 400 and "metric" in bad.json()["errors"]
    bad = post_json(maint, "/api/alert-rules/", {"name": "W", "kind": "worker_missing", "project": a.pk})
    assert bad.status_code == 400 and "kind" in bad.json()["errors"]

    assert post_json(maint, f"/api/alert-rules/{rule['id']}/", {"enabled": False}, "patch").status_code == 200
    assert AuditEntry.objects.filter(action="disable", object_id=str(rule["id"]), project=a).exists()
    assert maint.delete(f"/api/alert-rules/{rule['id']}/").status_code == 204
    assert AuditEntry.objects.filter(action="delete", object_id=str(rule["id"]), project=a).exists()


def test_a_projects_own_rule_silences_its_project_only(team, rules):
    a, b = team["a"], team["b"]
    services.alert_rule_create(user=team["maint"], project=a, name="A's training failures",
                               kind="training_failed", enabled=False)
    assert job_alert(a, 1) is None  # A's maintainers turned it off for A
    alert = job_alert(b, 2)  # B still has the global rule
    assert alert is not None and alert.project == b and alert.rule == rules["training-failed"]


def test_the_page_offers_a_maintainer_a_project_rule_and_an_editor_the_lock(team, rules):
    maint = as_user(team["maint"])
    response = maint.post("/monitoring/rules/", {"name": "Few predictions", "kind": "metric",
                                                 "metric": "predictions_per_minute", "comparison": "lt",
                                                 "threshold": "1", "duration_seconds": "0", "priority": "low",
                                                 "enabled": "on"})
    assert response.status_code == 302
    rule = AlertRule.objects.get(name="Few predictions")
    assert rule.project == team["a"]
    html = as_user(team["edit"]).get("/monitoring/").content.decode()
    assert 'id="rule-form-locked"' in html and "maintainer" in html and 'id="rule-submit"' not in html
    row = html[html.index(f'data-rule-id="{rule.pk}"'):]
    assert "Disable" not in row[:row.index("</tr>")]
    assert as_user(team["edit"]).post(f"/monitoring/rules/{rule.pk}/toggle/").status_code == 403
    assert as_user(team["bee"]).post(f"/monitoring/rules/{rule.pk}/toggle/").status_code == 404
    rule.refresh_from_db()
    assert rule.enabled


# --- alerts: a job's belong to its project, the system's are global -------------------------------------


def test_a_member_of_one_project_never_sees_anothers_job_alerts(team, rules):
    mine = job_alert(team["a"], 1, "A's training failed")
    theirs = job_alert(team["b"], 2, "B's training failed")
    system = services.alert_raise(rule_kind="worker_missing", subject="worker:w1", title="Worker missing: w1")
    assert (mine.project, theirs.project, system.project) == (team["a"], team["b"], None)
    edit = as_user(team["edit"])
    listed = {a["id"] for a in edit.get("/api/alerts/?limit=100").json()["results"]}
    assert listed == {mine.pk, system.pk}
    assert edit.get(f"/api/alerts/{theirs.pk}/").status_code == 404
    assert edit.post(f"/api/alerts/{theirs.pk}/acknowledge/").status_code == 404
    assert edit.get(f"/monitoring/alerts/{theirs.pk}/row/").status_code == 404
    assert edit.get(f"/monitoring/alerts/{theirs.pk}/item/").status_code == 404
    assert edit.get("/api/alerts/?status=open&limit=1").json()["count"] == 2
    assert {a["id"] for a in edit.get(f"/api/alerts/?project={team['a'].pk}").json()["results"]} == {mine.pk}
    html = edit.get("/").content.decode()
    assert "A&#x27;s training failed" in html and "B&#x27;s training failed" not in html
    assert 'id="alert-count">2<' in html  # A's and the system's
    # The events went to each project's topic, the system alert to everyone's.
    topics = {json.loads(text)["alert"]["id"]: t for _, t, text in bus.read_after(0, 10_000).events
              if json.loads(text)["type"] == "system_alert"}
    assert topics[mine.pk] == [f"project.{team['a'].pk}"] and topics[theirs.pk] == [f"project.{team['b'].pk}"]
    assert topics[system.pk] == ["dashboard"]


def test_editors_acknowledge_their_projects_alerts_and_only_staff_the_systems(team, rules):
    alert = job_alert(team["a"], 1)
    system = services.alert_raise(rule_kind="worker_missing", subject="worker:w1", title="Worker missing: w1")
    viewer = as_user(team["view"])
    response = viewer.post(f"/api/alerts/{alert.pk}/acknowledge/")
    assert response.status_code == 403 and "editor" in response.json()["detail"]
    assert as_user(team["edit"]).post(f"/api/alerts/{alert.pk}/acknowledge/").status_code == 200
    assert AuditEntry.objects.filter(action="acknowledge", object_id=str(alert.pk), project=team["a"]).exists()
    assert as_user(team["edit"]).post(f"/api/alerts/{alert.pk}/resolve/").status_code == 200
    assert AuditEntry.objects.filter(action="resolve", object_id=str(alert.pk), username="edit").exists()

    for name in ("maint", "edit", "view", "bee"):
        client = as_user(team[name])
        assert client.get(f"/api/alerts/{system.pk}/").status_code == 200  # everyone sees it
        for action in ("acknowledge", "resolve"):
            response = client.post(f"/api/alerts/{system.pk}/{action}/")
            assert response.status_code == 403 and "admin" in response.json()["detail"], (name, action)
        row = client.get(f"/monitoring/alerts/{system.pk}/row/").content.decode()
        assert 'data-action="acknowledge"' not in row and "locked-action" in row
    system.refresh_from_db()
    assert system.status == "open"
    assert as_user(team["staff"]).post(f"/api/alerts/{system.pk}/acknowledge/").status_code == 200
    entry = AuditEntry.objects.get(action="acknowledge", object_id=str(system.pk))
    assert entry.username == "root" and entry.project_id is None


def test_a_failed_job_alerts_its_own_project(team, rules, ready_dataset):
    from datasets.models import ProcessingJob

    dataset = ready_dataset("penguins.csv", project=team["b"])
    job = ProcessingJob.objects.create(dataset=dataset, project=team["b"], operation="clean", status="failed",
                                       error="boom", finished_at=timezone.now())
    assert services.jobs_check()["failed"] == 1
    alert = Alert.objects.get(subject=f"processing_job.{job.pk}")
    assert alert.project == team["b"]
    assert as_user(team["edit"]).get(f"/api/alerts/{alert.pk}/").status_code == 404
    assert as_user(team["bee"]).get(f"/api/alerts/{alert.pk}/").status_code == 200


# --- anomaly detections ---------------------------------------------------------------------------------


def test_detections_take_their_datasets_project_and_its_roles(team, ready_dataset):
    dataset = ready_dataset("penguins.csv")  # project A
    viewer = as_user(team["view"])
    response = post_json(viewer, "/api/anomaly/detect/", {"dataset": dataset.pk})
    assert response.status_code == 403 and "editor" in response.json()["detail"]
    response = post_json(as_user(team["bee"]), "/api/anomaly/detect/", {"dataset": dataset.pk})
    assert response.status_code == 400 and "dataset" in response.json()["errors"]  # not theirs to know of
    other = post_json(as_user(team["edit"]), "/api/anomaly/detect/", {"dataset": dataset.pk, "project": team["b"].pk})
    assert other.status_code == 400 and "project" in other.json()["errors"]

    editor = as_user(team["edit"])
    response = post_json(editor, "/api/anomaly/detect/", {"dataset": dataset.pk, "contamination": 0.1})
    assert response.status_code == 202, response.json()
    detection = AnomalyDetection.objects.get(pk=response.json()["id"])
    assert detection.project == team["a"] and response.json()["project"] == team["a"].pk
    assert AuditEntry.objects.filter(action="create", object_id=str(detection.pk), project=team["a"]).exists()
    assert as_user(team["bee"]).get(f"/api/anomaly/detect/{detection.pk}/").status_code == 404
    assert as_user(team["bee"]).get(f"/api/anomaly/datasets/{dataset.pk}/").status_code == 404

    # Another editor may not cancel one; its creator or a maintainer may. (A queued one of its own: the
    # one above may already have run in the session's worker.)
    from tests.factories import AnomalyDetectionFactory

    detection = AnomalyDetectionFactory(dataset=dataset, created_by=team["edit"])
    member(team["bee"], "editor", team["a"])
    response = as_user(team["bee"]).post(f"/api/anomaly/detect/{detection.pk}/cancel/")
    assert response.status_code == 403 and "maintainer" in response.json()["detail"]
    response = as_user(team["maint"]).post(f"/api/anomaly/detect/{detection.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert as_user(team["maint"]).post(f"/api/anomaly/detect/{detection.pk}/cancel/").status_code == 409
    assert AuditEntry.objects.filter(action="cancel", object_id=str(detection.pk), username="maint").exists()
    assert services.anomaly_detection_run(detection_id=detection.pk) is None  # a cancelled one never runs
    assert editor.delete(f"/api/anomaly/detect/{detection.pk}/").status_code == 204
    assert not AnomalyDetection.objects.filter(pk=detection.pk).exists()
    assert AuditEntry.objects.filter(action="delete", object_id=str(detection.pk), project=team["a"]).exists()


def test_a_datasets_anomalies_belong_to_its_project_and_metric_anomalies_to_everyone(team, ready_dataset, events):
    dataset = ready_dataset("penguins.csv", project=team["b"])
    detection = services.anomaly_detection_start(dataset=dataset, contamination=0.1, user=team["bee"])
    services.anomaly_detection_run(detection_id=detection.pk)
    found = detection.anomalies.get()
    assert found.project == team["b"]
    metric = services.anomaly_record(source="metrics", entity="h1", metric="cpu_percent", value=99, score=7,
                                     severity="low")
    assert metric.project is None
    listed = {a["id"] for a in as_user(team["edit"]).get("/api/anomalies/?limit=100").json()["results"]}
    assert listed == {metric.pk}
    assert as_user(team["edit"]).get(f"/api/anomalies/{found.pk}/").status_code == 404
    assert as_user(team["bee"]).get(f"/api/anomalies/{found.pk}/").status_code == 200
    assert events.expect("anomaly_detected", anomaly_id=found.pk)["project_id"] == team["b"].pk
    assert events.expect("anomaly_detected", anomaly_id=metric.pk).get("project_id") is None  # to dashboard


# --- the dashboard and the figures ----------------------------------------------------------------------


def test_the_dashboard_shows_the_current_projects_figures(team, rules, ready_dataset):
    from datasets.models import ProcessingJob

    a, b = team["a"], team["b"]
    member(team["edit"], "viewer", b)
    ModelVersionFactory(project=a, name="alpha-model", status="active", deployed_at=timezone.now(),
                        prediction_count=111, validation_score=0.9)
    ModelVersionFactory(project=b, name="beta-model", status="active", deployed_at=timezone.now(),
                        prediction_count=2222, validation_score=0.6)
    for project, step in ((a, "alpha step"), (b, "beta step")):
        dataset = ready_dataset("penguins.csv", project=project)
        ProcessingJob.objects.create(dataset=dataset, project=project, operation="clean", status="running",
                                     current_step=step)
    job_alert(a, 1, "alpha alert")
    job_alert(b, 2, "beta alert")
    client = as_user(team["edit"])
    ProjectPreference.objects.update_or_create(user=team["edit"], defaults={"project": a})
    html = client.get("/").content.decode()
    assert "alpha-model" in html and 'id="predictions-total">111<' in html and "alpha step" in html
    assert "alpha alert" in html and 'id="alert-count">1<' in html
    assert "beta" not in html and "2222" not in html
    ProjectPreference.objects.update_or_create(user=team["edit"], defaults={"project": b})
    html = client.get("/").content.decode()
    assert "beta-model" in html and 'id="predictions-total">2222<' in html and "beta step" in html
    assert "beta alert" in html and "alpha" not in html
    data = json.loads(html.split('id="dashboard-data" type="application/json">')[1].split("</script>")[0])
    assert data["projectId"] == b.pk


def test_system_metrics_carry_no_model_figures_and_each_project_gets_its_own(team, feed, events):
    a, b = team["a"], team["b"]
    ModelVersionFactory(project=a, status="active", deployed_at=timezone.now(), prediction_count=40,
                        validation_score=0.91)
    ModelVersionFactory(project=b, status="active", deployed_at=timezone.now(), prediction_count=7,
                        validation_score=0.55)
    start = bus.latest_id()
    feed("h1", cpu_percent=30)
    assert services.project_metrics_publish() == 2
    logged = [(topics, json.loads(text)) for _, topics, text in bus.read_after(start, 10_000).events]
    model_fields = {"current_accuracy", "model_accuracy", "predictions_per_minute", "prediction_rate",
                    "predictions_total", "accuracy", "model"}
    on_dashboard = [e for topics, e in logged if "dashboard" in topics]
    assert {e["type"] for e in on_dashboard} >= {"system_metrics", "chart_data", "performance_metrics"}
    for event in on_dashboard:
        flat = json.dumps(event)
        assert not model_fields & set(event) and "accuracy" not in flat and "predictions" not in flat, event
    per_project = {e["project_id"]: (topics, e) for topics, e in logged if e["type"] == "project_metrics"}
    assert per_project[a.pk][0] == [f"project.{a.pk}"] and per_project[b.pk][0] == [f"project.{b.pk}"]
    assert per_project[a.pk][1]["current_accuracy"] == 0.91 and per_project[a.pk][1]["predictions_total"] == 40
    assert per_project[b.pk][1]["current_accuracy"] == 0.55 and per_project[b.pk][1]["predictions_total"] == 7
    events.expect("project_metrics", project_id=a.pk)
    # The System page's serving check (service_health, on `dashboard`) counts versions, names none.
    from monitoring import checks

    serving = checks.check_model_serving()
    assert serving["detail"] == "2 model versions serving" and "models" not in serving


def test_a_projects_metric_rule_alerts_that_project(team, rules):
    a = team["a"]
    ModelVersionFactory(project=a, status="active", deployed_at=timezone.now(), validation_score=0.5)
    rule = services.alert_rule_create(user=team["maint"], project=a, name="Accuracy low", kind="metric",
                                      metric="model_accuracy", comparison="lt", threshold=0.7)
    services.project_metrics_publish()
    alert = Alert.objects.get(rule=rule)
    assert alert.project == a and alert.subject == f"project.{a.pk}"
    assert as_user(team["bee"]).get(f"/api/alerts/{alert.pk}/").status_code == 404
