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
from .models import Metric, Source

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
