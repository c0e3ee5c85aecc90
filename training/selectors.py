"""Reads of the training app that are more than a one-line query."""

from __future__ import annotations

from itertools import groupby

from django.db.models import Sum

from datasets import selectors as datasets_selectors

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


def datasets_ready_for_training() -> list[dict]:
    """Ready datasets with their columns, for the Training page's form (newest first)."""
    rows = datasets_selectors.datasets_ready()
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


def training_jobs_recent(*, limit: int = 50):
    return list(TrainingJob.objects.select_related("model_version").defer("history")[:limit])


def model_groups() -> list[dict]:
    """Model versions grouped by name: each group's versions (newest first), its serving version
    and its prediction total. Groups with the most recent activity come first."""
    versions = list(ModelVersion.objects.select_related("dataset", "training_job").order_by("name", "-version"))
    groups = []
    for name, items in groupby(versions, key=lambda v: v.name):
        items = list(items)
        active = next((v for v in items if v.status == ModelVersion.Status.ACTIVE), None)
        groups.append(
            {
                "name": name,
                "versions": items,
                "active": active,
                "latest": items[0],
                "prediction_total": sum(v.prediction_count for v in items),
            }
        )
    groups.sort(key=lambda g: max(v.created_at for v in g["versions"]), reverse=True)
    return groups


def prediction_total() -> int:
    """Predictions served by every model version."""
    return int(ModelVersion.objects.aggregate(n=Sum("prediction_count"))["n"] or 0)



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


def model_versions_active(*, limit: int = 5) -> list[ModelVersion]:
    """The active model versions, the most recently deployed first."""
    return list(ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).order_by("-deployed_at", "-id")[:limit])


def model_versions_active_count() -> int:
    return ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).count()


def model_versions_error_count() -> int:
    return ModelVersion.objects.filter(status=ModelVersion.Status.ERROR).count()
