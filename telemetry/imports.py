"""CSV imports of telemetry history (POST /api/telemetry/import/): the services.

The upload streams to disk (datasets/upload.py's middleware: limits, per-user lease, upload_progress),
the header is checked in the request (a 400 at once), then a worker reads the file twice, line by
line: first every line is checked (a bad one fails the import, naming its line, and nothing is
stored; new sources and metrics are counted against the limits), then the points are written in
batches (the last value of a (source, metric, timestamp) wins, as in ingest; writes are upserts, so
sending the same file again is harmless). `telemetry_import_progress` reports both passes,
`telemetry_import_completed` the end. No `points_ingested`: history is not live, and must not wake
the live charts or the streaming detector with old readings.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mlops_dashboard import jobs, projects
from mlops_dashboard.events import catalog, publish, publish_on_commit
from mlops_dashboard.jobs import JobStatus

from . import services, store
from .ingest import FUTURE_SLACK, NAME, NAME_RULE, PointError, timestamp_parse
from .models import Metric, Source, TelemetryImport

logger = logging.getLogger(__name__)

BATCH = 5000  # points per write
REPORT_EVERY = 0.5  # seconds between progress reports (the bus coalesces them further)
HEADER_BYTES = 64 * 1024


class ImportError_(ValueError):
    """A bad header or line: the message names it."""


# --- the layout of a file ------------------------------------------------------------------------------


@dataclass
class Layout:
    """Where the fields are. Long: one reading per line (timestamp, source?, metric, value). Wide:
    one column per metric (timestamp, source?, <metric>...). `source` is the fixed source when the
    file has no source column."""

    format: str  # long | wide
    delimiter: str
    timestamp: int
    source_column: int | None
    source: str
    metric_column: int | None = None
    value_column: int | None = None
    metrics: list[tuple[int, str]] = field(default_factory=list)
    width: int = 0


def layout_read(header_line: str, source: str = "") -> Layout:
    """The layout from the header line; ImportError_ saying what is wrong with it."""
    line = header_line.lstrip("\ufeff").rstrip("\r\n")
    if not line.strip():
        raise ImportError_("The file is empty: the first line must be a header (timestamp,source,metric,value "
                           "or timestamp,<metric>,<metric>...).")
    delimiter = max((",", ";", "\t"), key=line.count) if any(d in line for d in ",;\t") else ","
    names = [n.strip() for n in next(csv.reader([line], delimiter=delimiter))]
    lower = [n.lower() for n in names]
    for name in set(lower):
        if lower.count(name) > 1:
            raise ImportError_(f"The header names the column {name!r} twice.")
    if "timestamp" not in lower:
        raise ImportError_("The header has no `timestamp` column (timestamp,source,metric,value or "
                           "timestamp,<metric>,<metric>...).")
    source_column = lower.index("source") if "source" in lower else None
    if source and source_column is not None:
        raise ImportError_("The file has a `source` column and a `source` was given too: give one.")
    if source:
        if NAME.fullmatch(source) is None:
            raise ImportError_(f"source: a name of {NAME_RULE}; got {source!r}.")
    elif source_column is None:
        raise ImportError_("Which source? The file has no `source` column: give `source` (a form field or "
                           "?source=).")
    common = dict(delimiter=delimiter, timestamp=lower.index("timestamp"), source_column=source_column,
                  source=source, width=len(names))
    if {"metric", "value"} <= set(lower) and set(lower) <= {"timestamp", "source", "metric", "value"}:
        return Layout("long", metric_column=lower.index("metric"), value_column=lower.index("value"), **common)
    fixed = {"timestamp", "source"}
    metrics = [(i, n) for i, n in enumerate(names) if lower[i] not in fixed]
    if not metrics:
        raise ImportError_("The header names no metric: timestamp,source,metric,value (long) or "
                           "timestamp,<metric>,<metric>... (wide).")
    for _, name in metrics:
        if NAME.fullmatch(name) is None:
            raise ImportError_(f"The column {name!r} is not a metric name ({NAME_RULE}).")
    if len(metrics) > settings.TELEMETRY_MAX_METRICS:
        raise ImportError_(f"{len(metrics)} metric columns: a source may have at most "
                           f"{settings.TELEMETRY_MAX_METRICS} metrics (TELEMETRY_MAX_METRICS).")
    return Layout("wide", metrics=metrics, **common)


def header_of(path_or_file) -> str:
    """The first line of a file (a path or an open binary file, rewound after)."""
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "rb") as f:
            raw = f.readline(HEADER_BYTES)
    else:
        path_or_file.seek(0)
        raw = path_or_file.readline(HEADER_BYTES)
        path_or_file.seek(0)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportError_("The file is not UTF-8 text.") from None


# --- reading ------------------------------------------------------------------------------------------


class _Lines:
    """The file's lines as text, counting bytes read (for progress)."""

    def __init__(self, f):
        self.f = f
        self.read = 0
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.f:
            self.read += len(raw)
            self.line += 1
            try:
                yield raw.decode("utf-8-sig" if self.line == 1 else "utf-8")
            except UnicodeDecodeError:
                raise ImportError_(f"Line {self.line}: not UTF-8 text.") from None


def _value(text: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ImportError_(f"Line {line}, {column}: a number; got {text[:60]!r}.") from None
    if not math.isfinite(value):
        raise ImportError_(f"Line {line}, {column}: a finite number (not NaN or infinity).")
    return value


def _timestamp(text: str, line: int, latest: datetime) -> datetime:
    text = text.strip()
    if not text:
        raise ImportError_(f"Line {line}, timestamp: missing.")
    try:
        value = float(text) if text[0].isdigit() and "-" not in text and ":" not in text else text
    except ValueError:
        value = text
    try:
        return timestamp_parse(value, latest)
    except PointError as exc:
        raise ImportError_(f"Line {line}, timestamp: {exc.message}") from None


def readings(f, layout: Layout, latest: datetime) -> Iterator[tuple[int, str, str, datetime, float]]:
    """(line, source, metric, timestamp, value) for every reading of the file, checked; ImportError_
    naming the first bad line."""
    lines = _Lines(f)
    reader = csv.reader(lines, delimiter=layout.delimiter)
    next(reader, None)  # the header
    ts, src, fixed = layout.timestamp, layout.source_column, layout.source
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line
        if len(row) != layout.width:
            raise ImportError_(f"Line {line}: {len(row)} fields, the header has {layout.width}.")
        moment = _timestamp(row[ts], line, latest)
        source = row[src].strip() if src is not None else fixed
        if src is not None and NAME.fullmatch(source) is None:
            raise ImportError_(f"Line {line}, source: a name of {NAME_RULE}; got {source[:60]!r}.")
        if layout.format == "long":
            metric = row[layout.metric_column].strip()
            if NAME.fullmatch(metric) is None:
                raise ImportError_(f"Line {line}, metric: a name of {NAME_RULE}; got {metric[:60]!r}.")
            yield line, source, metric, moment, _value(row[layout.value_column].strip(), line, "value")
        else:
            for index, metric in layout.metrics:
                text = row[index].strip()
                if text:  # an empty cell: no reading of that metric then
                    yield line, source, metric, moment, _value(text, line, metric)


# --- the services -----------------------------------------------------------------------------------


def telemetry_import_create(*, user, uploaded_file, project=None, source: str = "") -> TelemetryImport:
    """Record an uploaded CSV (its header checked now: a ValidationError says what is wrong) and queue
    its import. `project`: an id, or None for the only project the user may write to."""
    project = projects.project_for_create(user, getattr(project, "pk", project))  # 404, 403 naming the role, 400
    try:
        layout_read(header_of(uploaded_file), source or "")
    except ImportError_ as exc:
        raise ValidationError({"file": str(exc)}) from None
    row = TelemetryImport(
        project=project, created_by=user if getattr(user, "pk", None) else None, source=source or "",
        original_filename=os.path.basename(getattr(uploaded_file, "name", "") or "upload.csv")[:255],
        file_size=uploaded_file.size or 0,
    )
    uploaded_file.seek(0)
    row.file.save("upload.csv", uploaded_file, save=False)
    try:
        with transaction.atomic():
            row.full_clean()
            row.save()
            pk = row.pk
            transaction.on_commit(lambda: _enqueue(pk))
            publish_on_commit(_progress_event(row))
    except Exception:
        default_storage.delete(row.file.name)
        raise
    return row


def _enqueue(pk: int) -> None:
    from .tasks import telemetry_import_run

    telemetry_import_run.delay(pk)


def telemetry_import_run(*, import_id: int) -> None:
    """Check every line, then write: see the module's doc. Always ends succeeded or failed."""
    if not jobs.claim(TelemetryImport, import_id):
        logger.info("telemetry import %s already claimed or ended; skipped", import_id)
        return
    job = TelemetryImport.objects.select_related("project").get(pk=import_id)
    with jobs.heartbeat(TelemetryImport, import_id):
        try:
            _run(job)
        except ImportError_ as exc:
            _end(job, JobStatus.FAILED, error=f"{exc} Nothing was stored.")
        except ValidationError as exc:  # the limits on sources and metrics
            _end(job, JobStatus.FAILED, error=" ".join(exc.messages) + " Nothing was stored.")
        except _Gone:
            logger.info("telemetry import %s deleted or reaped while it ran", import_id)
        except Exception as exc:  # a database error while writing: say how far it went
            logger.exception("telemetry import %s failed", import_id)
            _end(job, JobStatus.FAILED, error=f"The import failed while writing ({type(exc).__name__}); "
                                              f"{job.points:,} points were stored before it. Sending the same "
                                              "file again is safe.")
        else:
            _end(job, JobStatus.SUCCEEDED)


class _Gone(Exception):
    pass


def _run(job: TelemetryImport) -> None:
    path = default_storage.path(job.file.name)
    size = max(os.path.getsize(path), 1)
    layout = layout_read(header_of(path), job.source)
    latest = timezone.now() + FUTURE_SLACK
    TelemetryImport.objects.filter(pk=job.pk).update(format=layout.format)
    reporter = _Reporter(job)

    # 1. Check every line; the series it names, within the limits.
    keys: set[tuple[str, str]] = set()
    sources: set[str] = set()
    first = last = None
    rows = 0
    with open(path, "rb") as f:
        lines_seen = 0
        for line, source, metric, moment, _ in readings(f, layout, latest):
            if line != lines_seen:
                lines_seen, rows = line, rows + 1
            if (source, metric) not in keys:
                keys.add((source, metric))
                if source not in sources:
                    sources.add(source)
                    if len(sources) > settings.TELEMETRY_MAX_SOURCES:
                        raise ImportError_(f"Line {line}: more than {settings.TELEMETRY_MAX_SOURCES} sources "
                                           "(TELEMETRY_MAX_SOURCES).")
            first = moment if first is None or moment < first else first
            last = moment if last is None or moment > last else last
            if rows % 1000 == 0:
                reporter.maybe(50 * f.tell() / size, rows=rows)
    if not keys:
        raise ImportError_("The file has a header but no readings.")
    job.rows, job.first_timestamp, job.last_timestamp = rows, first, last
    reporter.now(50.0, rows=rows)

    # 2. Write, in batches; sources and metrics made first (the limits checked: nothing stored past them).
    with transaction.atomic():
        series = services._series_for(job.project, keys, user=job.created_by)
    newest: dict[int, tuple[datetime, float]] = {}
    written = 0
    with open(path, "rb") as f:
        batch: dict[tuple[int, datetime], float] = {}
        for _, source, metric, moment, value in readings(f, layout, latest):
            series_id = series[(source, metric)].pk
            batch.pop((series_id, moment), None)
            batch[(series_id, moment)] = value
            seen = newest.get(series_id)
            if seen is None or moment >= seen[0]:
                newest[series_id] = (moment, value)
            if len(batch) >= BATCH:
                written += _write(batch)
                job.points = written
                reporter.maybe(50 + 50 * f.tell() / size, rows=rows, points=written)
        written += _write(batch)
    job.points = written
    _mark_seen(series, newest)
    store.rollups_refresh([m.pk for m in series.values()], first, last)


def _write(batch: dict) -> int:
    if not batch:
        return 0
    store.points_write([(s, t, v) for (s, t), v in batch.items()])
    n = len(batch)
    batch.clear()
    return n


def _mark_seen(series: dict, newest: dict[int, tuple[datetime, float]]) -> None:
    """Each metric's last value when the file's newest reading is newer than the stored one; each
    source's last_seen moved up to its newest reading (never back, never by the import's own time:
    history is not a sign of life now)."""
    by_source: dict[int, datetime] = {}
    for metric in series.values():
        moment, value = newest[metric.pk]
        Metric.objects.filter(pk=metric.pk).filter(Q(last_timestamp__isnull=True) | Q(last_timestamp__lte=moment)) \
            .update(last_value=value, last_timestamp=moment)
        seen = by_source.get(metric.source_id)
        if seen is None or moment > seen:
            by_source[metric.source_id] = moment
    for source_id, moment in by_source.items():
        Source.objects.filter(pk=source_id).filter(Q(last_seen__isnull=True) | Q(last_seen__lt=moment)) \
            .update(last_seen=moment)


class _Reporter:
    """Progress on the row and as events, at most every REPORT_EVERY seconds (the first and last always)."""

    def __init__(self, job: TelemetryImport):
        self.job = job
        self.last = 0.0

    def maybe(self, percent: float, **counts) -> None:
        if time.monotonic() - self.last >= REPORT_EVERY:
            self.now(percent, **counts)

    def now(self, percent: float, *, rows: int = 0, points: int = 0) -> None:
        self.last = time.monotonic()
        job = self.job
        job.progress, job.rows, job.points = round(min(percent, 99.9), 1), rows, points
        if not jobs.advance(TelemetryImport, job.pk, from_statuses=(JobStatus.RUNNING,), progress=job.progress,
                            rows=rows, points=points, heartbeat_at=timezone.now()):
            raise _Gone()
        publish(_progress_event(job))


def _progress_event(job: TelemetryImport) -> catalog.TelemetryImportProgress:
    return catalog.TelemetryImportProgress(
        project_id=job.project_id, import_id=job.pk, filename=job.original_filename, status=job.status,
        progress=float(job.progress), rows=job.rows, points=job.points, user_id=job.created_by_id)


def _end(job: TelemetryImport, status: str, *, error: str = "", from_statuses=(JobStatus.RUNNING,)) -> bool:
    """The terminal state, once; the file deleted; telemetry_import_completed."""
    fields = {"error": error, "rows": job.rows, "points": job.points, "first_timestamp": job.first_timestamp,
              "last_timestamp": job.last_timestamp}
    if status == JobStatus.SUCCEEDED:
        fields["progress"] = 100.0
    with transaction.atomic():
        if not jobs.finish(TelemetryImport, job.pk, status=status, from_statuses=from_statuses, **fields):
            return False
        job.refresh_from_db()
        name = job.file.name
        if name:
            TelemetryImport.objects.filter(pk=job.pk).update(file="")
            transaction.on_commit(lambda: default_storage.delete(name))
        publish_on_commit(catalog.TelemetryImportCompleted(
            project_id=job.project_id, import_id=job.pk, filename=job.original_filename, status=job.status,
            rows=job.rows, points=job.points, duration=job.duration or 0.0,
            start=job.first_timestamp.isoformat() if job.first_timestamp and not error else None,
            end=job.last_timestamp.isoformat() if job.last_timestamp and not error else None,
            error=error or None, user_id=job.created_by_id))
    return True


# --- beat: the reaper, the resender, retention (registered in apps.py) ------------------------------


def telemetry_imports_reap_stale() -> int:
    """Imports whose worker died end failed (never stuck running)."""
    count = 0
    for job in jobs.stale(TelemetryImport):
        if _end(job, JobStatus.FAILED, error=f"The worker running this import stopped (worker lost); {job.points:,} "
                                             "points were stored before it. Sending the same file again is safe."):
            count += 1
    return count


def telemetry_imports_resend_lost(cutoff) -> int:
    """Queued imports whose broker message was lost: enqueue them again."""
    queued = list(TelemetryImport.objects.filter(status=JobStatus.QUEUED, created_at__lt=cutoff)
                  .values_list("pk", flat=True))
    for pk in queued:
        logger.warning("telemetry import %s: still queued with no message in the broker; sent again", pk)
        _enqueue(pk)
    return len(queued)


def telemetry_imports_prune(cutoff) -> int:
    """Ended imports older than the cutoff (RETENTION_JOBS_DAYS); their files are already gone."""
    from mlops_dashboard.retention import delete_in_batches

    return delete_in_batches(TelemetryImport.objects.filter(status__in=list(jobs.TERMINAL)).filter(
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)))


def telemetry_import_files_referenced() -> list[str]:
    return [name for name in TelemetryImport.objects.exclude(file="").values_list("file", flat=True)]


# --- labels for the job registry ---------------------------------------------------------------------


def import_label(job: TelemetryImport) -> str:
    return f"Telemetry import #{job.pk} ({job.original_filename or 'upload'})"


def import_step_text(job: TelemetryImport) -> str:
    if job.status == JobStatus.QUEUED:
        return "queued"
    if job.progress < 50:
        return f"checking lines ({job.rows:,} read)"
    return f"writing points ({job.points:,} stored)"
