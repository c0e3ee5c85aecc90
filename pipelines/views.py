"""Pages of the pipelines app: the list (with the step editor), one pipeline, one run, and the run row
fragment that live updates morph into a pipeline's run history."""

from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from mlops_dashboard import permissions
from mlops_dashboard.projects import current_project

from . import selectors
from . import steps as step_kinds
from .api import PipelineRunDetailSerializer, PipelineRunSerializer, PipelineSerializer, step_links
from .models import Pipeline, PipelineRun


def _editor(project, pipeline=None) -> dict:
    return {
        "project": project.pk if project is not None else None,
        "datasets": selectors.datasets_for_editor(project=project),
        "config": selectors.editor_config(),
        "pipeline": PipelineSerializer(pipeline).data if pipeline is not None else None,
    }


def index(request):
    """The current project's pipelines with their last run (live), and the form that defines a new
    one (for editors)."""
    project = current_project(request)
    pipelines = selectors.pipelines_with_last_run(project=project)
    for pipeline in pipelines:
        pipeline.step_kinds = [step_kinds.KIND_LABELS.get(s.get("kind"), s.get("kind")) for s in pipeline.steps]
    context = {
        "nav": "pipelines",
        "project": project,
        "pipelines": pipelines,
        "page_data": {
            "editor": _editor(project),
            "api": {"pipelines": reverse("pipeline-list")},
        },
    }
    return render(request, "pipelines/index.html", context)


def detail(request, pk: int):
    """One pipeline: its definition (and editor), the Run button and its run history (live)."""
    pipeline = permissions.get_visible(
        Pipeline.objects.select_related("project", "dataset", "created_by", "periodic_task"), request.user, pk=pk)
    runs = selectors.pipeline_runs_recent(pipeline=pipeline)
    steps = [
        {"index": i, "kind": s["kind"], "label": step_kinds.KIND_LABELS.get(s["kind"], s["kind"]),
         "summary": step_kinds.describe(s), "options": s.get("options") or {}}
        for i, s in enumerate(pipeline.steps)
    ]
    context = {
        "nav": "pipelines",
        "pipeline": pipeline,
        "steps": steps,
        "runs": runs,
        "page_data": {
            "pipeline": {"id": pipeline.pk, "name": pipeline.name},
            "runs": PipelineRunSerializer(runs, many=True).data,
            "editor": _editor(pipeline.project, pipeline),
            "api": {
                "pipeline": reverse("pipeline-detail", args=[pipeline.pk]),
                "run": reverse("pipeline-run", args=[pipeline.pk]),
                "runs": reverse("pipeline-run-list") + f"?pipeline={pipeline.pk}",
                "index": reverse("pipelines:index"),
            },
            "runRowUrl": reverse("pipelines:run-row", args=[0]),
        },
    }
    return render(request, "pipelines/detail.html", context)


@require_GET
def run_row(request, pk: int):
    """One row of a pipeline's run history (a fragment for static/js/pages/pipeline_detail.js)."""
    run = permissions.get_visible(PipelineRun.objects.all(), request.user, pk=pk)
    return render(request, "pipelines/_run_row.html", {"run": run})


def run_detail(request, pk: int):
    """One run: its steps as a vertical graph (state, duration, outputs) and a live tail of its log."""
    run = permissions.get_visible(
        PipelineRun.objects.select_related("project", "pipeline", "created_by", "retry_of"), request.user, pk=pk)
    step_runs = list(run.step_runs.select_related("output_dataset", "input_dataset", "model_version"))
    for step in step_runs:
        step.links = step_links(step)
        step.summary = step_kinds.describe({"kind": step.kind, "options": step.options})
    log = [f"[{s.index + 1} {s.kind}] {line}" for s in step_runs for line in (s.log or [])]
    context = {
        "nav": "pipelines",
        "run": run,
        "step_runs": step_runs,
        "log": log[-500:],
        "page_data": {
            "run": PipelineRunDetailSerializer(run).data,
            "api": {
                "run": reverse("pipeline-run-detail", args=[run.pk]),
                "cancel": reverse("pipeline-run-cancel", args=[run.pk]),
                "retry": reverse("pipeline-run-retry", args=[run.pk]),
            },
        },
    }
    return render(request, "pipelines/run_detail.html", context)
