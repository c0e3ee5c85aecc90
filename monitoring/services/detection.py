"""On-demand anomaly detection: an IsolationForest over a ready dataset, run by a worker (a telemetry
source's range: range_detection)."""

from __future__ import annotations

import io
import logging
import time

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from datasets import selectors as dataset_selectors
from mlops_dashboard import jobs, permissions
from mlops_dashboard.activity import activity_record
from mlops_dashboard.audit import audit_record
from mlops_dashboard.jobs import TERMINAL, JobStatus
from mlops_dashboard.projects import parent_project

from .. import anomaly as scoring
from ..models import Anomaly, AnomalyDetection
from .anomalies import anomaly_record

logger = logging.getLogger(__name__)


def anomaly_detection_start(*, dataset, contamination: float = 0.05, columns: list[str] | None = None,
                            user=None, project=None) -> AnomalyDetection:
    """Queue an IsolationForest over a ready dataset; the worker publishes `anomaly_detected`. It
    belongs to the dataset's project (a different `project` is a 400) and needs its editor role."""
    permissions.authorize(user, "create", dataset)
    project = parent_project(dataset, project)
    if not dataset_selectors.dataset_is_ready(dataset):
        raise ValidationError({"dataset": f"The dataset is {dataset.status}; anomaly detection runs on ready "
                                          "datasets only."})
    columns = list(dict.fromkeys(columns or []))
    numeric, _ = dataset_selectors.dataset_numeric_columns(dataset)
    if columns:
        unknown = [c for c in columns if c not in (dataset.column_names or [])]
        if unknown:
            raise ValidationError({"columns": f"Not columns of {dataset.name}: {', '.join(unknown)}."})
        if numeric:
            not_numeric = [c for c in columns if c not in numeric]
            if not_numeric:
                raise ValidationError({"columns": f"Not numeric: {', '.join(not_numeric)}."})
    elif dataset.profile and not numeric:
        raise ValidationError({"dataset": f"{dataset.name} has no numeric column to score."})
    detection = AnomalyDetection(dataset=dataset, dataset_name=dataset.name, contamination=contamination,
                                 columns=columns, project=project,
                                 created_by=user if getattr(user, "is_authenticated", False) else None)
    detection.full_clean()
    description = (f"IsolationForest, contamination {contamination:g}"
                   + (f", columns {', '.join(columns)}" if columns else ""))
    return detection_queue(detection=detection, user=user, target=dataset.name, description=description,
                           metadata={"dataset_id": dataset.pk})


def detection_queue(*, detection: AnomalyDetection, user, target: str, description: str,
                    metadata: dict) -> AnomalyDetection:
    """Save a validated new detection with its audit entry and activity line, and run it on commit."""
    with transaction.atomic():
        detection.save()
        audit_record(user=user, action="create", obj=detection, summary=description)
        activity_record(title=f"Anomaly detection started: {target}", action_type="anomaly_detection",
                        user=user, status="queued", description=description, project=detection.project_id,
                        metadata={"detection_id": detection.pk, **metadata})
        from ..tasks import anomaly_detection_run as task

        pk = detection.pk
        transaction.on_commit(lambda: task.delay(pk))
    return detection


def anomaly_detection_run(*, detection_id: int) -> AnomalyDetection | None:
    """Score every row (in a worker); once, even when the task is delivered twice."""
    from .. import isolation

    if not jobs.claim(AnomalyDetection, detection_id):
        logger.info("anomaly detection %s already claimed or ended; skipped", detection_id)
        return None
    detection = AnomalyDetection.objects.select_related("dataset", "source").get(pk=detection_id)
    if detection.is_telemetry:
        from .range_detection import telemetry_detection_run

        return telemetry_detection_run(detection)
    dataset = detection.dataset
    with jobs.heartbeat(AnomalyDetection, detection_id):
        try:
            _, identifiers = dataset_selectors.dataset_numeric_columns(dataset)
            result = isolation.detect(
                dataset.file.path, contamination=detection.contamination, columns=detection.columns or None,
                exclude=identifiers, encoding=dataset.encoding or "utf-8", delimiter=dataset.delimiter or ",",
                top=50,
            )
        except isolation.DetectionError as exc:
            return _detection_fail(detection, str(exc))
        except Exception as exc:
            logger.exception("anomaly detection %s failed", detection_id)
            return _detection_fail(detection, f"{type(exc).__name__}: {exc}"[:2000])
    return _detection_complete(detection, result)


def _scores_bytes(scores) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, scores.astype("float32"), allow_pickle=False)
    return buffer.getvalue()


def _detection_complete(detection: AnomalyDetection, result) -> AnomalyDetection | None:
    name = default_storage.save(f"anomaly/{detection.pk}-{int(time.time())}.npy", ContentFile(_scores_bytes(result.scores)))
    share = round(result.share_flagged, 6)
    severity = scoring.share_severity(share)
    with transaction.atomic():
        if not jobs.finish(AnomalyDetection, detection.pk, status=JobStatus.SUCCEEDED, progress=100.0,
                           columns_used=result.columns, n_rows=result.n_rows, n_flagged=result.n_flagged,
                           share_flagged=share, max_score=round(result.max_score, 6),
                           threshold=round(result.threshold, 6), scores_file=name, top_rows=result.top_rows):
            transaction.on_commit(lambda: default_storage.delete(name))
            return None
        detection.refresh_from_db()
        anomaly_record(
            source=Anomaly.Source.DATASET, entity=detection.dataset_name, metric="isolation_forest", value=share,
            score=detection.max_score, severity=severity, detection=detection,
            details={"rows": result.n_rows, "flagged": result.n_flagged, "contamination": detection.contamination,
                     "columns": result.columns, "threshold": detection.threshold},
        )
        activity_record(
            title=f"Anomaly detection finished: {detection.dataset_name}", action_type="anomaly_detection",
            user=detection.created_by, duration=detection.duration, severity_level="success",
            description=f"{result.n_flagged:,} of {result.n_rows:,} rows flagged ({share:.1%}).",
            metadata={"detection_id": detection.pk, "dataset_id": detection.dataset_id}, project=detection.project_id,
        )
    return detection


def _target_metadata(detection: AnomalyDetection) -> dict:
    if detection.is_telemetry:
        return {"detection_id": detection.pk, "source_id": detection.source_id}
    return {"detection_id": detection.pk, "dataset_id": detection.dataset_id}


def _detection_fail(detection: AnomalyDetection, error: str) -> AnomalyDetection:
    with transaction.atomic():
        if jobs.finish(AnomalyDetection, detection.pk, status=JobStatus.FAILED, error=error):
            detection.refresh_from_db()
            activity_record(
                title=f"Anomaly detection failed: {detection.target_name}", action_type="anomaly_detection",
                user=detection.created_by, status="failed", severity_level="error", description=error[:500],
                metadata=_target_metadata(detection), project=detection.project_id,
            )
            if detection.is_telemetry:
                from .range_detection import completed_send

                completed_send(detection)
            transaction.on_commit(lambda: jobs.job_failed_send("anomaly_detection", detection), robust=True)
    return detection


class DetectionConflict(Exception):
    """The detection's state does not allow this (the API answers 409)."""


def anomaly_detection_cancel(*, detection: AnomalyDetection, user) -> AnomalyDetection:
    """Stop a queued or running detection: its creator (editor) or a maintainer. A worker already
    scoring it finds it cancelled when done, and its result is dropped."""
    permissions.authorize(user, "cancel", detection)
    with transaction.atomic():
        was = detection.status
        if not jobs.finish(AnomalyDetection, detection.pk, status=JobStatus.CANCELLED,
                           from_statuses=(JobStatus.QUEUED, JobStatus.RUNNING), error="Cancelled."):
            detection.refresh_from_db()
            raise DetectionConflict(f"The detection is {detection.status}; only a queued or running one can be "
                                    "cancelled.")
        detection.refresh_from_db()
        audit_record(user=user, action="cancel", obj=detection, summary=f"status: {was} → cancelled")
        activity_record(title=f"Anomaly detection cancelled: {detection.target_name}",
                        action_type="anomaly_detection", user=user, status="cancelled", severity_level="warning",
                        metadata=_target_metadata(detection), project=detection.project_id)
        if detection.is_telemetry:
            from .range_detection import completed_send

            completed_send(detection)
    return detection


def anomaly_detection_delete(*, detection: AnomalyDetection, user) -> None:
    """Delete a finished detection with its anomalies and score file: its creator (editor) or a maintainer."""
    permissions.authorize(user, "delete", detection)
    if detection.status not in TERMINAL:
        raise DetectionConflict(f"The detection is {detection.status}; cancel it before deleting it.")
    with transaction.atomic():
        audit_record(user=user, action="delete", obj=detection, summary=f"{detection.status}, {detection.target_name}")
        activity_record(title=f"Anomaly detection deleted: {detection.target_name}",
                        action_type="anomaly_detection", user=user, status="deleted",
                        metadata=_target_metadata(detection), project=detection.project_id)
        detection.delete()


def anomaly_detection_scores(*, detection: AnomalyDetection):
    """Every row's score (a float32 numpy array), or None before it has finished."""
    import numpy as np

    if not detection.scores_file:
        return None
    with default_storage.open(detection.scores_file.name, "rb") as f:
        return np.load(io.BytesIO(f.read()), allow_pickle=False)


def anomaly_detections_reap_stale() -> int:
    count = 0
    for detection in jobs.stale(AnomalyDetection):
        _detection_fail(detection, "The worker running this detection stopped (worker lost).")
        count += 1
    return count


def anomaly_detections_resend_lost(cutoff) -> int:
    """Queued detections whose broker message was lost: enqueue them again (see jobs.resend_lost)."""
    from ..tasks import anomaly_detection_run

    ids = list(AnomalyDetection.objects.filter(status=JobStatus.QUEUED, created_at__lt=cutoff)
               .values_list("pk", flat=True))
    for pk in ids:
        logger.warning("anomaly detection %s: still queued with no message in the broker; sent again", pk)
        anomaly_detection_run.delay(pk)
    return len(ids)
