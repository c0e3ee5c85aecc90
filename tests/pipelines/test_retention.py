"""Retention of pipeline runs: finished runs past RETENTION_PIPELINE_RUNS_DAYS go with their steps;
active runs and each pipeline's last run stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from mlops_dashboard.tasks import retention_prune
from pipelines.models import PipelineRun, StepRun

pytestmark = pytest.mark.django_db(transaction=True)

DAY = timedelta(days=1)


def run(pipeline, *, status="succeeded", age=timedelta(0)):
    from tests.factories import PipelineRunFactory, StepRunFactory

    row = PipelineRunFactory(pipeline=pipeline, status=status)
    StepRunFactory(run=row, index=0)
    StepRunFactory(run=row, index=1)
    when = timezone.now() - age
    PipelineRun.objects.filter(pk=row.pk).update(created_at=when, finished_at=when if status != "running" else None)
    return row


def test_old_finished_runs_go_with_their_steps(settings):
    from tests.factories import PipelineFactory

    settings.RETENTION_PIPELINE_RUNS_DAYS = 90
    pipeline = PipelineFactory()
    old = [run(pipeline, age=200 * DAY), run(pipeline, status="failed", age=150 * DAY),
           run(pipeline, status="cancelled", age=100 * DAY)]
    running = run(pipeline, status="running", age=120 * DAY)
    recent = run(pipeline, age=10 * DAY)
    quiet = PipelineFactory(dataset=pipeline.dataset)
    last_of_quiet = run(quiet, age=300 * DAY)  # its only run: the pipeline's list row shows it

    assert retention_prune()["pipeline_runs"] == 3
    assert set(PipelineRun.objects.values_list("pk", flat=True)) == {running.pk, recent.pk, last_of_quiet.pk}
    assert not StepRun.objects.filter(run_id__in=[r.pk for r in old]).exists()
    assert StepRun.objects.filter(run=recent).count() == 2


def test_zero_keeps_every_run(settings):
    from tests.factories import PipelineFactory

    settings.RETENTION_PIPELINE_RUNS_DAYS = 0
    pipeline = PipelineFactory()
    runs = [run(pipeline, age=1000 * DAY), run(pipeline, age=900 * DAY)]
    retention_prune()
    assert PipelineRun.objects.count() == len(runs)
