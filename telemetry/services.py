"""Every write of telemetry: ingest (sources and metrics made on first sight, within limits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from mlops_dashboard import permissions

from . import signals, store
from .models import Metric, Source
from .selectors import epoch_ms


@dataclass(frozen=True)
class Reading:
    """One validated point of an ingest request."""

    source: str
    metric: str
    timestamp: datetime
    value: float


@dataclass
class SeriesBatch:
    """The points one request wrote to one series, in time order: [epoch_ms, value]."""

    source_id: int
    source: str
    metric_id: int
    metric: str
    points: list = field(default_factory=list)


def points_ingest(*, user, project, readings: list[Reading], now: datetime | None = None) -> int:
    """Store readings in `project` (the last value of a repeated (source, metric, timestamp) wins).
    Sources and metrics are made on first sight, up to TELEMETRY_MAX_SOURCES per project and
    TELEMETRY_MAX_METRICS per source (past those, ValidationError). On commit, `points_ingested`."""
    permissions.authorize(user, "create", project)
    now = now or timezone.now()
    # The last occurrence of a key wins, in the request's order.
    latest: dict[tuple[str, str, datetime], float] = {}
    for r in readings:
        latest.pop((r.source, r.metric, r.timestamp), None)
        latest[(r.source, r.metric, r.timestamp)] = r.value
    with transaction.atomic():
        series = _series_for(project, {(s, m) for s, m, _ in latest}, user=user)
        rows = [(series[(s, m)].pk, t, v) for (s, m, t), v in latest.items()]
        store.points_write(rows)
        batches = _batches(series, latest)
        _mark_seen(series, batches, now)
        transaction.on_commit(lambda: signals.points_ingested.send(
            sender=Source, project_id=project.pk, batches=list(batches.values())))
    return len(readings)


def _series_for(project, keys: set[tuple[str, str]], *, user) -> dict[tuple[str, str], Metric]:
    """The metric of each (source, metric) name pair, made when new; the new ones within the limits."""
    names = {s for s, _ in keys}
    sources = {s.name: s for s in Source.objects.filter(project=project, name__in=names)}
    new_sources = sorted(names - sources.keys())
    if new_sources:
        have = Source.objects.filter(project=project).count()
        limit = settings.TELEMETRY_MAX_SOURCES
        if have + len(new_sources) > limit:
            raise ValidationError({"points": f"This project may have at most {limit} sources "
                                             f"(TELEMETRY_MAX_SOURCES); it has {have}, and this request "
                                             f"names {len(new_sources)} new: {', '.join(new_sources[:5])}."})
        for name in new_sources:
            source, _ = Source.objects.get_or_create(project=project, name=name, defaults={"created_by": user if getattr(user, "pk", None) else None})
            sources[name] = source
    metrics = {(m.source_id, m.name): m for m in Metric.objects.filter(
        source__in=sources.values(), name__in={m for _, m in keys})}
    wanted: dict[int, list[str]] = {}
    for s, m in sorted(keys):
        if (sources[s].pk, m) not in metrics:
            wanted.setdefault(sources[s].pk, []).append(m)
    if wanted:
        counts = dict(Metric.objects.filter(source_id__in=wanted).values("source_id")
                      .annotate(n=Count("id")).values_list("source_id", "n"))
        limit = settings.TELEMETRY_MAX_METRICS
        by_id = {s.pk: s for s in sources.values()}
        for source_id, new in wanted.items():
            have = counts.get(source_id, 0)
            if have + len(new) > limit:
                raise ValidationError({"points": f"A source may have at most {limit} metrics "
                                                 f"(TELEMETRY_MAX_METRICS); {by_id[source_id].name} has "
                                                 f"{have}, and this request names {len(new)} new."})
            for name in new:
                metric, _ = Metric.objects.get_or_create(source_id=source_id, name=name)
                metrics[(source_id, name)] = metric
    out = {}
    for s, m in keys:
        metric = metrics[(sources[s].pk, m)]
        metric.source = sources[s]
        out[(s, m)] = metric
    return out


def _batches(series, latest) -> dict[int, SeriesBatch]:
    batches: dict[int, SeriesBatch] = {}
    for (s, m, t), v in sorted(latest.items(), key=lambda kv: kv[0][2]):
        metric = series[(s, m)]
        batch = batches.get(metric.pk)
        if batch is None:
            batch = batches[metric.pk] = SeriesBatch(metric.source_id, s, metric.pk, m)
        batch.points.append([epoch_ms(t), v])
    return batches


def _mark_seen(series, batches, now) -> None:
    """Each metric's last value (when newer than the stored one) and each source's last_seen."""
    last = []
    for batch in batches.values():
        metric = series[(batch.source, batch.metric)]
        ms, value = batch.points[-1]
        newest = datetime.fromtimestamp(ms / 1000, tz=UTC)
        if metric.last_timestamp is None or newest >= metric.last_timestamp:
            last.append((metric.pk, value, newest))
    if last and connection.vendor == "postgresql":
        # One statement for every metric of the request (the condition again: a concurrent request may
        # have stored a newer reading meanwhile).
        ids, values, times = zip(*last, strict=True)
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {Metric._meta.db_table} m SET last_value = d.value, last_timestamp = d.at "
                           f"FROM unnest(%s::bigint[], %s::float8[], %s::timestamptz[]) AS d(id, value, at) "
                           f"WHERE m.id = d.id AND (m.last_timestamp IS NULL OR d.at >= m.last_timestamp)",
                           [list(ids), list(values), list(times)])
    else:
        for pk, value, newest in last:
            Metric.objects.filter(pk=pk).update(last_value=value, last_timestamp=newest)
    source_ids = {b.source_id for b in batches.values()}
    Source.objects.filter(pk__in=source_ids).update(last_seen=now)
