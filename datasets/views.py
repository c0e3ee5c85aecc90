"""Pages of the datasets app: the list with uploads, one dataset's profile and processing jobs.

Writes go through the REST API (datasets/api.py) from the page modules; these views only read.
The two fragment views render one table row, so rows inserted or refreshed live look exactly like
the ones rendered with the page.
"""

from django.conf import settings
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from . import selectors
from .models import Dataset, ProcessingJob


@require_GET
def index(request):
    """Upload a CSV (with live progress) and the datasets table, updated live."""
    datasets = list(selectors.datasets_for_list())
    context = {
        "nav": "datasets",
        "datasets": datasets,
        "list_limit": selectors.LIST_LIMIT,
        "max_upload_mb": settings.DATASET_MAX_UPLOAD_MB,
        "page_data": {
            "api": {"datasets": reverse("dataset-list")},
            "rowUrl": reverse("datasets:row", args=[0]),
            "maxUploadBytes": settings.DATASET_MAX_UPLOAD_MB * 1024 * 1024,
            "maxUploadMb": settings.DATASET_MAX_UPLOAD_MB,
        },
    }
    return render(request, "datasets/index.html", context)


@require_GET
def row(request, pk: int):
    """One row of the datasets table (a fragment for static/js/pages/datasets.js)."""
    return render(request, "datasets/_dataset_row.html", {"dataset": selectors.dataset_for_row(pk)})


@require_GET
def detail(request, pk: int):
    """One dataset: status, errors or profile, quality, histograms, preview, lineage and jobs."""
    dataset = get_object_or_404(Dataset.objects.select_related("parent", "source_job", "created_by"), pk=pk)
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
    return render(request, "datasets/_job_row.html", {"job": selectors.processing_job(pk)})
