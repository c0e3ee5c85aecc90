"""Reads of telemetry, already filtered to what the user may see: the API, pages and admin use these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from mlops_dashboard import permissions

from . import store
from .models import Metric, Point, Source

RESOLUTIONS = ("raw", "minute", "hour")
BUCKET_SECONDS = {"minute": 60, "hour": 3600}


def sources_visible(user, *, project=None) -> QuerySet[Source]:
    """Sources of the projects the user may see (one project when given)."""
    sources = permissions.visible(Source.objects.all(), user)
    if project is not None:
        sources = sources.filter(project=project)
    return sources


def source_get(user, ref, *, project=None) -> Source:
    """A visible source by id or by name (a name must be unambiguous among the visible projects, or
    `project` given); Http404 otherwise."""
    sources = sources_visible(user, project=project)
    text = str(ref)
    if text.isdigit():
        found = sources.filter(pk=int(text)).first()
        if found is not None:
            return found
    matches = list(sources.filter(name=text)[:2])
    if len(matches) != 1:
        raise Http404("No such source.")
    return matches[0]


def metric_get(source: Source, name: str) -> Metric:
    metric = source.metrics.filter(name=name).first()
    if metric is None:
        raise Http404(f"Source {source.name} has no metric {name}.")
    return metric


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Series:
    resolution: str
    points: list  # raw: [ms, value]; rollups: [ms, mean, min, max, count]

    def as_json(self) -> dict:
        return {"resolution": self.resolution, "points": self.points}


def resolution_for(start: datetime, end: datetime, interval_seconds: int) -> str:
    """The finest resolution that gives at most about TELEMETRY_MAX_CHART_POINTS points."""
    span = max((end - start).total_seconds(), 0)
    limit = settings.TELEMETRY_MAX_CHART_POINTS
    if span / max(interval_seconds, 1) <= limit:
        return "raw"
    if span / 60 <= limit:
        return "minute"
    return "hour"


def series(metric: Metric, *, start: datetime | None = None, end: datetime | None = None,
           resolution: str | None = None) -> Series:
    """Readings of one series in [start, end] (default: the last hour), oldest first."""
    end = end or timezone.now()
    start = start or end - timedelta(hours=1)
    resolution = resolution or resolution_for(start, end, metric.interval_seconds)
    if resolution == "raw":
        return Series("raw", store.points_read(metric.pk, start, end))
    # Minutes written since the last rollup refresh are computed from the raw points (never stale).
    return Series(resolution, store.rollups_read(metric.pk, resolution, start, end))


# A reading stands for its series on the grid for at most this many intervals after its time.
CARRY_INTERVALS = 2


@dataclass(frozen=True)
class AlignedRows:
    """Readings of several series of one source on one time grid (the source's interval): `times`
    are the grid's instants (epoch ms) where every metric has a value, `values` one row per time,
    one column per metric (in `metrics` order)."""

    metrics: list[str]
    step_seconds: int
    times: list[int]
    values: list[list[float]]

    def __len__(self) -> int:
        return len(self.times)


def aligned_rows(source: Source, metrics: list[str], start: datetime, end: datetime) -> AlignedRows:
    """The source's `metrics` aligned onto a grid at its expected interval over [start, end]: at each
    grid instant a series' value is its last reading at or before it, carried forward for at most
    CARRY_INTERVALS intervals; instants where a metric has no value are dropped."""
    import numpy as np

    step = int(source.expected_interval_seconds)
    start_ms, end_ms, step_ms = epoch_ms(start), epoch_ms(end), step * 1000
    grid = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    ids = dict(source.metrics.filter(name__in=metrics).values_list("name", "pk"))
    columns, present = [], np.ones(grid.shape[0], dtype=bool)
    carry_ms = CARRY_INTERVALS * step_ms
    since = start - timedelta(seconds=CARRY_INTERVALS * step)
    for name in metrics:
        rows = []
        if name in ids:
            rows = list(Point.objects.filter(series_id=ids[name], timestamp__gte=since, timestamp__lte=end)
                        .order_by("timestamp").values_list("timestamp", "value"))
        if not rows:
            return AlignedRows(list(metrics), step, [], [])
        times = np.fromiter((epoch_ms(t) for t, _ in rows), dtype=np.int64, count=len(rows))
        values = np.fromiter((v for _, v in rows), dtype=np.float64, count=len(rows))
        last = np.searchsorted(times, grid, side="right") - 1  # the last reading at or before each instant
        ok = last >= 0
        ok[ok] &= (grid[ok] - times[last[ok]]) <= carry_ms
        present &= ok & np.isfinite(values[np.clip(last, 0, None)])
        columns.append(values[np.clip(last, 0, None)])
    matrix = np.column_stack(columns)[present] if columns else np.empty((0, 0))
    return AlignedRows(list(metrics), step, grid[present].tolist(), matrix.tolist())


# --- the sources list (API and pages) ------------------------------------------------------------------


def silent_condition(sources: QuerySet[Source], now: datetime) -> Q:
    """Which of `sources` are silent at `now` (as Source.status_at says): never seen, or not within
    TELEMETRY_SILENT_FACTOR × their interval. One condition per distinct interval (a handful in
    practice) rather than duration arithmetic, which SQLite and PostgreSQL spell differently."""
    factor = settings.TELEMETRY_SILENT_FACTOR
    condition = Q(last_seen__isnull=True)
    for interval in sources.order_by().values_list("expected_interval_seconds", flat=True).distinct():
        condition |= Q(expected_interval_seconds=interval, last_seen__lt=now - timedelta(seconds=interval * factor))
    return condition


def sources_list(user, *, project=None, sources: QuerySet[Source] | None = None, status: str | None = None,
                 search: str | None = None, is_demo: bool | None = None, now: datetime | None = None) -> QuerySet[Source]:
    """The visible sources by name, their metrics (by name) prefetched: of one project when given;
    `status` live or silent (at `now`); `search` in the name or description; `is_demo` True or False."""
    sources = sources_visible(user, project=project) if sources is None else permissions.visible(sources, user)
    if project is not None:
        sources = sources.filter(project=project)
    if search:
        sources = sources.filter(Q(name__icontains=search) | Q(description__icontains=search))
    if is_demo is not None:
        sources = sources.filter(is_demo=is_demo)
    if status:
        silent = silent_condition(sources, now or timezone.now())
        sources = sources.filter(silent) if status == "silent" else sources.exclude(silent)
    metrics = Prefetch("metrics", queryset=Metric.objects.order_by("name", "id"))
    return sources.prefetch_related(metrics).order_by("name", "id")

# --- what other apps' background work reads (no user: not filtered by visibility) ---------------------


def metrics_with_sources(ids) -> dict[int, Metric]:
    """Metrics by id, with their source (monitoring's streaming anomaly detection)."""
    return {m.pk: m for m in Metric.objects.filter(pk__in=list(ids)).select_related("source")}


def points_last(metric_id: int, *, until: datetime, count: int) -> list[tuple[int, float]]:
    """The last `count` raw readings of a series at or before `until`, oldest first: [(epoch_ms, value)]."""
    rows = (Point.objects.filter(series_id=metric_id, timestamp__lte=until).order_by("-timestamp")
            .values_list("timestamp", "value")[:max(0, count)])
    return [(epoch_ms(t), v) for t, v in reversed(list(rows))]


def sources_silence_changes(now: datetime | None = None) -> tuple[list[Source], list[Source]]:
    """(sources that went silent and are not marked yet, sources marked silent that report again):
    silent is more than TELEMETRY_SILENT_FACTOR × its expected interval since its last reading."""
    now = now or timezone.now()
    factor = settings.TELEMETRY_SILENT_FACTOR
    # At least factor × 1 s old (the shortest interval); the exact test is per source's interval.
    candidates = Source.objects.filter(silent_since__isnull=True, last_seen__lt=now - timedelta(seconds=factor))
    went = [s for s in candidates.only("id", "name", "project_id", "last_seen", "expected_interval_seconds",
                                       "silent_since")
            if s.status_at(now) == "silent"]
    back = [s for s in Source.objects.filter(silent_since__isnull=False) if s.status_at(now) == "live"]
    return went, back


def sources_marked_silent(ids) -> list[Source]:
    """Of these sources, the ones marked silent (a reading of theirs just arrived)."""
    return list(Source.objects.filter(pk__in=list(ids), silent_since__isnull=False))
