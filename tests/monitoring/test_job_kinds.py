"""Monitoring reads long jobs only through the registry of job kinds (mlops_dashboard.jobs): a kind
registered there is watched for failures and stalls, and shown on the dashboard, with the label,
step text and row its app gave; beat's reapers and resenders are the registered ones."""

from __future__ import annotations

import pytest
from django.utils import timezone

from mlops_dashboard import jobs
from monitoring import selectors, services
from monitoring.models import Alert, AnomalyDetection


def test_every_app_registers_its_kinds_of_job(db):
    kinds = {kind.key: kind for kind in jobs.kinds()}
    assert {"processing_job", "training_job", "pipeline_run", "anomaly_detection"} <= set(kinds)
    assert {k: kinds[k].failed_rule for k in ("processing_job", "training_job", "pipeline_run", "anomaly_detection")} == {
        "processing_job": "job_failed", "training_job": "training_failed", "pipeline_run": "pipeline_failed",
        "anomaly_detection": "job_failed"}
    assert kinds["anomaly_detection"].reaper == "monitoring.services.detection.anomaly_detections_reap_stale"
    assert set(jobs.reap_all()) == {k.reaper for k in kinds.values() if k.reaper}


@pytest.fixture
def a_new_kind():
    """A kind of job the monitoring app has never heard of (detections, under another key)."""
    kind = jobs.register(jobs.JobKind(
        key="test_detection", model=AnomalyDetection, label=lambda d: f"Test detection #{d.pk}",
        step_text=lambda d: f"scoring {d.dataset_name}", failed_rule="job_failed",
        row=lambda d: {"kind": "test", "title": f"Test · {d.dataset_name}", "url": "/test/"},
    ))
    yield kind
    jobs._KINDS.pop(kind.key)


def test_a_registered_kind_is_watched_and_shown_by_what_its_app_registered(rules, ready_dataset, a_new_kind):
    dataset = ready_dataset("penguins.csv")
    failed = AnomalyDetection.objects.create(dataset=dataset, project=dataset.project, dataset_name="penguins", status="failed",
                                             error="boom", finished_at=timezone.now())
    running = AnomalyDetection.objects.create(dataset=dataset, project=dataset.project, dataset_name="penguins", status="running")
    # Watched under both keys: the new kind's, and anomaly detections' own (a failed processing job).
    assert services.jobs_check()["failed"] == 2
    assert Alert.objects.filter(subject=f"anomaly_detection.{failed.pk}").exists()
    alert = Alert.objects.get(subject=f"test_detection.{failed.pk}")
    assert alert.project_id == dataset.project_id  # a job's alert belongs to the job's project
    assert alert.title == f"Failed: Test detection #{failed.pk}" and alert.message == "boom"
    [row] = [r for r in selectors.running_jobs() if r["kind"] == "test"]
    assert row == {"kind": "test", "key": f"test-{running.pk}", "id": running.pk, "title": "Test · penguins",
                   "url": "/test/", "status": "running", "progress": 0.0, "step": "scoring penguins",
                   "created_at": running.created_at}


def test_the_job_failed_signal_raises_the_failed_alert_at_once(rules, ready_dataset, a_new_kind):
    dataset = ready_dataset("penguins.csv")
    detection = AnomalyDetection.objects.create(dataset=dataset, project=dataset.project, status="failed", error="lost")
    jobs.job_failed_send("test_detection", detection)
    alert = Alert.objects.get(subject=f"test_detection.{detection.pk}")
    assert alert.rule == rules["processing-job-failed"] and alert.metadata["job"] == f"test_detection.{detection.pk}"
    assert services.jobs_check()["failed"] == 0  # the periodic check does not raise it twice
