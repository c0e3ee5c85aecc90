"""Retention of training jobs: a finished job's history (its per-epoch rows) goes after
RETENTION_JOBS_DAYS; a job nothing refers to goes whole; a job a model version points to stays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from mlops_dashboard.tasks import retention_prune
from training.models import ModelVersion, TrainingJob

pytestmark = pytest.mark.django_db(transaction=True)

DAY = timedelta(days=1)
HISTORY = [{"epoch": i, "loss": 1 / i, "accuracy": 0.5, "duration": 0.1} for i in range(1, 6)]


def job(dataset, *, status="succeeded", age=timedelta(0)):
    from tests.factories import TrainingJobFactory

    row = TrainingJobFactory(dataset=dataset, status=status, history=HISTORY, final_accuracy=0.8)
    when = timezone.now() - age
    TrainingJob.objects.filter(pk=row.pk).update(created_at=when, finished_at=when if status != "running" else None)
    return row


def test_old_jobs_lose_their_history_and_unreferenced_ones_go(settings):
    from tests.factories import DatasetFactory, ModelVersionFactory

    settings.RETENTION_JOBS_DAYS = 90
    dataset = DatasetFactory(target_column="survived")
    registered = job(dataset, age=200 * DAY)
    ModelVersionFactory(training_job=registered, artifact="models/x.joblib")
    failed = job(dataset, status="failed", age=100 * DAY)
    cancelled = job(dataset, status="cancelled", age=95 * DAY)
    running = job(dataset, status="running", age=100 * DAY)
    recent = job(dataset, status="failed", age=10 * DAY)

    result = retention_prune()
    assert result["training_jobs"] == 3  # two deleted, one history emptied
    assert set(TrainingJob.objects.values_list("pk", flat=True)) == {registered.pk, running.pk, recent.pk}
    assert not TrainingJob.objects.filter(pk__in=[failed.pk, cancelled.pk]).exists()
    registered.refresh_from_db()
    assert registered.history == [] and registered.final_accuracy == 0.8  # the row and its final figures stay
    assert ModelVersion.objects.get().training_job_id == registered.pk
    assert TrainingJob.objects.get(pk=running.pk).history == HISTORY
    assert TrainingJob.objects.get(pk=recent.pk).history == HISTORY
    assert retention_prune()["training_jobs"] == 0  # nothing left to do: a second pass touches no row
