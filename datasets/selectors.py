"""Reads for the datasets pages: the list, and what the detail page shows of a profile and its jobs."""

from __future__ import annotations

import math

from django.shortcuts import get_object_or_404

from mlops_dashboard.jobs import ACTIVE

from . import operations
from .models import Dataset, ProcessingJob

# --- what other apps read of datasets (pipelines) ----------------------------------------------------

OPERATIONS = operations.OPERATIONS
MISSING_STRATEGIES = operations.MISSING_STRATEGIES
SCALE_METHODS = operations.SCALE_METHODS
ProcessingOptionsError = operations.OptionsError


def processing_options_clean(operation: str, options, *, columns: list[str], target_column: str = "") -> dict:
    """A processing operation's options, checked and completed; ProcessingOptionsError when invalid."""
    return operations.clean_options(operation, options, columns=columns, target_column=target_column)


def dataset_get(pk: int | None) -> Dataset | None:
    return Dataset.objects.filter(pk=pk or 0).first()


def dataset_exists(pk: int | None) -> bool:
    return Dataset.objects.filter(pk=pk or 0).exists()


def dataset_is_ready(dataset: Dataset) -> bool:
    return dataset.status == Dataset.Status.READY


def datasets_all():
    """Every dataset (a queryset: API fields that take a dataset id choose from it)."""
    return Dataset.objects.all()


def datasets_usable() -> list[dict]:
    """Datasets other than invalid ones, by name: id, name, status, column_names, target_column."""
    return list(Dataset.objects.exclude(status=Dataset.Status.INVALID).order_by("name", "-id").values(
        "id", "name", "status", "column_names", "target_column"))


def datasets_ready():
    """Ready datasets, newest first (a queryset)."""
    return Dataset.objects.filter(status=Dataset.Status.READY).order_by("-created_at", "-id")


def dataset_by_name(name: str) -> Dataset | None:
    """The oldest dataset with this name."""
    return Dataset.objects.filter(name=name).order_by("id").first()


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


def datasets_for_list(limit: int = LIST_LIMIT):
    """Newest first, without the heavy JSON columns, with what a row shows of its lineage."""
    return (
        Dataset.objects.select_related("parent", "source_job")
        .defer("profile", "quality", "preview", "parent__profile", "parent__quality", "parent__preview")
        .order_by("-created_at", "-id")[:limit]
    )


def dataset_for_row(pk: int) -> Dataset:
    return get_object_or_404(
        Dataset.objects.select_related("parent", "source_job").defer(
            "profile", "quality", "preview", "parent__profile", "parent__quality", "parent__preview"
        ),
        pk=pk,
    )


# --- one dataset ------------------------------------------------------------------------------------


def dataset_summary(dataset: Dataset) -> dict:
    """The stat cards of a ready dataset."""
    profile = dataset.profile or {}
    rows = profile.get("rows", dataset.row_count)
    duplicates = profile.get("duplicate_rows")
    return {
        "rows": rows,
        "columns": profile.get("columns", dataset.column_count),
        "duplicate_rows": duplicates,
        "duplicate_pct": 100 * (profile.get("duplicate_share") or 0.0),
        "duplicate_rows_approximate": profile.get("duplicate_rows_approximate", False),
        "memory_bytes": profile.get("memory_bytes"),
        "missing_cells": profile.get("missing_cells"),
        "missing_pct": 100 * (profile.get("missing_share") or 0.0),
        "column_types": {k: v for k, v in (profile.get("column_types") or {}).items() if v},
        "target": profile.get("target"),
    }


QUALITY_PARTS = (
    ("completeness", "Completeness", "Cells that are not missing"),
    ("uniqueness", "Uniqueness", "Rows that are not duplicates"),
    ("validity", "Validity", "Values that parse as their column's type"),
    ("consistency", "Consistency", "Columns without spacing, case or constant issues"),
)


def quality_view(dataset: Dataset) -> dict | None:
    quality = dataset.quality
    if not quality:
        return None
    weights = quality.get("weights") or {}
    parts = []
    for key, label, hint in QUALITY_PARTS:
        value = quality.get(key)
        parts.append({
            "key": key, "label": label, "hint": hint, "value": value,
            "weight": round(100 * weights[key]) if key in weights else None, "band": quality_band(value),
        })
    score = quality.get("quality_score", dataset.quality_score)
    return {"score": score, "band": quality_band(score), "parts": parts, "findings": quality.get("findings") or []}


def _bin_label(lo, hi, integer_bins: bool) -> str:
    if integer_bins:
        return number(lo)
    return f"{number(lo, 3)} – {number(hi, 3)}"


def _chart(column: dict) -> dict | None:
    """What Chart.js draws for a column: numeric histogram bins, else its most frequent values."""
    histogram = column.get("histogram") or {}
    bins, counts = histogram.get("bins") or [], histogram.get("counts") or []
    if column.get("type") == "numeric" and len(bins) >= 2 and counts:
        # Integer columns with a short range have one bin per integer (edges lo, lo+1, ..., hi+1).
        integer_bins = bool(column.get("integer")) and all(
            b is not None and float(b).is_integer() for b in bins
        ) and all(bins[i + 1] - bins[i] == 1 for i in range(len(bins) - 1))
        labels = [_bin_label(bins[i], bins[i + 1], integer_bins) for i in range(len(counts))]
        return {"kind": "histogram", "labels": labels, "counts": counts,
                "approximate": bool(histogram.get("approximate"))}
    top = column.get("top_values") or []
    if top:
        shown = top[:CHART_TOP_VALUES]
        return {"kind": "top_values", "labels": [str(t["value"]) for t in shown], "counts": [t["count"] for t in shown],
                "approximate": bool(column.get("top_values_approximate")), "more": max(0, len(top) - len(shown))}
    return None


def column_profiles(dataset: Dataset) -> list[dict]:
    """One entry per column for the profile table and the histogram cards."""
    out = []
    for index, c in enumerate((dataset.profile or {}).get("column_profiles") or []):
        kind = c.get("type", "text")
        top = c.get("top_values") or []
        entry = {
            "index": index,
            "name": c.get("name", f"column {index + 1}"),
            "type": kind,
            "is_target": bool(c.get("is_target")),
            "missing_count": c.get("missing_count") or 0,
            "missing_pct": 100 * (c.get("missing_share") or 0.0),
            "distinct": number(c.get("distinct_count")),
            "distinct_approximate": bool(c.get("distinct_approximate")),
            "invalid_count": c.get("invalid_count") or 0,
            "flags": [label for key, label in (("is_constant", "constant"), ("looks_like_identifier", "identifier"),
                                               ("is_empty", "empty")) if c.get(key)],
            "stats": None,
            "top_values": [],
            "chart": _chart(c) if index < CHART_COLUMNS else None,
        }
        if kind == "numeric":
            entry["stats"] = {"min": number(c.get("min")), "max": number(c.get("max")),
                              "mean": number(c.get("mean")), "std": number(c.get("std"))}
        elif kind == "datetime":
            entry["stats"] = {"min": c.get("min") or "—", "max": c.get("max") or "—"}
        if kind != "numeric" and top:
            total = sum(t["count"] for t in top) or 1
            entry["top_values"] = [{"value": t["value"], "count": t["count"], "pct": 100 * t["count"] / total}
                                   for t in top[:3]]
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


def processing_job(pk: int) -> ProcessingJob:
    return annotate_jobs([get_object_or_404(ProcessingJob, pk=pk)])[0]


def job_form_columns(dataset: Dataset) -> dict:
    """Columns the job form offers: every column (clean), numeric ones (scale)."""
    profiles = (dataset.profile or {}).get("column_profiles") or []
    numeric = [c["name"] for c in profiles if c.get("type") == "numeric" and c.get("name") != dataset.target_column]
    return {"all": list(dataset.column_names or []), "numeric": numeric}
