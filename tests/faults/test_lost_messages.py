"""Queued work whose broker message was lost (Redis restarted without its data, a broker failover)
is sent again by beat once nothing waits in the broker, and runs once; fresh queued work is left
alone."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from datasets import services as dataset_services
from datasets.models import Dataset, ProcessingJob
from monitoring import services as monitoring_services
from monitoring.models import AnomalyDetection
from tests import procs
from training import services as training_services
from training.models import ModelVersion, TrainingJob

from tests.training.conftest import csv_source


def test_rows_whose_message_was_lost_are_sent_again_and_run_once(live_worker_proc, stack, titanic, user, monkeypatch):
    live_worker_proc.stop()  # only this test's worker, whose log is read (later tests start it again)
    # Rows as a lost message leaves them: recorded, never enqueued (and queued for minutes).
    lost_job = training_services.training_job_start(user=user, dataset=titanic, target_column="survived", algorithm="sgd",
                                                    epochs=3, created_by=user, enqueue=False)
    lost_upload = dataset_services.dataset_create_from_file(path=str(csv_source("penguins.csv")), name="penguins",
                                                            user=user, ingest=False)
    with monkeypatch.context() as patch:  # the message goes nowhere
        patch.setattr("datasets.tasks.processing_job_run.delay", lambda *args: None)
        lost_processing = dataset_services.processing_job_create(dataset=titanic, operation="split",
                                                                 options={"test_ratio": 0.25}, user=user)
        patch.setattr("monitoring.tasks.anomaly_detection_run.delay", lambda *args: None)
        lost_detection = monitoring_services.anomaly_detection_start(dataset=titanic, user=user)
    long_ago = timezone.now() - timedelta(minutes=5)
    for model, pk in ((TrainingJob, lost_job.pk), (Dataset, lost_upload.pk), (ProcessingJob, lost_processing.pk),
                      (AnomalyDetection, lost_detection.pk)):
        model.objects.filter(pk=pk).update(created_at=long_ago)
    fresh = training_services.training_job_start(user=user, dataset=titanic, target_column="survived", algorithm="sgd",
                                                 epochs=3, created_by=user, enqueue=False)

    worker = stack.worker(beat=True, REAPER_INTERVAL=2)
    procs.wait_for(lambda: TrainingJob.objects.get(pk=lost_job.pk).status == "succeeded", timeout=180,
                   message="the lost training job to be sent again and succeed")
    procs.wait_for(lambda: Dataset.objects.get(pk=lost_upload.pk).status == "ready", timeout=60,
                   message="the lost upload to be validated and profiled")
    procs.wait_for(lambda: ProcessingJob.objects.get(pk=lost_processing.pk).is_terminal, timeout=60,
                   message="the lost processing job to be sent again")
    procs.wait_for(lambda: AnomalyDetection.objects.get(pk=lost_detection.pk).is_terminal, timeout=60,
                   message="the lost anomaly detection to be sent again")
    procs.wait_for(lambda: worker.output().count("sent again") >= 4, timeout=60, message="the resends logged")

    job = ProcessingJob.objects.get(pk=lost_processing.pk)
    assert job.status == "succeeded", (job.error, worker.output()[-3000:])
    assert TrainingJob.objects.get(pk=lost_job.pk).attempts == 1
    detection = AnomalyDetection.objects.get(pk=lost_detection.pk)
    assert (detection.status, detection.attempts) == ("succeeded", 1), detection.error
    assert ModelVersion.objects.filter(training_job_id=lost_job.pk).count() == 1
    assert Dataset.objects.filter(parent_id=titanic.pk).count() == 2
    # Several reaper rounds later: queued for less than two minutes is not lost, only waiting.
    procs.wait_for(lambda: worker.output().count("mlops_dashboard.jobs_recover") >= 6, timeout=120, message="more reaper rounds")
    assert TrainingJob.objects.get(pk=fresh.pk).status == "queued"
    assert f"training job {fresh.pk}: still queued" not in worker.output()
