"""Reads for the datasets pages: the list, and what the detail page shows of a profile and its jobs."""

from __future__ import annotations

import math

from mlops_dashboard import permissions
from mlops_dashboard.jobs import ACTIVE

from . import operations
from .models import Dataset, ProcessingJob
from .profiling import ColumnProfile, DatasetProfile, Histogram, QualityReport

# --- what other apps read of datasets (pipelines) ----------------------------------------------------

OPERATIONS = operations.OPERATIONS
MISSING_STRATEGIES = operations.MISSING_STRATEGIES
SCALE_METHODS = operations.SCALE_METHODS
ProcessingOptionsError = operations.OptionsError


def processing_options_clean(operation: str, options, *, columns: list[str], target_column: str = "") -> dict:
    """A processing operation's options, checked and completed; ProcessingOptionsError when invalid."""
    return operations.clean_options(operation, options, columns=columns, target_column=target_column)


def dataset_sample(dataset: Dataset, *, rows: int, target_column: str, stratify, output_path: str,
                   progress=None, should_stop=None) -> operations.Sample:
    """About `rows` rows of the dataset's file, drawn at random (seeded) into `output_path`, stratified by
    the target when `stratify(target column as a pandas Series)` says so (see operations.sample)."""
    return operations.sample(path=dataset.file.path, encoding=dataset.encoding, delimiter=dataset.delimiter,
                             rows=rows, target_column=target_column, stratify=stratify, output_path=output_path,
                             progress=progress, should_stop=should_stop)


def _scoped(queryset, user, project):
    """Rows the user may read (user None: every row, for the system), of one project if given."""
    queryset = permissions.visible(queryset, user) if user is not None else queryset
    if project is not None:
        queryset = queryset.filter(project_id=getattr(project, "pk", project))
    return queryset


def dataset_get(pk: int | None, *, user=None) -> Dataset | None:
    """The dataset, or None when there is none (or the user may not see it)."""
    return _scoped(Dataset.objects, user, None).filter(pk=pk or 0).first()


def dataset_exists(pk: int | None, *, user=None) -> bool:
    return _scoped(Dataset.objects, user, None).filter(pk=pk or 0).exists()


def dataset_is_ready(dataset: Dataset) -> bool:
    return dataset.status == Dataset.Status.READY


def datasets_all(*, user=None, project=None):
    """Every dataset the user may see (a queryset: API fields that take a dataset id choose from it)."""
    return _scoped(Dataset.objects.all(), user, project)


def datasets_usable(*, user=None, project=None) -> list[dict]:
    """Datasets other than invalid ones, by name: id, name, status, column_names, target_column."""
    return list(_scoped(Dataset.objects.exclude(status=Dataset.Status.INVALID), user, project).order_by(
        "name", "-id").values("id", "name", "status", "column_names", "target_column"))


def datasets_ready(*, user=None, project=None):
    """Ready datasets, newest first (a queryset)."""
    return _scoped(Dataset.objects.filter(status=Dataset.Status.READY), user, project).order_by("-created_at", "-id")


def dataset_by_name(name: str, *, user=None, project=None) -> Dataset | None:
    """The oldest dataset with this name (in the project, if given)."""
    return _scoped(Dataset.objects.filter(name=name), user, project).order_by("id").first()


def processing_job_get(pk: int) -> ProcessingJob:
    return ProcessingJob.objects.get(pk=pk)


def processing_job_progress(pk: int) -> tuple[float, str] | None:
    """(percent, current step) of a processing job, or None when it is gone."""
    row = ProcessingJob.objects.filter(pk=pk).values("progress", "current_step").first()
    return (row["progress"], row["current_step"]) if row else None


# --- the datasets pages ------------------------------------------------------------------------------

LIST_LIMIT = 500
JOB_LIMIT = 50
CHART_COLUMNS = 60  # histograms drawn on the detail page; a very wide file shows the first ones
CHART_TOP_VALUES = 12
PREVIEW_ROWS = 50
MISSING_LABELS = {
    "none": "keep missing values",
    "drop_rows": "drop rows with missing values",
    "fill_mean": "fill with the mean",
    "fill_median": "fill with the median",
    "fill_mode": "fill with the most frequent value",
    "fill_constant": "fill with a constant",
}


# --- formatting -------------------------------------------------------------------------------------


def number(value, digits: int = 4) -> str:
    """A short, readable number: 1,234 · 43.92 · 0.0123 · 1.2e+09; "—" for none."""
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return "—"
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 1e6 or magnitude < 1e-3:
        return f"{value:.3g}"
    if magnitude >= 1000:
        return f"{value:,.1f}"
    return f"{value:.{digits}g}"


def quality_band(score) -> str:
    """The colour family of a quality score (see .quality[data-quality] in app.css)."""
    if score is None:
        return ""
    if score >= 90:
        return "excellent"
    if score >= 75:
        return "good"
    if score >= 50:
        return "fair"
    return "poor"


# --- the list ---------------------------------------------------------------------------------------


def datasets_for_list(*, user, project, limit: int = LIST_LIMIT):
    """One project's datasets the user may see, newest first, without the heavy JSON columns, with what
    a row shows of its lineage. No project (a user in none): nothing."""
    if project is None:
        return Dataset.objects.none()
    return (
        _scoped(Dataset.objects.select_related("parent", "source_job"), user, project)
        .defer("profile", "quality", "preview", "parent__profile", "parent__quality", "parent__preview")
        .order_by("-created_at", "-id")[:limit]
    )


def dataset_for_row(pk: int, *, user) -> Dataset:
    return permissions.get_visible(
        Dataset.objects.select_related("parent", "source_job").defer(
            "profile", "quality", "preview", "parent__profile", "parent__quality", "parent__preview"
        ),
        user, pk=pk,
    )


def dataset_for_page(pk: int, *, user) -> Dataset:
    """One dataset for its page: 404 when it is not there or not the user's to see."""
    return permissions.get_visible(Dataset.objects.select_related("parent", "source_job", "created_by", "project"),
                                   user, pk=pk)


def dataset_profile(dataset: Dataset) -> DatasetProfile | None:
    """The stored profile, typed; None until the dataset has been profiled."""
    return DatasetProfile.from_json(dataset.profile) if dataset.profile else None


def dataset_quality(dataset: Dataset) -> QualityReport | None:
    """The stored quality score with its parts and findings, typed; None until profiled."""
    return QualityReport.from_json(dataset.quality) if dataset.quality else None


def _column_profiles(dataset: Dataset) -> list[ColumnProfile]:
    profile = dataset_profile(dataset)
    return profile.column_profiles if profile else []


NUMERIC_TYPES = ("numeric", "boolean")


def dataset_numeric_columns(dataset: Dataset) -> tuple[list[str], set[str]]:
    """(numeric or boolean columns, those that look like identifiers) from the dataset's profile."""
    profiles = _column_profiles(dataset)
    numeric = [p.name for p in profiles if p.type in NUMERIC_TYPES]
    identifiers = {p.name for p in profiles if p.looks_like_identifier}
    return numeric, identifiers


def dataset_summary(dataset: Dataset) -> dict:
    """The stat cards of a ready dataset."""
    profile = dataset_profile(dataset) or DatasetProfile(rows=dataset.row_count or 0,
                                                          columns=dataset.column_count or 0)
    return {
        "rows": profile.rows,
        "columns": profile.columns,
        "duplicate_rows": profile.duplicate_rows,
        "duplicate_pct": 100 * profile.duplicate_share,
        "duplicate_rows_approximate": profile.duplicate_rows_approximate,
        "memory_bytes": profile.memory_bytes,
        "missing_cells": profile.missing_cells,
        "missing_pct": 100 * profile.missing_share,
        "column_types": {k: v for k, v in profile.column_types.items() if v},
        "target": profile.target,
    }


QUALITY_PARTS = (
    ("completeness", "Completeness", "Cells that are not missing"),
    ("uniqueness", "Uniqueness", "Rows that are not duplicates"),
    ("validity", "Validity", "Values that parse as their column's type"),
    ("consistency", "Consistency", "Columns without spacing, case or constant issues"),
)


def quality_view(dataset: Dataset) -> dict | None:
    report = dataset_quality(dataset)
    if report is None:
        return None
    weights = report.weights
    parts = []
    for key, label, hint in QUALITY_PARTS:
        value = getattr(report, key)
        parts.append({
            "key": key, "label": label, "hint": hint, "value": value,
            "weight": round(100 * weights[key]) if key in weights else None, "band": quality_band(value),
        })
    score = report.quality_score
    return {"score": score, "band": quality_band(score), "parts": parts, "findings": report.findings}


def _bin_label(lo, hi, integer_bins: bool) -> str:
    if integer_bins:
        return number(lo)
    return f"{number(lo, 3)} – {number(hi, 3)}"


def _chart(column: ColumnProfile) -> dict | None:
    """What Chart.js draws for a column: numeric histogram bins, else its most frequent values."""
    histogram = column.histogram or Histogram()
    bins, counts = histogram.bins, histogram.counts
    if column.type == "numeric" and len(bins) >= 2 and counts:
        # Integer columns with a short range have one bin per integer (edges lo, lo+1, ..., hi+1).
        integer_bins = bool(column.integer) and all(
            b is not None and float(b).is_integer() for b in bins
        ) and all(bins[i + 1] - bins[i] == 1 for i in range(len(bins) - 1))
        labels = [_bin_label(bins[i], bins[i + 1], integer_bins) for i in range(len(counts))]
        return {"kind": "histogram", "labels": labels, "counts": counts, "approximate": histogram.approximate}
    top = column.top_values or []
    if top:
        shown = top[:CHART_TOP_VALUES]
        return {"kind": "top_values", "labels": [str(t.value) for t in shown], "counts": [t.count for t in shown],
                "approximate": bool(column.top_values_approximate), "more": max(0, len(top) - len(shown))}
    return None


def column_profiles(dataset: Dataset) -> list[dict]:
    """One entry per column for the profile table and the histogram cards."""
    out = []
    for index, c in enumerate(_column_profiles(dataset)):
        kind = c.type
        top = c.top_values or []
        entry = {
            "index": index,
            "name": c.name or f"column {index + 1}",
            "type": kind,
            "is_target": c.is_target,
            "missing_count": c.missing_count,
            "missing_pct": 100 * c.missing_share,
            "distinct": number(c.distinct_count),
            "distinct_approximate": c.distinct_approximate,
            "invalid_count": c.invalid_count,
            "flags": [label for flag, label in ((c.is_constant, "constant"), (c.looks_like_identifier, "identifier"),
                                                (c.is_empty, "empty")) if flag],
            "stats": None,
            "top_values": [],
            "chart": _chart(c) if index < CHART_COLUMNS else None,
        }
        if kind == "numeric":
            entry["stats"] = {"min": number(c.min), "max": number(c.max), "mean": number(c.mean), "std": number(c.std)}
        elif kind == "datetime":
            entry["stats"] = {"min": c.min or "—", "max": c.max or "—"}
        if kind != "numeric" and top:
            total = sum(t.count for t in top) or 1
            entry["top_values"] = [{"value": t.value, "count": t.count, "pct": 100 * t.count / total} for t in top[:3]]
        out.append(entry)
    return out


def charts_data(columns: list[dict]) -> list[dict]:
    """The json_script payload the page module turns into Chart.js bar charts."""
    return [{"index": c["index"], "name": c["name"], "type": c["type"], **c["chart"]} for c in columns if c["chart"]]


def preview(dataset: Dataset) -> dict:
    data = dataset.preview or {}
    return {"columns": data.get("columns") or [], "rows": (data.get("rows") or [])[:PREVIEW_ROWS]}


def lineage(dataset: Dataset) -> dict:
    """Ancestors oldest first (each with the job that made its child), and the direct children."""
    chain = dataset.lineage()
    children = list(
        dataset.children.select_related("source_job")
        .defer("profile", "quality", "preview")
        .order_by("created_at", "id")
    )
    return {"ancestors": chain[:-1], "children": children}


# --- processing jobs --------------------------------------------------------------------------------


def options_summary(job: ProcessingJob) -> str:
    o = job.options or {}
    if job.operation == "split":
        parts = [f"{number(100 * (o.get('test_ratio') or 0))}% test"]
        if o.get("stratify"):
            parts.append("stratified")
        if o.get("shuffle", True):
            parts.append(f"shuffled (seed {o.get('random_state', 42)})")
        else:
            parts.append("in file order")
        return " · ".join(parts)
    columns = o.get("columns")
    scope = f"{len(columns)} column{'s' if len(columns) != 1 else ''}" if columns else "all columns"
    if job.operation == "clean":
        parts = ["drop duplicates"] if o.get("drop_duplicates", True) else []
        missing = o.get("missing", "none")
        text = MISSING_LABELS.get(missing, missing)
        if missing == "fill_constant":
            text += f" {o.get('fill_value')!r}"
        parts.append(text)
        parts.append(scope)
        return " · ".join(parts)
    if job.operation == "scale":
        return f"{'z-score' if o.get('method') == 'standard' else 'min–max'} · {scope}"
    return ""


def result_summary(job: ProcessingJob) -> str:
    r = job.result or {}
    if job.status != "succeeded" or not r:
        return ""
    if job.operation == "split":
        return f"{number(r.get('train_rows'))} train rows · {number(r.get('test_rows'))} test rows"
    if job.operation == "clean":
        parts = []
        if "duplicates_dropped" in r:
            parts.append(f"{number(r['duplicates_dropped'])} duplicates dropped")
        if "rows_dropped_for_missing" in r:
            parts.append(f"{number(r['rows_dropped_for_missing'])} rows dropped for missing values")
        if "missing_before" in r:
            parts.append(f"missing cells {number(r['missing_before'])} → {number(r.get('missing_after'))}")
        return " · ".join(parts)
    if job.operation == "scale":
        scaled = r.get("scaled_columns") or []
        return f"{len(scaled)} column{'s' if len(scaled) != 1 else ''} scaled"
    return ""


def annotate_jobs(jobs: list[ProcessingJob]) -> list[ProcessingJob]:
    """Attach to each job its options and result in words, and its output datasets that still exist."""
    wanted = {o.get("dataset_id") for j in jobs for o in ((j.result or {}).get("outputs") or [])}
    existing = dict(Dataset.objects.filter(pk__in=[i for i in wanted if i]).values_list("pk", "name"))
    for job in jobs:
        job.options_text = options_summary(job)
        job.result_text = result_summary(job)
        job.is_active = job.status in ACTIVE
        job.output_links = [
            {"label": o.get("label", "output"), "dataset_id": o.get("dataset_id"), "rows": o.get("rows"),
             "name": existing.get(o.get("dataset_id")), "exists": o.get("dataset_id") in existing}
            for o in ((job.result or {}).get("outputs") or [])
        ]
    return jobs


def processing_jobs(dataset: Dataset, limit: int = JOB_LIMIT) -> list[ProcessingJob]:
    return annotate_jobs(list(dataset.jobs.order_by("-created_at", "-id")[:limit]))


def processing_job(pk: int, *, user) -> ProcessingJob:
    return annotate_jobs([permissions.get_visible(ProcessingJob.objects.select_related("dataset"), user, pk=pk)])[0]


def job_form_columns(dataset: Dataset) -> dict:
    """Columns the job form offers: every column (clean), numeric ones (scale)."""
    numeric = [c.name for c in _column_profiles(dataset) if c.type == "numeric" and c.name != dataset.target_column]
    return {"all": list(dataset.column_names or []), "numeric": numeric}


# --- processing jobs as a kind of job (registered in apps.py; read by monitoring and the dashboard) ---


def processing_job_label(job: ProcessingJob) -> str:
    return f"{job.get_operation_display()} job #{job.pk} on {job.dataset.name}"


def processing_job_step_text(job: ProcessingJob) -> str:
    return job.current_step or job.status


def processing_job_row(job: ProcessingJob) -> dict:
    from django.urls import reverse

    return {"kind": "processing", "title": f"{job.get_operation_display().split(' (')[0]} · {job.dataset.name}",
            "url": reverse("datasets:detail", args=[job.dataset_id])}

