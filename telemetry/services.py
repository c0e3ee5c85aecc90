"""Every write of telemetry: ingest (sources and metrics made on first sight, within limits)."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from mlops_dashboard import permissions
from mlops_dashboard.activity import activity_record
from mlops_dashboard.audit import audit_record, changes_summary

from . import signals, store
from .models import HourRollup, Metric, MinuteRollup, Point, RollupPending, Source


class Reading(NamedTuple):
    """One point to ingest: its time an aware datetime or epoch microseconds."""

    source: str
    metric: str
    timestamp: int | datetime
    value: float


class Grouped(NamedTuple):
    """An ingest request's points by series, as the API's parser gives them: {(source, metric): {epoch
    µs: value}} (the last value sent for a time wins), and how many points the request held. Made in
    the one pass over the request's points, it needs no object per point; ints hash and sort several
    times faster than datetimes."""

    series: dict[tuple[str, str], dict[int, float]]
    count: int


def readings_group(readings: list[Reading]) -> Grouped:
    series: dict[tuple[str, str], dict[int, float]] = {}
    for s, m, t, v in readings:
        times = series.get((s, m))
        if times is None:
            times = series[(s, m)] = {}
        times[t if type(t) is int else (t - store.EPOCH) // store.MICROSECOND] = v
    return Grouped(series, len(readings))


@dataclass
class SeriesBatch:
    """The points one request wrote to one series, in time order: [epoch_ms, value]."""

    source_id: int
    source: str
    metric_id: int
    metric: str
    points: list = field(default_factory=list)


def points_ingest(*, user, project, readings: list[Reading] | Grouped, now: datetime | None = None) -> int:
    """Store readings in `project` (the last value of a repeated (source, metric, timestamp) wins).
    Sources and metrics are made on first sight, up to TELEMETRY_MAX_SOURCES per project and
    TELEMETRY_MAX_METRICS per source (past those, ValidationError). On commit, `points_ingested`.
    Returns how many points the request held."""
    permissions.authorize(user, "create", project)
    now = now or timezone.now()
    grouped = readings if isinstance(readings, Grouped) else readings_group(readings)
    keys = grouped.series.keys()
    if connection.vendor == "postgresql" and (cached := _series_cached(project.pk, keys)) is not None:
        # Series this process has seen: one statement (no lookup), which writes only those still
        # stored under these names (a deleted one is not, nor its id ever again) and says how many.
        batches, columns = _batches(cached, grouped.series)
        found = store.points_write_columns(*columns, also=_mark_seen(cached, batches, now, checked=len(batches)),
                                           only=_series_check(project.pk, cached))
        if found == len(batches):
            transaction.on_commit(lambda: signals.points_ingested.send(
                sender=Source, project_id=project.pk, batches=list(batches.values())))
            return grouped.count
        _KNOWN.clear()  # one is gone (nothing was written): look them all up again
    series = _series_known(project, set(keys))
    # Known series on PostgreSQL: the write is one statement (points, minutes marked, last values,
    # last_seen), atomic by itself: no BEGIN and COMMIT round trips around it.
    single = series is not None and connection.vendor == "postgresql"
    with transaction.atomic() if not single else nullcontext():
        if series is None:  # a new source or metric: made here, within the limits
            series = {key: _Series(metric.pk, metric.source_id, metric.last_timestamp)
                      for key, metric in _series_for(project, set(keys), user=user).items()}
        batches, columns = _batches(series, grouped.series)
        store.points_write_columns(*columns, also=_mark_seen(series, batches, now))

        def done():
            if connection.vendor == "postgresql":
                _series_remember(project.pk, series)
            signals.points_ingested.send(sender=Source, project_id=project.pk, batches=list(batches.values()))

        transaction.on_commit(done)
    return grouped.count


# Per process: (project id, source, metric) → (metric id, source id) of the series written lately.
# Never trusted alone: the write checks each against the stored names (`_series_check`).
_KNOWN: dict[tuple[int, str, str], tuple[int, int]] = {}
_KNOWN_MAX = 50_000


def _series_cached(project_id: int, keys) -> dict | None:
    out = {}
    for s, m in keys:
        found = _KNOWN.get((project_id, s, m))
        if found is None:
            return None
        out[(s, m)] = _Series(found[0], found[1], None)
    return out


def _series_remember(project_id: int, series) -> None:
    if len(_KNOWN) + len(series) > _KNOWN_MAX:
        _KNOWN.clear()
    for (s, m), known in series.items():
        _KNOWN[(project_id, s, m)] = (known.metric_id, known.source_id)


def _series_check(project_id: int, series) -> tuple[str, list]:
    """A query of the ids of `series` still stored as they were: that metric id, of that name, of
    that source (id and name) of that project."""
    keys = list(series)
    return (f"SELECT m.id FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) AS k(id, source_id, "
            f"source, metric) JOIN {Metric._meta.db_table} m ON m.id = k.id AND m.source_id = k.source_id "
            f"AND m.name = k.metric JOIN {Source._meta.db_table} s ON s.id = k.source_id AND s.name = k.source "
            f"AND s.project_id = %s",
            [[series[k].metric_id for k in keys], [series[k].source_id for k in keys], [s for s, _ in keys],
             [m for _, m in keys], project_id])


class _Series(NamedTuple):
    """What ingest needs of a series: its id, its source's id and its stored last reading's time."""

    metric_id: int
    source_id: int
    last_timestamp: datetime | None


def _series_known(project, keys: set[tuple[str, str]]) -> dict[tuple[str, str], _Series] | None:
    """Every (source, metric) of `keys` already stored, in one query (no model built); None when one
    of them is new (then `_series_for` makes it)."""
    found = {(s, m): _Series(pk, source_id, last) for s, m, pk, source_id, last in Metric.objects.filter(
        source__project=project, source__name__in={s for s, _ in keys}, name__in={m for _, m in keys},
    ).values_list("source__name", "name", "pk", "source_id", "last_timestamp")}
    if len(found) < len(keys) or not keys <= found.keys():
        return None
    return {key: found[key] for key in keys}


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


def _batches(series, grouped) -> tuple[dict[int, SeriesBatch], tuple[list, list, list]]:
    """Each series' points of a request in time order ([epoch_ms, value], for the live events and the
    last values), and the columns to write (series ids, epoch µs, values), series by series in time
    order. `grouped`: {(source, metric): {epoch µs: value}}."""
    batches: dict[int, SeriesBatch] = {}
    ids, times, values = [], [], []
    for (s, m), readings in grouped.items():
        metric_id, source_id, _ = series[(s, m)]
        ordered = sorted(readings)
        in_order = [readings[t] for t in ordered]
        batches[metric_id] = SeriesBatch(source_id, s, metric_id, m,
                                         [[t // 1000, v] for t, v in zip(ordered, in_order)])
        ids += [metric_id] * len(ordered)
        times += ordered
        values += in_order
    return batches, (ids, times, values)


def _mark_seen(series, batches, now, checked: int | None = None) -> list:
    """Each metric's last value (when newer than the stored one) and each source's last_seen. On
    PostgreSQL: the statements, for `store.points_write` to run in the same round trip as the points
    (with `checked`, only when its check of the series finds that many); elsewhere run here, and
    none returned."""
    source_ids = sorted({b.source_id for b in batches.values()})
    if connection.vendor == "postgresql":
        # The condition in SQL (a concurrent request may have stored a newer reading meanwhile).
        ids, values, times = [], [], []
        for batch in batches.values():
            ms, value = batch.points[-1]
            ids.append(batch.metric_id)
            values.append(value)
            times.append(ms)
        guard = "" if checked is None else f" AND (SELECT n FROM checked) = {int(checked)}"
        return [
            (f"UPDATE {Metric._meta.db_table} m SET last_value = d.value, last_timestamp = d.at "
             f"FROM (SELECT id, value, timestamptz 'epoch' + ms * interval '1 millisecond' AS at "
             f"FROM unnest(%s::bigint[], %s::float8[], %s::bigint[]) AS u(id, value, ms)) AS d "
             f"WHERE m.id = d.id AND (m.last_timestamp IS NULL OR d.at >= m.last_timestamp){guard}",
             [ids, values, times]),
            (f"UPDATE {Source._meta.db_table} SET last_seen = %s WHERE id = ANY(%s::bigint[]){guard}",
             [now, source_ids]),
        ]
    for batch in batches.values():
        stored = series[(batch.source, batch.metric)].last_timestamp
        ms, value = batch.points[-1]
        newest = datetime.fromtimestamp(ms / 1000, tz=UTC)
        if stored is None or newest >= stored:
            Metric.objects.filter(pk=batch.metric_id).update(last_value=value, last_timestamp=newest)
    Source.objects.filter(pk__in=source_ids).update(last_seen=now)
    return []


def sources_mark_demo(*, user, project, registry: dict) -> list[Source]:
    """Make (or keep) the sources and metrics of `registry` in `project`, labelled as demo data
    (`is_demo`), with the registry's description, labels, expected interval and units filled in where
    still empty (an operator's edits stay). A source of that name that is not demo data is never
    taken over (ValidationError). `registry`: {source: {description, labels,
    expected_interval_seconds, metrics: {metric: {unit, description}}}} (telemetry.demo.registry)."""
    permissions.authorize(user, "create", project)
    out = []
    with transaction.atomic():
        existing = {s.name: s for s in Source.objects.filter(project=project, name__in=list(registry))}
        taken = sorted(name for name, s in existing.items() if not s.is_demo)
        if taken:
            raise ValidationError({"sources": f"{', '.join(taken)} already exist in {project.name} with real "
                                              "readings: the demo does not write into them."})
        have, limit = Source.objects.filter(project=project).count(), settings.TELEMETRY_MAX_SOURCES
        if have + len(set(registry) - set(existing)) > limit:
            raise ValidationError({"sources": f"This project may have at most {limit} sources "
                                              f"(TELEMETRY_MAX_SOURCES); it has {have}."})
        for name, spec in registry.items():
            source, created = Source.objects.get_or_create(project=project, name=name, defaults={
                "description": spec.get("description", ""), "labels": spec.get("labels", {}),
                "expected_interval_seconds": spec.get("expected_interval_seconds", 60), "is_demo": True,
                "created_by": user if getattr(user, "pk", None) else None})
            if not created:
                changed = {"is_demo": True}
                if not source.description:
                    changed["description"] = spec.get("description", "")
                if not source.labels:
                    changed["labels"] = spec.get("labels", {})
                for key, value in changed.items():
                    setattr(source, key, value)
                source.full_clean()
                source.save(update_fields=list(changed))
            for metric_name, metric_spec in spec.get("metrics", {}).items():
                metric, made = Metric.objects.get_or_create(source=source, name=metric_name, defaults={
                    "unit": metric_spec.get("unit", ""), "description": metric_spec.get("description", "")})
                if not made and (not metric.unit or not metric.description):
                    metric.unit = metric.unit or metric_spec.get("unit", "")
                    metric.description = metric.description or metric_spec.get("description", "")
                    metric.save(update_fields=["unit", "description"])
            out.append(source)
    return out

# --- the registry: what a source and its metrics are -----------------------------------------------

LABELS_MAX = 50
LABEL_KEY_MAX = 64
LABEL_VALUE_MAX = 200
SOURCE_FIELDS = ("description", "labels", "expected_interval_seconds")
METRIC_FIELDS = ("unit", "description", "labels", "expected_interval_seconds", "anomaly")
# Streaming detection overrides of a series (Metric.anomaly): monitoring's per-metric spec fields, and
# `enabled`. Their shape is checked here (telemetry does not import monitoring).
ANOMALY_DIRECTIONS = ("up", "down", "both")
ANOMALY_FIELDS = ("enabled", "direction", "min_change", "relative_change", "agree", "of", "score", "alerts")


def source_authorize(user, action: str, source: Source) -> None:
    """Change and delete: the project's maintainers, or the editor who created the source (403 naming
    the role); a source of a project the user cannot see: 404."""
    permissions.authorize(user, action, source)


def labels_clean(labels, field: str = "labels") -> dict:
    """Free labels: an object of at most LABELS_MAX short string values."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise ValidationError({field: ["An object of labels: {\"line\": \"3\", \"site\": \"north\"}."]})
    if len(labels) > LABELS_MAX:
        raise ValidationError({field: [f"At most {LABELS_MAX} labels; there are {len(labels)}."]})
    for key, value in labels.items():
        if not isinstance(key, str) or not 1 <= len(key.strip()) <= LABEL_KEY_MAX or "\x00" in key:
            raise ValidationError({field: [f"Label names have 1 to {LABEL_KEY_MAX} characters: {str(key)[:80]!r}."]})
        if not isinstance(value, str) or len(value) > LABEL_VALUE_MAX or "\x00" in value:
            raise ValidationError({field: [f"Label “{key}”: a string of at most {LABEL_VALUE_MAX} characters."]})
    return {key.strip(): value for key, value in labels.items()}


def _number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def anomaly_clean(anomaly) -> dict:
    """Per-series streaming detection overrides: {enabled, direction (up|down|both), min_change (≥ 0),
    relative_change (≥ 0), agree and of (1 to 60, agree ≤ of), score (> 0, or null), alerts}."""
    if anomaly is None:
        return {}
    if not isinstance(anomaly, dict):
        raise ValidationError({"anomaly": ["An object of overrides, {} for the defaults."]})
    unknown = sorted(str(k)[:40] for k in set(anomaly) - set(ANOMALY_FIELDS))
    if unknown:
        raise ValidationError({"anomaly": [f"Unknown field(s) {', '.join(unknown)}; known: {', '.join(ANOMALY_FIELDS)}."]})

    def bad(name, text):
        return ValidationError({"anomaly": [f"{name}: {text}."]})

    for name in ("enabled", "alerts"):
        if name in anomaly and not isinstance(anomaly[name], bool):
            raise bad(name, "true or false")
    if "direction" in anomaly and anomaly["direction"] not in ANOMALY_DIRECTIONS:
        raise bad("direction", f"one of {', '.join(ANOMALY_DIRECTIONS)}")
    for name in ("min_change", "relative_change"):
        if name in anomaly and not (_number(anomaly[name]) and anomaly[name] >= 0):
            raise bad(name, "a number, 0 or more")
    for name in ("agree", "of"):
        if name in anomaly and not (isinstance(anomaly[name], int) and not isinstance(anomaly[name], bool)
                                    and 1 <= anomaly[name] <= 60):
            raise bad(name, "a whole number from 1 to 60")
    if "agree" in anomaly and "of" in anomaly and anomaly["agree"] > anomaly["of"]:
        raise bad("agree", f"at most `of` ({anomaly['of']})")
    if anomaly.get("score") is not None and not (_number(anomaly["score"]) and anomaly["score"] > 0):
        raise bad("score", "a positive number, or null for the default")
    return dict(anomaly)


def _registry(obj, names) -> dict:
    return {name: getattr(obj, name) for name in names}


def _registry_fields_check(fields: dict, names: tuple[str, ...], *, what: str) -> None:
    unknown = set(fields) - set(names)
    if unknown:
        raise ValidationError({f: [f"Not a registry field of a {what}."] for f in sorted(unknown)})


def _registry_change(obj, fields: dict, names: tuple[str, ...]) -> tuple[dict, dict]:
    """Set the registry fields of a source or metric (the stored row, permission checked) and
    validate them: (before, after)."""
    before = _registry(obj, names)
    if "labels" in fields:
        fields["labels"] = labels_clean(fields["labels"])
    if "anomaly" in fields:
        fields["anomaly"] = anomaly_clean(fields["anomaly"])
    for name, value in fields.items():
        setattr(obj, name, value)
    obj.full_clean(validate_constraints=False)
    return before, _registry(obj, names)


def _registry_save(obj, before: dict, after: dict, *, user, project_id: int, title: str, metadata: dict) -> None:
    """Save what changed, with its audit entry and activity line."""
    with transaction.atomic():
        obj.save(update_fields=[name for name in before if before[name] != after[name]])
        summary = changes_summary(before, after)
        audit_record(user=user, action="update", obj=obj, project=project_id, summary=summary, object_repr=str(obj))
        activity_record(title=title, action_type="telemetry_source", user=user, description=summary[:500],
                        metadata=metadata, project=project_id)


def source_update(*, user, source: Source, **fields) -> Source:
    """Change a source's registry fields: description, labels, expected_interval_seconds."""
    _registry_fields_check(fields, SOURCE_FIELDS, what="source")
    source_authorize(user, "change", source)
    source = Source.objects.get(pk=source.pk)  # the stored row, not a caller's edited copy
    before, after = _registry_change(source, fields, SOURCE_FIELDS)
    if after != before:
        _registry_save(source, before, after, user=user, project_id=source.project_id,
                       title=f"Telemetry source updated: {source.name}", metadata={"source_id": source.pk})
    return source


def metric_update(*, user, metric: Metric, **fields) -> Metric:
    """Change a metric's registry fields: unit, description, labels, expected_interval_seconds (None:
    the source's) and anomaly (streaming detection overrides, see anomaly_clean)."""
    _registry_fields_check(fields, METRIC_FIELDS, what="metric")
    metric = Metric.objects.select_related("source").get(pk=metric.pk)
    source_authorize(user, "change", metric.source)
    before, after = _registry_change(metric, fields, METRIC_FIELDS)
    if after != before:
        _registry_save(metric, before, after, user=user, project_id=metric.source.project_id,
                       title=f"Telemetry metric updated: {metric}",
                       metadata={"source_id": metric.source_id, "metric": metric.name})
    return metric


def _series_delete(series_ids: list[int]) -> int:
    """Points and rollups of these series, set-based (no cascade to follow: points have no database
    constraint). The number of points."""
    if not series_ids:
        return 0
    MinuteRollup.objects.filter(series_id__in=series_ids).delete()
    HourRollup.objects.filter(series_id__in=series_ids).delete()
    RollupPending.objects.filter(series_id__in=series_ids).delete()
    return Point.objects.filter(series_id__in=series_ids).delete()[0]


def metric_delete(*, user, metric: Metric) -> None:
    """Remove one series of a source with its points and rollups (the source's change rule)."""
    metric = Metric.objects.select_related("source").filter(pk=metric.pk).first()
    if metric is None:
        return
    source_authorize(user, "change", metric.source)
    with transaction.atomic():
        removed = _series_delete([metric.pk])
        audit_record(user=user, action="delete", obj=metric, project=metric.source.project_id,
                     summary=f"{removed} points", object_repr=str(metric))
        Metric.objects.filter(pk=metric.pk).delete()
        activity_record(title=f"Telemetry metric deleted: {metric}", action_type="telemetry_source", user=user,
                        description=f"{removed} points", metadata={"source_id": metric.source_id, "metric": metric.name},
                        project=metric.source.project_id)


def source_delete(*, user, source: Source) -> None:
    """Remove a source with its metrics, their points and rollups (set-based deletes: points have no
    database constraint to cascade along)."""
    source_authorize(user, "delete", source)
    with transaction.atomic():
        source = Source.objects.select_for_update().filter(pk=source.pk).first()
        if source is None:
            return
        series_ids = list(Metric.objects.filter(source=source).values_list("pk", flat=True))
        removed = _series_delete(series_ids)
        name, project_id, source_id = source.name, source.project_id, source.pk
        summary = f"{len(series_ids)} metrics, {removed} points"
        audit_record(user=user, action="delete", obj=source, summary=summary)
        Metric.objects.filter(source_id=source_id).delete()
        Source.objects.filter(pk=source_id).delete()
        activity_record(title=f"Telemetry source deleted: {name}", action_type="telemetry_source", user=user,
                        description=summary, metadata={"source_id": source_id}, project=project_id)

def source_silence_mark(*, source: Source, since: datetime | None) -> bool:
    """Record that a source went silent at `since` (None: it reports again). Conditional, so that
    of several processes checking at once one sees the change: True for that one."""
    sources = Source.objects.filter(pk=source.pk)
    if since is not None:
        changed = sources.filter(silent_since__isnull=True).update(silent_since=since)
    else:
        changed = sources.filter(silent_since__isnull=False).update(silent_since=None)
    source.silent_since = since
    return bool(changed)
