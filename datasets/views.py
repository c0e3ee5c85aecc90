"""Pages of the datasets app: the list with uploads, one dataset's profile and processing jobs.

Writes go through the REST API (datasets/api.py) from the page modules, checked by the services;
these views only read, and only what the user may see (another project's dataset is a 404). The
list shows the current project's datasets, and the upload form posts to that project.
The two fragment views render one table row, so rows inserted or refreshed live look exactly like
the ones rendered with the page.
"""

from django.conf import settings
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from . import selectors
from mlops_dashboard.projects import current_project

from .models import Dataset, ProcessingJob


@require_GET
def index(request):
    """Upload a CSV (with live progress) and the datasets table, updated live."""
    project = current_project(request)
    datasets = list(selectors.datasets_for_list(user=request.user, project=project))
    upload_url = reverse("dataset-list") + (f"?project={project.pk}" if project is not None else "")
    context = {
        "nav": "datasets",
        "project": project,
        "upload_url": upload_url,
        "datasets": datasets,
        "list_limit": selectors.LIST_LIMIT,
        "max_upload_mb": settings.DATASET_MAX_UPLOAD_MB,
        "page_data": {
            # The project in the URL: the server checks it before the body is sent.
            "api": {"datasets": upload_url},
            "rowUrl": reverse("datasets:row", args=[0]),
            "maxUploadBytes": settings.DATASET_MAX_UPLOAD_MB * 1024 * 1024,
            "maxUploadMb": settings.DATASET_MAX_UPLOAD_MB,
        },
    }
    return render(request, "datasets/index.html", context)


@require_GET
def row(request, pk: int):
    """One row of the datasets table (a fragment for static/js/pages/datasets.js)."""
    return render(request, "datasets/_dataset_row.html", {"dataset": selectors.dataset_for_row(pk, user=request.user)})


@require_GET
def detail(request, pk: int):
    """One dataset: status, errors or profile, quality, histograms, preview, lineage and jobs."""
    dataset = selectors.dataset_for_page(pk, user=request.user)
    ready = dataset.status == Dataset.Status.READY
    columns = selectors.column_profiles(dataset) if ready else []
    jobs = selectors.processing_jobs(dataset)
    context = {
        "nav": "datasets",
        "dataset": dataset,
        "ready": ready,
        "summary": selectors.dataset_summary(dataset) if ready else None,
        "quality": selectors.quality_view(dataset) if ready else None,
        "columns": columns,
        "chart_limit": selectors.CHART_COLUMNS,
        "preview": selectors.preview(dataset) if ready else None,
        "lineage": selectors.lineage(dataset),
        "jobs": jobs,
        "operations": ProcessingJob.Operation.choices,
        "missing_strategies": list(selectors.MISSING_LABELS.items()),
        "form_columns": selectors.job_form_columns(dataset),
        "page_data": {
            "id": dataset.pk,
            "status": dataset.status,
            "name": dataset.name,
            "charts": selectors.charts_data(columns),
            "api": {
                "dataset": reverse("dataset-detail", args=[dataset.pk]),
                "reprofile": reverse("dataset-reprofile", args=[dataset.pk]),
                "jobs": reverse("dataset-jobs", args=[dataset.pk]),
                "cancel": reverse("processing-job-cancel", args=[0]),
            },
            "jobRowUrl": reverse("datasets:job-row", args=[0]),
            "indexUrl": reverse("datasets:index"),
        },
    }
    return render(request, "datasets/detail.html", context)


@require_GET
def job_row(request, pk: int):
    """One row of a dataset's processing jobs table (a fragment for static/js/pages/datasets_detail.js)."""
    return render(request, "datasets/_job_row.html", {"job": selectors.processing_job(pk, user=request.user)})
