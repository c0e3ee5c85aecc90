"""On-demand anomaly detection over a telemetry source's readings in a time range: the metrics are
aligned on the source's interval (telemetry.selectors.aligned_rows), an IsolationForest is fitted on a
baseline period (or the range itself) and every flagged reading becomes an Anomaly. It is a detection
of the job kind `anomaly_detection` (same row, task, reaper and resender as a dataset's)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from mlops_dashboard import jobs, permissions
from mlops_dashboard.activity import activity_record
from mlops_dashboard.events import catalog, publish_on_commit
from mlops_dashboard.jobs import JobStatus
from mlops_dashboard.projects import parent_project
from telemetry import selectors as telemetry_selectors

from ..models import Anomaly, AnomalyDetection

logger = logging.getLogger(__name__)

MIN_RANGE_ROWS = 50
MIN_BASELINE_ROWS = 100
MAX_SPAN = timedelta(days=31)  # of the range, and of the baseline
MAX_GRID_ROWS = 100_000  # instants of the source's interval in the range (or the baseline)
MAX_READINGS = 1_000_000  # instants × metrics, in the range (or the baseline): what one request reads
DEFAULT_BASELINE = timedelta(days=7)
EVENTS_MAX = 50  # flagged readings that each send anomaly_detected (the first ones in time)
RECORDED_MAX = 10_000  # flagged readings recorded as anomalies (the most anomalous ones)


def _check_span(name: str, start: datetime, end: datetime, step: int, *, start_field: str, end_field: str,
                metrics: int = 1) -> None:
    if end <= start:
        raise ValidationError({end_field: f"The {name}'s end must be after its start."})
    if end - start > MAX_SPAN:
        raise ValidationError({end_field: f"The {name} spans {(end - start).total_seconds() / 86400:.1f} days; "
                                          f"at most {MAX_SPAN.days} days."})
    instants = int((end - start).total_seconds() // step) + 1
    if instants > MAX_GRID_ROWS:
        raise ValidationError({end_field: f"The {name} holds {instants:,} intervals of {step} s; at most "
                                          f"{MAX_GRID_ROWS:,}: shorten it."})
    if instants * metrics > MAX_READINGS:
        raise ValidationError({end_field: f"The {name} holds {instants:,} intervals of {metrics} metrics; at most "
                                          f"{MAX_READINGS:,} readings: shorten it or name fewer metrics."})


def _baseline_period(*, start, use_baseline, baseline_start, baseline_end):
    if not use_baseline:
        if baseline_start is not None or baseline_end is not None:
            raise ValidationError({"use_baseline": "baseline_start and baseline_end are read only with "
                                                   "use_baseline true."})
        return None, None
    if baseline_end is None:
        baseline_end = start if baseline_start is None else min(start, baseline_start + DEFAULT_BASELINE)
    if baseline_start is None:
        baseline_start = baseline_end - DEFAULT_BASELINE
    return baseline_start, baseline_end


def telemetry_detection_start(*, source, start: datetime, end: datetime, metrics: list[str] | None = None,
                              contamination: float = 0.05, use_baseline: bool = True,
                              baseline_start: datetime | None = None, baseline_end: datetime | None = None,
                              user=None, project=None) -> AnomalyDetection:
    """Queue an IsolationForest over `source`'s `metrics` (default: all of them) in [start, end]. It
    belongs to the source's project (a different `project` is a 400) and needs its editor role.
    Too few aligned rows (MIN_RANGE_ROWS in the range, MIN_BASELINE_ROWS in the baseline) is a 400
    saying how many there are."""
    permissions.authorize(user, "create", source)
    project = parent_project(source, project)
    known = sorted(source.metrics.values_list("name", flat=True))
    metrics = list(dict.fromkeys(metrics or [])) or known
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ValidationError({"metrics": f"Not metrics of {source.name}: {', '.join(unknown)}."})
    if not metrics:
        raise ValidationError({"source": f"{source.name} has no metric to score."})
    step = source.expected_interval_seconds
    _check_span("range", start, end, step, start_field="start", end_field="end", metrics=len(metrics))
    baseline_start, baseline_end = _baseline_period(start=start, use_baseline=use_baseline,
                                                    baseline_start=baseline_start, baseline_end=baseline_end)
    if use_baseline:
        _check_span("baseline", baseline_start, baseline_end, step, start_field="baseline_start",
                    end_field="baseline_end", metrics=len(metrics))
    rows_range = len(telemetry_selectors.aligned_rows(source, metrics, start, end))
    if rows_range < MIN_RANGE_ROWS:
        raise ValidationError({"start": f"The range has {rows_range} aligned rows of {', '.join(metrics)} (every "
                                        f"metric read within {2 * step} s of each {step} s instant); at least "
                                        f"{MIN_RANGE_ROWS} are needed."})
    rows_baseline = None
    if use_baseline:
        rows_baseline = len(telemetry_selectors.aligned_rows(source, metrics, baseline_start, baseline_end))
        if rows_baseline < MIN_BASELINE_ROWS:
            raise ValidationError({"baseline_start": f"The baseline has {rows_baseline} aligned rows; at least "
                                                     f"{MIN_BASELINE_ROWS} are needed (or use_baseline false)."})
    detection = AnomalyDetection(
        source=source, source_name=source.name, metrics=metrics, start=start, end=end, use_baseline=use_baseline,
        baseline_start=baseline_start, baseline_end=baseline_end, rows_range=rows_range, rows_baseline=rows_baseline,
        contamination=contamination, project=project,
        created_by=user if getattr(user, "is_authenticated", False) else None)
    detection.full_clean()
    description = (f"IsolationForest on {', '.join(metrics)}, {start:%Y-%m-%d %H:%M}–{end:%Y-%m-%d %H:%M} UTC, "
                   f"contamination {contamination:g}, "
                   + (f"fitted on {baseline_start:%Y-%m-%d %H:%M}–{baseline_end:%Y-%m-%d %H:%M}" if use_baseline
                      else "fitted on the range"))
    from .detection import detection_queue

    return detection_queue(detection=detection, user=user, target=source.name, description=description,
                           metadata={"source_id": source.pk})


def _progress(detection: AnomalyDetection, progress: float, step: str) -> None:
    if jobs.advance(AnomalyDetection, detection.pk, from_statuses=(JobStatus.RUNNING,), progress=progress):
        publish_on_commit(catalog.AnomalyDetectionProgress(
            project_id=detection.project_id, detection_id=detection.pk, progress=float(progress), current_step=step,
            source_id=detection.source_id))


def telemetry_detection_run(detection: AnomalyDetection):
    """The work of a claimed telemetry detection (in a worker): returns the detection or None."""
    from .. import isolation
    from .detection import _detection_fail

    source = detection.source
    with jobs.heartbeat(AnomalyDetection, detection.pk):
        try:
            _progress(detection, 5.0, "Reading the range")
            rows = telemetry_selectors.aligned_rows(source, detection.metrics, detection.start, detection.end)
            if len(rows) < MIN_RANGE_ROWS:
                return _detection_fail(detection, f"The range now has {len(rows)} aligned rows; at least "
                                                  f"{MIN_RANGE_ROWS} are needed (its readings changed).")
            baseline = None
            if detection.use_baseline:
                _progress(detection, 25.0, "Reading the baseline")
                baseline = telemetry_selectors.aligned_rows(source, detection.metrics, detection.baseline_start,
                                                            detection.baseline_end)
                if len(baseline) < MIN_BASELINE_ROWS:
                    return _detection_fail(detection, f"The baseline now has {len(baseline)} aligned rows; at "
                                                      f"least {MIN_BASELINE_ROWS} are needed (its readings changed).")
            _progress(detection, 50.0, "Scoring")
            result = isolation.detect_range(rows.values, contamination=detection.contamination,
                                            baseline=None if baseline is None else baseline.values)
        except isolation.DetectionError as exc:
            return _detection_fail(detection, str(exc))
        except Exception as exc:
            logger.exception("anomaly detection %s failed", detection.pk)
            return _detection_fail(detection, f"{type(exc).__name__}: {exc}"[:2000])
        _progress(detection, 80.0, "Recording the anomalies")
    return _complete(detection, rows, result, baseline_rows=None if baseline is None else len(baseline))


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _complete(detection: AnomalyDetection, rows, result, *, baseline_rows):
    import numpy as np

    from .. import isolation
    from .detection import _scores_bytes

    metrics = rows.metrics
    threshold = result.threshold
    flagged = np.flatnonzero(result.flagged)
    if flagged.size > RECORDED_MAX:  # keep the most anomalous, then in time order
        flagged = np.sort(flagged[np.argsort(-result.scores[flagged], kind="stable")[:RECORDED_MAX]])
    n_rows, n_flagged = len(rows), result.n_flagged
    share = round(n_flagged / n_rows, 6) if n_rows else 0.0
    top = np.argsort(-result.scores, kind="stable")[:50]
    top_rows = [{"row": int(i), "observed_at": _iso(_moment(rows.times[i])), "score": round(float(result.scores[i]), 5),
                 "flagged": bool(result.flagged[i]),
                 "values": dict(zip(metrics, rows.values[i], strict=True))} for i in top]
    name = default_storage.save(f"anomaly/{detection.pk}-{int(time.time())}.npy",
                                ContentFile(_scores_bytes(result.scores)))
    with transaction.atomic():
        if not jobs.finish(AnomalyDetection, detection.pk, status=JobStatus.SUCCEEDED, progress=100.0,
                           columns_used=metrics, n_rows=n_rows, n_flagged=n_flagged, share_flagged=share,
                           max_score=round(float(result.scores.max()), 6), threshold=round(threshold, 6),
                           scores_file=name, top_rows=top_rows, rows_range=n_rows,
                           **({"rows_baseline": baseline_rows} if baseline_rows is not None else {})):
            transaction.on_commit(lambda: default_storage.delete(name))
            return None
        detection.refresh_from_db()
        items = []
        for i in flagged:
            i = int(i)
            column = int(result.deviating[i])
            score = float(result.scores[i])
            items.append(Anomaly(
                source=Anomaly.Source.TELEMETRY, entity=detection.source_name[:200], metric=metrics[column][:64],
                value=float(rows.values[i][column]), score=round(score, 4),
                severity=isolation.severity_for(score, threshold), detection=detection,
                project_id=detection.project_id, telemetry_source_id=detection.source_id,
                observed_at=_moment(rows.times[i]),
                details={"values": dict(zip(metrics, rows.values[i], strict=True)),
                         "z": round(float(result.z[i]), 3), "threshold": round(threshold, 5)}))
        created = Anomaly.objects.bulk_create(items, batch_size=1000)
        for item in created[:EVENTS_MAX]:
            publish_on_commit(catalog.AnomalyDetected(
                source=item.source, entity=item.entity, metric=item.metric, value=item.value,
                anomaly_score=float(item.score), severity=item.severity, anomaly_id=item.pk,
                detection_id=detection.pk, project_id=detection.project_id, source_id=detection.source_id,
                observed_at=_iso(item.observed_at)))
        activity_record(
            title=f"Anomaly detection finished: {detection.source_name}", action_type="anomaly_detection",
            user=detection.created_by, duration=detection.duration, severity_level="success",
            description=f"{n_flagged:,} of {n_rows:,} readings flagged ({share:.1%}).",
            metadata={"detection_id": detection.pk, "source_id": detection.source_id}, project=detection.project_id)
        completed_send(detection)
    return detection


def completed_send(detection: AnomalyDetection) -> None:
    """The closing event of a telemetry detection (on commit), whatever its end."""
    publish_on_commit(catalog.AnomalyDetectionCompleted(
        project_id=detection.project_id, detection_id=detection.pk, status=detection.status,
        entity=detection.source_name, n_rows=detection.n_rows, n_flagged=detection.n_flagged,
        duration=detection.duration, error=detection.error or None, source_id=detection.source_id))
