"""Retention of the training app (registered in apps.py, run by mlops_dashboard.retention_prune).

A finished training job's history is its per-epoch rows (`history`). Past RETENTION_JOBS_DAYS a job
that registered no model version goes; a job a model version points to stays (the version's page
links to it), with its final metrics, and loses only its per-epoch history.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q

from mlops_dashboard.jobs import TERMINAL
from mlops_dashboard.retention import delete_in_batches

from ..models import ModelVersion, TrainingJob


def training_jobs_prune(cutoff) -> int:
    """Delete old finished jobs without a model version; empty the history of the others. Returns the
    jobs deleted plus the histories emptied."""
    old = TrainingJob.objects.filter(status__in=list(TERMINAL)).filter(
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
    )
    deleted = delete_in_batches(old.filter(model_version__isnull=True))
    emptied = 0
    with_history = old.exclude(history=[]).order_by()
    while True:
        pks = list(with_history.values_list("pk", flat=True)[:settings.RETENTION_BATCH_SIZE])
        if not pks:
            return deleted + emptied
        emptied += TrainingJob.objects.filter(pk__in=pks).update(history=[])


def artifacts_referenced() -> list[str]:
    return list(ModelVersion.objects.exclude(artifact="").values_list("artifact", flat=True))
