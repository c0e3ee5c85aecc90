"""Retention of pipeline runs (registered in apps.py, run by mlops_dashboard.retention_prune): finished
runs older than RETENTION_PIPELINE_RUNS_DAYS go with their steps, except each pipeline's last run
(its list row and page show it)."""

from __future__ import annotations

from django.db.models import OuterRef, Q, Subquery

from mlops_dashboard.jobs import TERMINAL
from mlops_dashboard.retention import delete_in_batches

from .models import PipelineRun


def pipeline_runs_prune(cutoff) -> int:
    last = PipelineRun.objects.filter(pipeline=OuterRef("pipeline")).order_by("-created_at", "-id").values("pk")[:1]
    old = PipelineRun.objects.filter(status__in=list(TERMINAL)).filter(
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
    ).exclude(pk=Subquery(last))
    return delete_in_batches(old)
