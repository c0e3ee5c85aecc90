"""The dashboard home and the Monitoring page in a real Chromium: rendered from the database, then
moved by events (metrics, health, alerts, jobs, activity), with alert actions through the API."""

import re

import pytest
from playwright.sync_api import expect

from mlops_dashboard.events import catalog, publish
from mlops_dashboard.activity import activity_record
from datasets.models import ProcessingJob
from monitoring import services
from tests.factories import ProcessingJobFactory, ProjectFactory, TrainingJobFactory

pytestmark = pytest.mark.browser

BASE = {"cpu_percent": 20.0, "memory_percent": 40.0, "disk_percent": 50.0, "load_1": 0.5, "net_sent_rate": 1000.0,
        "net_recv_rate": 2000.0, "active_connections": 3, "api_response_time_ms": 20.0, "ws_response_time_ms": 5.0,
}


@pytest.fixture(autouse=True)
def clean_monitoring_state(redis_client):
    from django.conf import settings

    for key in redis_client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:monitoring:*", count=1000):
        redis_client.delete(key)


@pytest.fixture
def rules(transactional_db):
    services.alert_rules_install_defaults()


def sample(host="worker-1", **values):
    return services.metric_sample_record(host=host, role="worker", values={**BASE, **values})


def indicator(page):
    return page.locator("#connection .label")


def meter(page, host, metric):
    return page.locator(f'#hosts [data-host="{host}"] .meter[data-metric="{metric}"]')


def test_dashboard_shows_a_metric_update_and_an_alert_toast(server, open_page, user, rules):
    sample(cpu_percent=30.0)  # on the page from the database at first load
    page = open_page(server, user, path="/")
    expect(indicator(page)).to_have_text("Live")
    expect(meter(page, "worker-1", "cpu_percent").locator(".meter__value")).to_have_text("30%")
    expect(meter(page, "worker-1", "cpu_percent")).to_have_attribute("data-level", "healthy")
    expect(page.locator("#socket-count")).to_have_text("3")

    # A new sample moves the bar, colours it by level, and the health change pulses the badge.
    sample(cpu_percent=88.0, active_connections=5)
    expect(meter(page, "worker-1", "cpu_percent").locator(".meter__value")).to_have_text("88%")
    expect(meter(page, "worker-1", "cpu_percent")).to_have_attribute("data-level", "warning")
    expect(meter(page, "worker-1", "cpu_percent").locator(".meter__fill")).to_have_class(re.compile(r"\bpct-88\b"))
    expect(page.locator("#socket-count")).to_have_text("5")
    expect(page.locator("#health-card .badge")).to_have_text("Warning")
    expect(page.locator("#health-card")).to_have_class(re.compile(r"is-pulsing"))
    expect(page.locator("#health-reason")).to_contain_text("worker-1: CPU 88.0%")
    sample("worker-2", disk_percent=70.0)  # a new host gets its own bars
    expect(meter(page, "worker-2", "disk_percent").locator(".meter__value")).to_have_text("70%")

    # An alert: a toast, the open alerts list and its count.
    # A job's alert: the default project's (alice's, a maintainer there, who acknowledges it).
    alert = services.alert_raise(rule_kind="training_failed", subject="training_job.9", title="Training #9 failed",
                                 message="Target column 'churn' is missing.", project=ProjectFactory())
    toast = page.locator("#toasts .toast").filter(has_text="Training #9 failed")
    expect(toast).to_be_visible()
    expect(toast).to_have_attribute("data-kind", "error")  # high priority
    expect(toast).to_contain_text("Target column 'churn' is missing.")
    item = page.locator(f'#dash-alerts [data-alert-id="{alert.pk}"]')
    expect(item).to_contain_text("Training #9 failed")
    expect(item.locator(".badge")).to_have_text("Open")
    expect(page.locator("#alert-count")).to_have_text("1")
    expect(page.locator("#alerts-empty")).to_be_hidden()

    services.alert_acknowledge(alert=alert, user=user)
    expect(item.locator(".badge")).to_have_text("Acknowledged")
    expect(page.locator("#alert-count")).to_have_text("0")
    expect(page.locator("#alert-ack-count")).to_have_text("1")
    services.alert_resolve(alert=alert, user=user)
    expect(item).to_have_count(0)
    expect(page.locator("#alerts-empty")).to_be_visible()

    # Activity and running jobs: on each event the page fetches the server's fragment and morphs it in.
    activity_record(title="Dataset uploaded: churn", action_type="upload", user=user, project=ProjectFactory())
    expect(page.locator("#dash-activity .activity").first).to_contain_text("Dataset uploaded: churn")
    expect(page.locator("#dash-activity .activity").first.locator(".activity__user")).to_have_text(user.get_username())
    job = ProcessingJobFactory(status="running", progress=40, current_step="scaling")
    publish(catalog.JobProgress(job_id=job.pk, dataset_id=job.dataset_id, progress=40.0, status="running",
                                current_step="scaling", project_id=job.project_id))
    row = page.locator(f'#dash-jobs [data-job-key="processing-{job.pk}"]')
    expect(row).to_contain_text("scaling")
    expect(row.locator(".progress")).to_have_attribute("aria-valuenow", "40")
    expect(page.locator("#jobs-empty")).to_be_hidden()
    ProcessingJob.objects.filter(pk=job.pk).update(progress=70, current_step="encoding")
    publish(catalog.JobProgress(job_id=job.pk, dataset_id=job.dataset_id, progress=70.0, status="running",
                                current_step="encoding", project_id=job.project_id))
    expect(row.locator(".progress")).to_have_attribute("aria-valuenow", "70")
    expect(row).to_contain_text("encoding")
    training = TrainingJobFactory(name="churn-rf", status="running", progress=55, message="Epoch 5 of 10")
    publish(catalog.TrainingProgress(job_id=training.pk, progress=55.0, stage="model_training",
                                     current_stage="Epoch 5 of 10", estimated_time_remaining=3.0, current_epoch=5,
                                     total_epochs=10, current_loss=0.4, live_accuracy=0.8, message="Epoch 5 of 10",
                                     project_id=training.project_id))
    training_row = page.locator(f'#dash-jobs [data-job-key="training-{training.pk}"]')
    expect(training_row).to_contain_text("Training · churn-rf")
    expect(training_row).to_contain_text("Epoch 5 of 10")
    expect(training_row.locator(".progress")).to_have_attribute("aria-valuenow", "55")
    ProcessingJob.objects.filter(pk=job.pk).update(status="succeeded", progress=100)
    publish(catalog.JobCompleted(job_id=job.pk, dataset_id=job.dataset_id, status="succeeded", duration=2.0, result={},
                                 project_id=job.project_id))
    expect(row.locator(".badge")).to_have_text("Succeeded")
    expect(row).to_have_count(0, timeout=60_000)  # leaves the list once done
    expect(training_row).to_have_count(1)
    assert not page.console_errors


def test_dashboard_first_load_shows_running_jobs_and_open_alerts_from_the_database(server, open_page, user, rules):
    from django.utils import timezone

    from datasets.models import Dataset, ProcessingJob
    from training.models import ModelVersion

    project = ProjectFactory()
    dataset = Dataset.objects.create(name="penguins", status="ready", file="datasets/p.csv", project=project)
    ProcessingJob.objects.create(dataset=dataset, project=project, operation="scale", status="running", progress=64,
                                 current_step="scaling bill_length_mm")
    services.alert_raise(rule_kind="worker_missing", subject="worker:w9", title="Worker missing: w9")
    ModelVersion.objects.create(name="penguins-rf", version=2, status="active", algorithm="random_forest",
                                task="classification", target_column="species", validation_score=0.97,
                                artifact="models/x.joblib", artifact_sha256="0" * 64, deployed_at=timezone.now(),
                                prediction_count=250, project=project)
    page = open_page(server, user, path="/")
    expect(page.locator("#dash-jobs .job-item")).to_contain_text("scaling bill_length_mm")
    expect(page.locator("#dash-alerts .alert-item")).to_contain_text("Worker missing: w9")
    card = page.locator("#model-card")
    expect(card).to_contain_text("penguins-rf")
    expect(card).to_contain_text("97.0%")
    expect(card.locator('[data-field="deployed"]')).to_have_text("just now")
    expect(page.locator("#predictions-total")).to_have_text("250")
    other = ProjectFactory(slug="other", name="Other")
    publish(catalog.PredictionVolume(total_predictions=9000, predictions_per_minute=900.0, milestone_reached=None,
                                     message="9000 predictions", project_id=other.pk))  # not this page's project
    publish(catalog.PredictionVolume(total_predictions=300, predictions_per_minute=40.0, milestone_reached=None,
                                     message="300 predictions", project_id=project.pk))
    expect(page.locator("#predictions-total")).to_have_text("300")
    expect(page.locator("#predictions-trend")).to_have_attribute("data-trend", "up")
    publish(catalog.ModelDeployed(model_id=99, model_name="penguins-gb", model_version=3, model_accuracy=0.98,
                                  deployment_timestamp=timezone.now().isoformat(), message="penguins-gb v3 serving",
                                  project_id=project.pk))
    expect(card).to_contain_text("penguins-gb")
    expect(card.locator('[data-field="version"]')).to_have_text("v3")
    assert not page.console_errors


def system_result(database="healthy", broker="healthy", workers=()):
    from monitoring.checks import component

    workers = [{"name": name, "queues": ["default"], "active": active, "active_count": len(active), "concurrency": 2}
               for name, active in workers]
    return {"services": [component("database", database, 1.0, "sqlite"),
                         component("celery", "healthy", 2.0, f"{len(workers)} workers", workers=workers)],
            "integrations": [component("broker", broker, 1.0, "redis")], "workers": workers, "checked_at": None}


def test_system_page_morphs_in_components_and_workers_on_their_events(server, open_page, user):
    from monitoring import state

    state.services_set(system_result(workers=[("celery@w1", [])]))
    page = open_page(server, user, path="/monitoring/system/")
    expect(indicator(page)).to_have_text("Live")
    database = page.locator('#service-rows tr[data-component="database"]')
    expect(database.locator(".badge")).to_have_text("Healthy")
    expect(page.locator('#workers [data-worker="celery@w1"]')).to_contain_text("Idle")
    expect(page.locator("#worker-count")).to_have_text("1")

    # service_health: the services table and the workers are fetched again and morphed in.
    task = {"id": "t-1", "name": "training.training_job_run", "runtime_s": 12.0}
    result = system_result(database="down", workers=[("celery@w1", [task]), ("celery@w2", [])])
    state.services_set(result)
    publish(catalog.ServiceHealth(services=result["services"]))
    expect(database).to_have_attribute("data-status", "down")
    expect(database.locator(".badge")).to_have_text("Down")
    expect(database).to_have_class(re.compile(r"is-changed"))
    tasks = page.locator('#workers [data-worker="celery@w1"] [data-field="tasks"]')
    expect(tasks).to_contain_text("training.training_job_run")
    expect(page.locator('#workers [data-worker="celery@w2"]')).to_contain_text("0 active of 2 slots")
    expect(page.locator("#worker-count")).to_have_text("2")

    # component_health of an integration: its table is fetched again.
    result = system_result(database="down", broker="critical", workers=[("celery@w2", [])])
    state.services_set(result)
    publish(catalog.ComponentHealth(component="broker", status="critical", metrics={"label": "Task broker"}))
    expect(page.locator('#integration-rows tr[data-component="broker"] .badge')).to_have_text("Critical")
    assert not page.console_errors


def test_monitoring_page_charts_history_and_live_points_and_alert_buttons(server, open_page, user, rules):
    for cpu in (10.0, 20.0, 30.0):
        sample(cpu_percent=cpu)
    # A job's alert of alice's project: hers to acknowledge (a system alert would be staff's).
    alert = services.alert_raise(rule_kind="training_failed", subject="training_job.1", title="Training #1 failed",
                                 message="Target column is constant.", project=ProjectFactory())
    system = services.alert_raise(rule_kind="worker_missing", subject="worker:w1", title="Worker missing: w1")
    page = open_page(server, user, path="/monitoring/")
    system_row = page.locator(f'#alert-rows tr[data-alert-id="{system.pk}"]')
    expect(system_row.locator(".locked-action")).to_have_attribute("title", re.compile("admin"))
    expect(system_row.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(indicator(page)).to_have_text("Live")
    latest = page.locator('[data-chart="cpu"] [data-latest]')
    expect(latest).to_have_text("30.0%")  # the last hour, from storage
    expect(page.locator("#chart-cpu")).to_have_attribute("data-points", "3")
    sample(cpu_percent=55.0)
    expect(latest).to_have_text("55.0%")  # appended live from chart_data
    expect(page.locator("#chart-cpu")).to_have_attribute("data-points", "4")

    row = page.locator(f'#alert-rows tr[data-alert-id="{alert.pk}"]')
    expect(row.locator(".badge")).to_have_text("Open")
    row.get_by_role("button", name="Acknowledge").click()
    expect(row.locator(".badge")).to_have_text("Acknowledged")
    expect(row.get_by_role("button", name="Acknowledge")).to_be_hidden()
    row.get_by_role("button", name="Resolve").click()
    expect(row.locator(".badge")).to_have_text("Resolved")
    expect(row).to_contain_text("by alice")
    expect(page.locator("#alerts-open-count")).to_have_text("1")  # the system's is still open

    # Alerts and anomalies from others arrive live.
    other = services.alert_raise(rule_kind="pipeline_failed", subject="pipeline_run.3", title="Pipeline run #3 failed",
                                 project=ProjectFactory())
    expect(page.locator(f'#alert-rows tr[data-alert-id="{other.pk}"]')).to_contain_text("Pipeline run #3 failed")
    services.anomaly_record(source="metrics", entity="worker-1", metric="memory_percent", value=97.0, score=8.0,
                            severity="low", baseline=40.0)
    expect(page.locator("#anomaly-rows tr").first).to_contain_text("memory_percent")
    assert not page.console_errors
