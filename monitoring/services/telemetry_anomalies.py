"""Telemetry, watched: every new reading scored against its series' recent history (streaming
anomalies, monitoring.telemetry_detector), and sources that stopped reporting (silent).

- `points_ingested_enqueue` (connected to telemetry.signals.points_ingested in apps.ready) holds
  each series' id and time range (never the points); a background thread enqueues them as one
  `monitoring.telemetry_points_score` task per project every SCORE_BATCH_SECONDS.
- `telemetry_points_score` reads each series' last readings (telemetry.selectors.points_last) and
  steps the detector through the new ones, one series at a time under a Redis lock (several
  workers may score batches of one series: each reading is scored once, in time order). The
  series' detector state (its open episode, cooldown, last scored reading) lives in Redis.
- A confirmed anomaly: an `Anomaly` (source telemetry, the source's project), `anomaly_detected`,
  and an alert under the project's `telemetry_anomaly` rule (or the global one); the episode's end
  resolves the alert.
- `telemetry_silent_check` (beat, every TELEMETRY_SILENT_CHECK_INTERVAL s): a source silent for
  TELEMETRY_SILENT_FACTOR × its expected interval opens one alert under `telemetry_silent`; its
  next reading resolves it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from mlops_dashboard.events import catalog, publish_on_commit
from telemetry import selectors as telemetry_selectors
from telemetry import services as telemetry_services

from .. import anomaly as scoring
from .. import state
from .. import telemetry_detector as detector
from ..models import AlertRule, Anomaly
from .alerts import _rule_for, alert_condition_clear, alert_raise

logger = logging.getLogger(__name__)

STATE_TTL = 14 * 86_400  # s: a series' detector state outlives any pause of its source but not forever


# --- specs ------------------------------------------------------------------------------------------


def default_spec() -> detector.SeriesSpec:
    """The telemetry default with TELEMETRY_ANOMALY_DEFAULTS applied (ValueError when invalid)."""
    return detector.spec_from(settings.TELEMETRY_ANOMALY_DEFAULTS, where="TELEMETRY_ANOMALY_DEFAULTS")


def anomaly_spec_validate(data) -> dict:
    """Check a metric's `anomaly` overrides (what a registry form or API stores in Metric.anomaly):
    the same dict back, or ValidationError({"anomaly": "anomaly.<field>: what is wrong"})."""
    if data in (None, ""):
        return {}
    try:
        detector.spec_from(data, default_spec())
    except (TypeError, ValueError) as error:
        raise ValidationError({"anomaly": str(error)}) from None
    return data


def series_spec(metric, base: detector.SeriesSpec | None = None) -> detector.SeriesSpec:
    """A series' spec: the default with the metric's own `anomaly` on top (an invalid override is
    logged and left out: the default applies)."""
    base = base or default_spec()
    try:
        return detector.spec_from(metric.anomaly or {}, base)
    except (TypeError, ValueError) as error:
        overrides = metric.anomaly if isinstance(metric.anomaly, dict) else {}
        logger.warning("telemetry series %s: invalid anomaly settings (%s); using the defaults", metric.pk, error)
        if overrides.get("enabled") is False:
            return detector.spec_from({"enabled": False}, base)
        return base


# --- the ingest hook ----------------------------------------------------------------------------------


def batches_series(batches) -> list[dict]:
    """What the scoring task is told of an ingest's batches: each series' id and time range (epoch ms)."""
    return [{"metric_id": b.metric_id, "source_id": b.source_id, "start": b.points[0][0], "end": b.points[-1][0],
             "count": len(b.points)} for b in batches if b.points]


def points_ingested_enqueue(sender=None, *, project_id=None, batches=(), **kwargs) -> None:
    """telemetry.signals.points_ingested (sent on commit): score the new points in a worker. Held
    here and enqueued by a background thread (`score_queue`), so an ingest request never waits on
    the broker; a broker that is down costs the scoring of those points, never the ingest."""
    series = batches_series(batches)
    if series:
        score_queue().offer(project_id, series)


SCORE_BATCH_SECONDS = 0.5  # the ranges of this long go to the workers as one task per project


class ScoreQueue:
    """The series ranges of a process's ingests, merged per series (earliest start, latest end,
    counts added) and sent as one `telemetry_points_score` task per project every
    SCORE_BATCH_SECONDS by one thread: a client posting 100 batches a second costs two tasks a second,
    not a hundred. Whatever is held is sent at process exit (atexit, Celery's shutdown signals)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.held: dict = {}  # project id -> {metric id: series item}
        self.thread: threading.Thread | None = None

    def offer(self, project_id, series: list[dict]) -> None:
        with self.cond:
            held = self.held.setdefault(project_id, {})
            for item in series:
                known = held.get(item["metric_id"])
                if known is None:
                    held[item["metric_id"]] = dict(item)
                else:
                    known["start"] = min(known["start"], item["start"])
                    known["end"] = max(known["end"], item["end"])
                    known["count"] += item["count"]
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="telemetry-score-queue", daemon=True)
                self.thread.start()
            self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.held:
                    self.cond.wait()
            time.sleep(SCORE_BATCH_SECONDS)  # what arrives meanwhile goes in the same tasks
            self.flush()

    def flush(self) -> None:
        from .. import tasks

        with self.cond:
            taken, self.held = self.held, {}
        for project_id, items in taken.items():
            try:
                tasks.telemetry_points_score.delay(project_id, list(items.values()))
            except Exception:
                logger.warning("telemetry scoring not enqueued (broker unavailable)", exc_info=True)


_queue: ScoreQueue | None = None
_queue_lock = threading.Lock()


def score_queue() -> ScoreQueue:
    global _queue
    with _queue_lock:
        if _queue is None:
            _queue = ScoreQueue()
        return _queue


def score_queue_flush(**kwargs) -> None:
    """Enqueue what is held now (process exit; tests)."""
    if _queue is not None:
        _queue.flush()


def _after_fork() -> None:  # the parent's ranges are the parent's to send; its thread did not come along
    global _queue, _queue_lock
    _queue = None
    _queue_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(score_queue_flush)


# --- scoring ----------------------------------------------------------------------------------------


def _state_key(metric_id: int) -> str:
    return state.key("telemetry", "series", metric_id)


def series_state_load(metric_id: int) -> detector.SeriesState:
    raw = state.client().get(_state_key(metric_id))
    try:
        return detector.SeriesState.from_dict(json.loads(raw) if raw else None)
    except (TypeError, ValueError, KeyError):
        return detector.SeriesState()


def series_state_save(metric_id: int, series_state: detector.SeriesState) -> None:
    state.client().set(_state_key(metric_id), json.dumps(series_state.as_dict()), ex=STATE_TTL)


def series_state_forget(metric_id: int) -> None:
    state.client().delete(_state_key(metric_id))


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def telemetry_points_score(*, project_id: int | None, series: list[dict]) -> dict:
    """Score the new readings of each series of one ingest request. Returns counts: scored readings,
    anomalies opened, episodes closed, and readings skipped (older than the series' last scored one,
    or beyond TELEMETRY_ANOMALY_MAX_POINTS)."""
    counts = {"scored": 0, "opened": 0, "closed": 0, "skipped": 0}
    items = sorted(series, key=lambda s: int(s["metric_id"]))
    metrics = telemetry_selectors.metrics_with_sources(int(s["metric_id"]) for s in items)
    _sources_back({m.source_id for m in metrics.values()})
    try:
        base = default_spec()
    except ValueError:
        logger.error("TELEMETRY_ANOMALY_DEFAULTS is invalid: telemetry anomalies are not scored", exc_info=True)
        return counts
    for item in items:
        metric = metrics.get(int(item["metric_id"]))
        if metric is None:
            continue
        spec = series_spec(metric, base)
        if not spec.enabled:
            continue
        try:
            lock = state.client().lock(state.key("telemetry", "lock", metric.pk), timeout=120, blocking_timeout=120)
            with lock:
                _score_series(metric, spec, item, counts)
        except Exception:
            logger.exception("scoring telemetry series %s failed", metric.pk)
    return counts


def _score_series(metric, spec: detector.SeriesSpec, item: dict, counts: dict) -> None:
    series_state = series_state_load(metric.pk)
    start, end = int(item["start"]), int(item["end"])
    cap = max(1, settings.TELEMETRY_ANOMALY_MAX_POINTS)
    rows = telemetry_selectors.points_last(metric.pk, until=_moment(end), count=spec.window + min(cap, int(item["count"])))
    after = series_state.last_ms
    new = [i for i, (ms, _) in enumerate(rows) if ms >= start and (after is None or ms > after)]
    counts["skipped"] += max(0, int(item["count"]) - len(new))
    values = [v for _, v in rows]
    times = [ms for ms, _ in rows]
    changed = False
    for i in new:
        ms, value = rows[i]
        earlier = max(0, i - spec.window)
        decision = detector.step(spec, series_state, values[earlier:i], value, ms, times[earlier:i])
        counts["scored"] += 1
        changed = True
        if decision.opened:
            found = _anomaly_open(metric, spec, decision, value, ms)
            series_state.episode.anomaly_id = found.pk
            counts["opened"] += 1
        elif decision.closed:
            _anomaly_close(metric, decision, value, ms)
            counts["closed"] += 1
    if changed:
        series_state_save(metric.pk, series_state)


def subject_of(source, metric_name: str | None = None) -> str:
    """An alert's subject: the source's name and id (two projects' sources may share a name), and
    the metric for an anomaly."""
    return f"{source.name}#{source.pk}" + (f":{metric_name}" if metric_name else "")


def _shown(value, unit: str) -> str:
    return "—" if value is None else f"{value:,.6g}{(' ' + unit) if unit else ''}"


def _anomaly_open(metric, spec: detector.SeriesSpec, decision: detector.Decision, value: float, ms: int) -> Anomaly:
    source = metric.source
    observed = _moment(ms)
    details = {**(decision.details or {}), "metric_id": metric.pk, "alerts": spec.alerts}
    item = Anomaly(source=Anomaly.Source.TELEMETRY, entity=source.name[:200], metric=metric.name[:64], value=value,
                   score=round(float(decision.score), 4), severity=decision.severity, baseline=decision.baseline,
                   details=details, project_id=source.project_id, telemetry_source=source, observed_at=observed)
    item.full_clean()
    with transaction.atomic():
        item.save()
        publish_on_commit(catalog.AnomalyDetected(
            source=Anomaly.Source.TELEMETRY, entity=item.entity, metric=item.metric, value=value,
            anomaly_score=float(item.score), severity=item.severity, anomaly_id=item.pk, baseline=item.baseline,
            project_id=item.project_id, source_id=source.pk, observed_at=observed.isoformat(),
        ))
        if spec.alerts:
            rule, _ = _rule_for(AlertRule.Kind.TELEMETRY_ANOMALY, source.project_id)
            if rule is not None and (rule.threshold is None or item.score >= rule.threshold):
                unit = metric.unit
                if decision.kind == detector.STUCK:
                    message = (f"{metric.name} on {source.name} is stuck at {_shown(value, unit)}: "
                               f"{decision.details.get('identical_readings')} identical readings in a row, "
                               f"where it usually varies (since {observed:%Y-%m-%d %H:%M:%S} UTC).")
                else:
                    message = (f"{metric.name} on {source.name} read {_shown(value, unit)} at "
                               f"{observed:%Y-%m-%d %H:%M:%S} UTC, far from its recent median "
                               f"{_shown(decision.baseline, unit)} (score {item.score:.1f}, {item.severity}).")
                opened = alert_raise(
                    rule=rule, rule_kind=rule.kind, subject=subject_of(source, metric.name), alert_type="telemetry",
                    source=source.name, project=source.project_id, value=value,
                    title=f"{'Stuck sensor' if decision.kind == detector.STUCK else 'Anomaly'}: {metric.name} on "
                          f"{source.name}",
                    message=message, priority=scoring.alert_priority(item.severity, rule.priority),
                    metadata={"anomaly_id": item.pk, "source_id": source.pk, "metric": metric.name,
                              "baseline": item.baseline, "kind": decision.kind, "observed_at": observed.isoformat()},
                )
                if opened is not None:
                    item.alert = opened
                    item.save(update_fields=["alert"])
    return item


def _anomaly_close(metric, decision: detector.Decision, value: float, ms: int) -> None:
    source = metric.source
    text = {
        "back": f"{metric.name} is back near {_shown(decision.baseline, metric.unit)}",
        "settled": f"{metric.name} settled at a new level ({_shown(value, metric.unit)}); its history now holds it",
        "varying": f"{metric.name} varies again",
    }.get(decision.reason, f"{metric.name} is back in range")
    alert_condition_clear(rule_kind=AlertRule.Kind.TELEMETRY_ANOMALY, subject=subject_of(source, metric.name),
                          message=f"{text} ({_moment(ms):%Y-%m-%d %H:%M:%S} UTC).")


# --- silent sources -----------------------------------------------------------------------------------


def _silent_message(source, since: datetime) -> str:
    interval = source.expected_interval_seconds
    last = source.last_seen
    return (f"{source.name} has sent nothing since {last:%Y-%m-%d %H:%M:%S} UTC (silent since "
            f"{since:%H:%M:%S} UTC); it is expected every {interval} s, silent after "
            f"{interval * settings.TELEMETRY_SILENT_FACTOR} s (TELEMETRY_SILENT_FACTOR × its interval).")


def telemetry_silent_check(*, now: datetime | None = None) -> dict:
    """Mark the sources that went silent and open their alerts; unmark the ones that report again
    and resolve theirs. Returns {"silent": n newly silent, "back": n back}."""
    now = now or timezone.now()
    went, back = telemetry_selectors.sources_silence_changes(now)
    silent = 0
    for source in went:
        since = source.last_seen + timedelta(seconds=source.silent_after_seconds())
        with transaction.atomic():
            if not telemetry_services.source_silence_mark(source=source, since=since):
                continue  # another process saw it first
            silent += 1
            rule, _ = _rule_for(AlertRule.Kind.TELEMETRY_SILENT, source.project_id)
            if rule is not None:
                alert_raise(rule=rule, rule_kind=rule.kind, subject=subject_of(source), alert_type="telemetry",
                            source=source.name, project=source.project_id, title=f"Silent: {source.name}",
                            message=_silent_message(source, since),
                            metadata={"source_id": source.pk, "last_seen": source.last_seen.isoformat(),
                                      "silent_since": since.isoformat(),
                                      "expected_interval_seconds": source.expected_interval_seconds})
    return {"silent": silent, "back": _back(back)}


def _sources_back(source_ids) -> int:
    """Sources of a batch that were marked silent report again: resolve at once."""
    try:
        return _back(telemetry_selectors.sources_marked_silent(source_ids))
    except Exception:
        logger.exception("clearing silent sources failed")
        return 0


def _back(sources) -> int:
    count = 0
    for source in sources:
        was = source.silent_since
        with transaction.atomic():
            if not telemetry_services.source_silence_mark(source=source, since=None):
                continue
            count += 1
            when = source.last_seen or timezone.now()
            alert_condition_clear(
                rule_kind=AlertRule.Kind.TELEMETRY_SILENT, subject=subject_of(source),
                message=f"{source.name} reports again ({when:%Y-%m-%d %H:%M:%S} UTC)"
                        + (f" after being silent since {was:%Y-%m-%d %H:%M:%S} UTC." if was else "."))
    return count
