"""Pages of the training app: start and follow the current project's training jobs, and its model
registry. What a user may not do is not rendered (the locked hint names the role instead); a POST
goes through the same services, hence the same checks (403 naming the role)."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse

from mlops_dashboard import permissions
from mlops_dashboard.projects import current_project

from . import selectors, services
from .api import TrainingJobCreateSerializer
from .models import ALGORITHMS, MAX_EPOCHS, STAGES, ModelVersion, TrainingJob

ALGORITHM_LABELS = dict(TrainingJob.Algorithm.choices)


def _form_errors(errors) -> dict[str, str]:
    return {field: " ".join(str(m) for m in (msgs if isinstance(msgs, list) else [msgs])) for field, msgs in errors.items()}


def index(request):
    """The Training page: the form that starts a job and the current project's jobs, updated live."""
    errors, values, status = {}, {}, 200
    project = current_project(request)
    if request.method == "POST":
        if project is None:
            raise PermissionDenied("Starting a training job needs the editor role in a project; you are in none.")
        permissions.authorize(request.user, "create", project)
        values = request.POST.dict()
        # The API's serializer validates the form too; optional fields left empty take their defaults.
        fields = ("dataset", "target_column", "algorithm", "epochs", "test_size", "name", "task")
        data = {k: values[k] for k in fields if values.get(k, "") != "" or k in ("dataset", "target_column")}
        serializer = TrainingJobCreateSerializer(data=data, context={"user": request.user})
        if serializer.is_valid():
            job = services.training_job_start(user=request.user, **serializer.validated_data)
            messages.success(request, f"Training job #{job.pk} ({job.name}) is queued.")
            return redirect("training:job-detail", pk=job.pk)
        errors, status = _form_errors(serializer.errors), 400
    datasets = selectors.datasets_ready_for_training(project=project) if project else []
    context = {
        "nav": "training",
        "project": project,
        "datasets": datasets,
        "jobs": selectors.training_jobs_recent(project=project) if project else [],
        "algorithms": [(a, ALGORITHM_LABELS[a]) for a in ALGORITHMS],
        "max_epochs": MAX_EPOCHS,
        "errors": errors,
        "values": values,
        "page_data": {
            "datasets": datasets,
            "selected": {"dataset": values.get("dataset", ""), "target_column": values.get("target_column", "")},
            "api": {"jobs": reverse("training-job-list")},
            "rowUrl": reverse("training:job-row", args=[0]),
        },
    }
    return render(request, "training/index.html", context, status=status)


def job_detail(request, pk: int):
    """One training job: stage, epoch, learning curves (live, and from the stored history)."""
    job = permissions.get_visible(TrainingJob.objects.select_related("model_version", "dataset", "project"),
                                  request.user, pk=pk)
    try:
        version = job.model_version
    except ModelVersion.DoesNotExist:
        version = None
    stage_index = STAGES.index(job.stage) if job.stage in STAGES else -1
    stages = []
    for i, stage in enumerate(STAGES):
        if job.status == "succeeded" or i < stage_index:
            state = "done"
        elif i == stage_index:
            state = {"running": "current", "failed": "failed", "cancelled": "failed"}.get(job.status, "current")
        else:
            state = "pending"
        stages.append({"key": stage, "label": services.STAGE_LABELS[stage], "state": state})
    context = {
        "nav": "training",
        "job": job,
        "version": version,
        "stages": stages,
        "stage_failed_label": services.STAGE_LABELS.get(job.stage_failed, job.stage_failed),
        "score_label": "R²" if job.task == "regression" else "Accuracy",
        "rows_text": services.sampling_text(job),
        "page_data": {
            "id": job.pk,
            "status": job.status,
            "task": job.task,
            "stage": job.stage,
            "epochs": job.epochs,
            "current_epoch": job.current_epoch,
            "history": job.history,
            "api": {
                "job": reverse("training-job-detail", args=[job.pk]),
                "cancel": reverse("training-job-cancel", args=[job.pk]),
            },
        },
    }
    return render(request, "training/job_detail.html", context)


def job_row(request, pk: int):
    """One row of the training jobs table (a fragment for static/js/pages/training.js)."""
    job = permissions.get_visible(TrainingJob.objects.select_related("model_version", "project").defer("history"),
                                  request.user, pk=pk)
    return render(request, "training/_job_row.html", {"job": job})


def models_index(request):
    """The current project's model registry: versions grouped by name, status dots, deploy and rollback."""
    project = current_project(request)
    groups = selectors.model_groups(project=project) if project else []
    context = {
        "nav": "training",
        "project": project,
        "groups": groups,
        "total_predictions": sum(g["prediction_total"] for g in groups),
        "serving": sum(1 for g in groups if g["active"]),
        "version_count": sum(len(g["versions"]) for g in groups),
        "page_data": {"api": {"models": reverse("model-version-list")}, "groupUrl": reverse("training:model-group", args=[0])},
    }
    return render(request, "training/models.html", context)


def model_group(request, pk: int):
    """The registry card of the model version's name, with every version of its project (a fragment
    for static/js/pages/models.js)."""
    version = permissions.get_visible(ModelVersion.objects.all(), request.user, pk=pk)
    group = selectors.model_groups(project=version.project_id, name=version.name)[0]
    return render(request, "training/_model_group.html", {"group": group})
