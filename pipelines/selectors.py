"""Reads of the pipelines app that are more than a one-line query."""

from __future__ import annotations

from django.db.models import OuterRef, Subquery

from datasets import selectors as datasets_selectors
from training import selectors as training_selectors

from . import steps as step_kinds
from .models import Pipeline, PipelineRun


def pipelines_annotated(queryset=None):
    """Pipelines, each with `last_run_id` (its newest run's id), for `pipelines_attach_last_run`."""
    newest = PipelineRun.objects.filter(pipeline=OuterRef("pk")).order_by("-created_at", "-id").values("pk")[:1]
    queryset = Pipeline.objects.all() if queryset is None else queryset
    return queryset.select_related("dataset", "created_by").annotate(last_run_id=Subquery(newest))


def pipelines_attach_last_run(pipelines) -> list[Pipeline]:
    """Set `last_run` (the newest run, or None) on annotated pipelines, in one query for them all."""
    pipelines = list(pipelines)
    ids = [p.last_run_id for p in pipelines if p.last_run_id]
    runs = PipelineRun.objects.select_related("pipeline", "created_by").in_bulk(ids)
    for pipeline in pipelines:
        pipeline.last_run = runs.get(pipeline.last_run_id)
    return pipelines


def pipelines_with_last_run(*, project) -> list[Pipeline]:
    """The project's pipelines, each with `last_run` (its newest run, or None)."""
    if project is None:
        return []
    return pipelines_attach_last_run(pipelines_annotated(Pipeline.objects.filter(project=project)))


def pipeline_runs_recent(*, pipeline: Pipeline, limit: int = 50) -> list[PipelineRun]:
    return list(pipeline.runs.select_related("created_by").order_by("-created_at", "-id")[:limit])


def datasets_for_editor(*, project) -> list[dict]:
    """The datasets a pipeline of this project may start from (the project's own), with what the step
    editor needs to know of each."""
    if project is None:
        return []
    ids = set(datasets_selectors.datasets_all().filter(project=project).values_list("pk", flat=True))
    return [
        {"id": r["id"], "name": r["name"], "status": r["status"], "columns": r["column_names"] or [],
         "target": r["target_column"] or ""}
        for r in datasets_selectors.datasets_usable() if r["id"] in ids
    ]


def editor_config() -> dict:
    """Static choices of the step editor (kinds, metrics, operations, algorithms)."""
    return {
        "kinds": [{"value": k, "label": step_kinds.KIND_LABELS[k]} for k in step_kinds.KINDS],
        "metrics": list(step_kinds.METRICS),
        "error_metrics": list(step_kinds.ERROR_METRICS),
        "operations": list(datasets_selectors.OPERATIONS),
        "missing_strategies": list(datasets_selectors.MISSING_STRATEGIES),
        "scale_methods": list(datasets_selectors.SCALE_METHODS),
        "algorithms": list(training_selectors.algorithm_names()),
        "tasks": list(step_kinds.TASKS),
        "max_epochs": step_kinds.MAX_EPOCHS,
    }


# --- pipeline runs as a kind of job (registered in apps.py; read by monitoring and the dashboard) ---


def pipeline_run_label(run: PipelineRun) -> str:
    return f"Pipeline run #{run.pk} of {run.pipeline.name}" + (f" at {run.failed_step}" if run.failed_step else "")


def pipeline_run_step_text(run: PipelineRun) -> str:
    """The step a run is at ("step 2 of 4 (train model): ..."); runs keep the index of their current step."""
    step = run.current_step
    if step is None:
        return run.message or run.status
    steps = run.steps or []
    kind = steps[step].get("kind", "") if 0 <= step < len(steps) and isinstance(steps[step], dict) else ""
    text = f"step {step + 1} of {len(steps)}" + (f" ({kind.replace('_', ' ')})" if kind else "")
    return f"{text}: {run.message}" if run.message else text


def pipeline_run_row(run: PipelineRun) -> dict:
    from django.urls import reverse

    return {"kind": "pipeline", "title": f"Pipeline · {run.pipeline.name}",
            "url": reverse("pipelines:run-detail", args=[run.pk])}


def pipeline_run_failure_metadata(run: PipelineRun) -> dict:
    return {"pipeline_id": run.pipeline_id, "failed_step": run.failed_step}
