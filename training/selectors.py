"""Reads of the training app that are more than a one-line query."""

from __future__ import annotations

from itertools import groupby


from datasets import selectors as datasets_selectors

from . import counters
from .models import ALGORITHMS, ModelVersion, TrainingJob

# --- what other apps read of training (pipelines) ----------------------------------------------------


def algorithm_names() -> tuple[str, ...]:
    return ALGORITHMS


def training_job_get(pk: int) -> TrainingJob:
    return TrainingJob.objects.get(pk=pk)


def training_job_progress(pk: int) -> tuple[float, str] | None:
    """(percent, message) of a training job, or None when it is gone."""
    row = TrainingJob.objects.filter(pk=pk).values("progress", "message").first()
    return (row["progress"], row["message"]) if row else None


def model_version_get(pk: int | None) -> ModelVersion | None:
    return ModelVersion.objects.filter(pk=pk or 0).first()


def model_version_of_job(job: TrainingJob) -> ModelVersion | None:
    """The model version a succeeded training job registered."""
    return ModelVersion.objects.filter(training_job=job).first()


# --- the training pages ------------------------------------------------------------------------------


def datasets_ready_for_training(*, project) -> list[dict]:
    """A project's ready datasets with their columns, for the Training page's form (newest first)."""
    rows = datasets_selectors.datasets_ready().filter(project_id=getattr(project, "pk", project))
    return [
        {
            "id": d.pk,
            "name": d.name,
            "columns": list(d.column_names or []),
            "target_column": d.target_column or "",
            "rows": d.row_count,
        }
        for d in rows.only("id", "name", "column_names", "target_column", "row_count")[:500]
    ]


def training_jobs_recent(*, project, limit: int = 50):
    jobs = TrainingJob.objects.filter(project_id=getattr(project, "pk", project))
    return list(jobs.select_related("model_version", "project").defer("history")[:limit])


def model_groups(*, project=None, name: str | None = None) -> list[dict]:
    """Model versions grouped by project and name (one project's when given, which is what pages
    show): each group's versions (newest first), its serving version and its prediction total.
    Groups with the most recent activity come first."""
    versions = ModelVersion.objects.all()
    if project is not None:
        versions = versions.filter(project_id=getattr(project, "pk", project))
    if name is not None:
        versions = versions.filter(name=name)
    versions = counters.overlay(list(
        versions.select_related("dataset", "training_job", "project").order_by("project_id", "name", "-version")))
    groups = []
    for (project_id, name), items in groupby(versions, key=lambda v: (v.project_id, v.name)):
        items = list(items)
        active = next((v for v in items if v.status == ModelVersion.Status.ACTIVE), None)
        groups.append(
            {
                "project_id": project_id,
                "name": name,
                "versions": items,
                "active": active,
                "latest": items[0],
                "prediction_total": sum(v.prediction_count for v in items),
            }
        )
    groups.sort(key=lambda g: max(v.created_at for v in g["versions"]), reverse=True)
    return groups


def prediction_total(*, project_id: int | None = None) -> int:
    """Predictions served by every model version (of one project, when given)."""
    versions = ModelVersion.objects.all() if project_id is None else ModelVersion.objects.filter(project_id=project_id)
    return counters.total_of(versions)


def project_serving_figures(project_id: int) -> dict:
    """The model figures of one project, for its own topic and pages (never `dashboard`):

    - `predictions_total`: predictions served by the project's versions (exact: counters.py);
    - `predictions_per_minute`: the project's rate over about the last minute (Redis; 0.0 without it);
    - `current_accuracy`: the validation score of the project's most recently deployed active
      version (None when nothing serves);
    - `model`: that version `{id, name, version, accuracy, deployed_at, predictions}` or None;
    - `active_models`: how many of the project's names have a serving version.
    """
    from .services.serving import predictions_per_minute

    active = model_versions_active(limit=1, project_id=project_id)
    model = None
    if active:
        version = active[0]
        accuracy = version.validation_score
        if accuracy is None:
            accuracy = version.final_accuracy
        model = {"id": version.pk, "name": version.name, "version": version.version,
                 "accuracy": float(accuracy) if accuracy is not None else None, "deployed_at": version.deployed_at,
                 "predictions": int(version.prediction_count or 0)}
    return {
        "project_id": project_id,
        "predictions_total": prediction_total(project_id=project_id),
        "predictions_per_minute": predictions_per_minute(project_id),
        "current_accuracy": model["accuracy"] if model else None,
        "model": model,
        "active_models": model_versions_active_count(project_id=project_id),
    }


def model_projects_named(name: str, project_ids) -> list:
    """The projects (among `project_ids`; None: every one) that have a model of this name, by id."""
    from mlops_dashboard.models import Project

    versions = ModelVersion.objects.filter(name=name)
    if project_ids is not None:
        versions = versions.filter(project_id__in=project_ids)
    return list(Project.objects.filter(pk__in=versions.values("project_id")).order_by("pk"))


def model_version_serving(*, project_id: int, name: str) -> ModelVersion | None:
    """The version serving a name in a project, if any."""
    return ModelVersion.objects.select_related("project").filter(
        project_id=project_id, name=name, status=ModelVersion.Status.ACTIVE).first()



# --- training jobs as a kind of job, and the serving model (read by monitoring) -----------------------


def training_job_label(job: TrainingJob) -> str:
    return f"Training job #{job.pk} ({job.name})"


def training_job_step_text(job: TrainingJob) -> str:
    return job.message or job.stage.replace("_", " ") or job.status


def training_job_row(job: TrainingJob) -> dict:
    from django.urls import reverse

    return {"kind": "training", "title": f"Training · {job.name}", "url": reverse("training:job-detail", args=[job.pk])}


def training_job_failure_metadata(job: TrainingJob) -> dict:
    return {"error_code": job.error_code or None}


def _of_project(queryset, project_id: int | None):
    return queryset if project_id is None else queryset.filter(project_id=project_id)


def model_versions_active(*, limit: int = 5, project_id: int | None = None) -> list[ModelVersion]:
    """The active model versions (of one project, when given), the most recently deployed first."""
    active = _of_project(ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE), project_id)
    return counters.overlay(list(active.order_by("-deployed_at", "-id")[:limit]))


def model_versions_active_count(*, project_id: int | None = None) -> int:
    return _of_project(ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE), project_id).count()


def model_versions_error_count(*, project_id: int | None = None) -> int:
    return _of_project(ModelVersion.objects.filter(status=ModelVersion.Status.ERROR), project_id).count()
