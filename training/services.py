"""Every write of the training app: start, run, cancel and reap training jobs; register, deploy and
serve model versions, and count their predictions.

Events go out on commit of the write they describe (publish_on_commit), so a client that reacts by
reading the API sees the new state. `training.trainer` (scikit-learn, pandas) is imported where it
is used, so that importing this module (every Django process does, for the reaper) stays cheap.
"""

from __future__ import annotations

import logging
import threading
import time
import typing
from collections import OrderedDict
from datetime import UTC

import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from datasets.models import Dataset
from mlops_dashboard.activity import activity_record_quietly
from mlops_dashboard.events import bus, catalog, publish_on_commit
from mlops_dashboard.jobs import ACTIVE, JobStatus, claim, finish, heartbeat, stale

from .models import STAGES, Deployment, ModelVersion, TrainingJob, artifact_path

logger = logging.getLogger(__name__)

STAGE_LABELS = {s: s.replace("_", " ").capitalize() for s in STAGES}

# Trainer error codes that the catalog's training_failed.error_code knows; anything else is INTERNAL.
# The codes training_failed may carry: the catalog declares them once.
ERROR_CODES = frozenset(typing.get_args(typing.get_type_hints(catalog.TrainingFailed)["error_code"]))
SUGGESTIONS = {
    "DATASET_NOT_READY": [
        "Wait until the dataset has been validated and profiled (status ready), then start the job again.",
        "If the dataset is invalid, fix the file and upload it again.",
    ],
    "TIMEOUT": [
        "Train for fewer epochs, or choose a lighter algorithm such as 'sgd'.",
        "Train on a sample of the rows.",
        "Raise TRAINING_SOFT_TIME_LIMIT / TRAINING_HARD_TIME_LIMIT if long jobs are expected.",
    ],
    "WORKER_LOST": [
        "The worker running this job stopped (killed, out of memory, or its machine went away).",
        "Start the job again; if it keeps happening, train on fewer rows or give the workers more memory.",
    ],
    "CANCELLED": ["Start a new job when you are ready."],
    "INTERNAL": ["Try again; if it fails again, an administrator can read the worker's log."],
}



class Conflict(Exception):
    """The request is valid but the object's state does not allow it (the API answers 409)."""


class JobGone(Exception):
    """The job's row is no longer running (reaped or ended elsewhere): stop working on it."""


# =================================================================================================
# Training jobs
# =================================================================================================


def training_job_default_name(*, dataset: Dataset, algorithm: str) -> str:
    base = (dataset.name or f"dataset-{dataset.pk}").replace("/", "-").replace("\\", "-").strip() or "model"
    return f"{base[:180]}-{algorithm}"


def training_job_start(
    *,
    dataset: Dataset,
    target_column: str,
    algorithm: str,
    epochs: int,
    test_size: float = 0.2,
    task: str | None = None,
    name: str = "",
    created_by=None,
    enqueue: bool = True,
) -> TrainingJob:
    """Record a queued training job and enqueue its run once the row is committed.

    With enqueue=False the caller runs it itself (training_job_run), e.g. inside its own task.
    """
    if dataset.status != Dataset.Status.READY:
        raise ValidationError(
            {"dataset": f"Dataset {dataset.name!r} is not ready (status: {dataset.status}); only ready datasets can be trained on."}
        )
    if target_column not in (dataset.column_names or []):
        raise ValidationError({"target_column": f"{target_column!r} is not a column of dataset {dataset.name!r}."})
    job = TrainingJob(
        name=(name or "").strip() or training_job_default_name(dataset=dataset, algorithm=algorithm),
        dataset=dataset,
        dataset_name=dataset.name[:200],
        target_column=target_column,
        task=task or "",
        algorithm=algorithm,
        epochs=epochs,
        test_size=test_size,
        soft_time_limit=settings.TRAINING_SOFT_TIME_LIMIT,
        time_limit=settings.TRAINING_HARD_TIME_LIMIT,
        created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
    )
    job.full_clean()
    with transaction.atomic():
        job.save()
        activity_record_quietly(title=f"Training job queued: {job.name}", action_type="training_start", user=job.created_by,
                  status="queued", description=f"{job.algorithm}, {job.epochs} epochs on {dataset.name}",
                  metadata={"job_id": job.pk, "dataset_id": dataset.pk, "algorithm": job.algorithm})
        if enqueue:
            transaction.on_commit(lambda: _training_job_enqueue(job_id=job.pk))
    return job


def _training_job_enqueue(*, job_id: int) -> None:
    from .tasks import training_job_run as task

    job = TrainingJob.objects.only("soft_time_limit", "time_limit").get(pk=job_id)
    try:
        task.apply_async(args=[job_id], soft_time_limit=job.soft_time_limit, time_limit=job.time_limit)
    except Exception as exc:  # the broker is down: say so on the row instead of leaving it queued
        logger.exception("could not enqueue training job %s", job_id)
        _training_job_fail(
            job_id=job_id,
            code="INTERNAL",
            error=f"The job could not be queued: {exc}",
            suggestions=["Check that Redis (the Celery broker) is running, then start the job again."],
            from_statuses=(JobStatus.QUEUED,),
        )


def training_job_cancel(*, job: TrainingJob) -> TrainingJob:
    """A queued job is cancelled at once; a running one stops within one epoch (its task checks)."""
    with transaction.atomic():
        if not TrainingJob.objects.filter(pk=job.pk, status__in=list(ACTIVE)).update(cancel_requested=True):
            raise Conflict(f"Training job {job.pk} has already ended ({TrainingJob.objects.get(pk=job.pk).status}).")
        _training_job_fail(
            job_id=job.pk,
            code="CANCELLED",
            error="Cancelled before it started.",
            status=JobStatus.CANCELLED,
            from_statuses=(JobStatus.QUEUED,),
        )
    job.refresh_from_db()
    return job


def training_job_run(*, job_id: int) -> ModelVersion | None:
    """Run a training job (in a Celery worker): the whole life of a claimed job.

    A second delivery of the same task, or a job cancelled while queued, finds nothing to claim.
    """
    if not claim(TrainingJob, job_id, stage="data_preparation", progress=0.0, message="Starting"):
        logger.info("training job %s: already claimed or ended; nothing to do", job_id)
        return None
    job = TrainingJob.objects.select_related("dataset").get(pk=job_id)
    dataset = job.dataset
    if dataset is None or dataset.status != Dataset.Status.READY or not dataset.file \
            or not default_storage.exists(dataset.file.name):
        if dataset is None:
            state = "was deleted"
        elif dataset.status != Dataset.Status.READY:
            state = f"is {dataset.status}"
        else:
            state = "has lost its file"
        _training_job_fail(job_id=job_id, code="DATASET_NOT_READY", error=f"The dataset {state}; it must be ready to train on.")
        return None
    publish_on_commit(
        catalog.TrainingStarted(job_id=job.pk, model_name=job.name, dataset_id=dataset.pk, total_epochs=job.epochs)
    )
    recorder = ProgressRecorder(job)
    try:
        return _training_job_complete(job=job, result=_train(job, recorder))
    except JobGone:
        logger.warning("training job %s ended elsewhere while it ran; dropping its result", job_id)
        return None
    except SoftTimeLimitExceeded:
        _training_job_fail(job_id=job_id, code="TIMEOUT", recorder=recorder,
                           error=f"Training took longer than its time limit ({job.soft_time_limit} s).")
        return None
    except Exception as exc:
        from . import trainer

        if isinstance(exc, trainer.TrainingCancelled):
            _training_job_fail(job_id=job_id, code="CANCELLED", recorder=recorder, status=JobStatus.CANCELLED,
                               error="Cancelled while training.")
        elif isinstance(exc, trainer.TrainingError):
            code = exc.code if exc.code in ERROR_CODES else "INTERNAL"
            _training_job_fail(job_id=job_id, code=code, error=exc.message, suggestions=exc.suggestions,
                               recorder=recorder)
        else:
            logger.exception("training job %s failed", job_id)
            _training_job_fail(job_id=job_id, code="INTERNAL", recorder=recorder,
                               error=f"Training failed unexpectedly: {type(exc).__name__}: {exc}"[:2000])
        return None


def _train(job: TrainingJob, recorder: ProgressRecorder):
    from threadpoolctl import threadpool_limits

    from . import trainer

    with heartbeat(TrainingJob, job.pk), threadpool_limits(limits=settings.TRAINING_THREADS):
        return trainer.train(
            csv_path=job.dataset.file.path,
            target_column=job.target_column,
            task=job.task or None,
            algorithm=job.algorithm,
            epochs=job.epochs,
            test_size=job.test_size,
            encoding=job.dataset.encoding or "utf-8",
            delimiter=job.dataset.delimiter or ",",
            on_progress=recorder,
            should_stop=recorder.should_stop,
        )


# Seconds between two reads of a running job's cancel_requested (see ProgressRecorder.should_stop).
CANCEL_CHECK_INTERVAL = 0.2


class ProgressRecorder:
    """The trainer's on_progress and should_stop for one job.

    Each update is written to the row and published as `training_progress` on commit. Stage starts
    always are; epochs are coalesced like the events themselves (at most one per
    EVENT_PROGRESS_INTERVAL, always the last epoch), so fast epochs cost neither a database write
    nor an event each, while the epoch history keeps every epoch.
    """

    def __init__(self, job: TrainingJob):
        self.job_id = job.pk
        self.total_epochs = job.epochs
        self.interval = settings.EVENT_PROGRESS_INTERVAL
        self.history: list[dict] = list(job.history or [])
        self.stage = job.stage or "data_preparation"
        self.progress = job.progress
        self.last_write = 0.0
        self.last_cancel_check = 0.0
        self.last_epoch_at = time.monotonic()
        last = self.history[-1] if self.history else {}
        self.loss, self.accuracy = last.get("loss"), last.get("accuracy")

    def __call__(self, update) -> None:
        now = time.monotonic()
        self.stage, self.progress = update.stage, update.progress
        epoch = update.current_epoch or 0
        is_epoch = update.stage == "model_training" and epoch > 0
        if is_epoch:
            self.history.append(
                {"epoch": epoch, "loss": update.current_loss, "accuracy": update.live_accuracy,
                 "duration": round(now - self.last_epoch_at, 6)}
            )
        if update.stage == "model_training":
            self.last_epoch_at = now
        # A stage's start is always written (five per job); epochs are coalesced, the last one kept.
        if is_epoch and epoch < self.total_epochs and now - self.last_write < self.interval:
            return
        self.write(update)
        self.last_write = now

    def write(self, update) -> None:
        epoch = update.current_epoch or 0
        # After training, validation and finalization report no loss: keep the last epoch's.
        if update.current_loss is not None or update.live_accuracy is not None:
            self.loss, self.accuracy = update.current_loss, update.live_accuracy
        fields = {
            "stage": update.stage,
            "progress": round(float(update.progress), 4),
            "current_epoch": epoch,
            "current_loss": self.loss if epoch else None,
            "live_accuracy": self.accuracy if epoch else None,
            "estimated_time_remaining": update.estimated_time_remaining,
            "message": (update.message or "")[:500],
        }
        if update.stage == "model_training":
            fields["history"] = list(self.history)
        if update.stage == "model_training" and epoch:
            current_stage = f"Epoch {epoch} of {self.total_epochs}"
        else:
            current_stage = STAGE_LABELS.get(update.stage, update.stage)
        with transaction.atomic():
            if not TrainingJob.objects.filter(pk=self.job_id, status=JobStatus.RUNNING).update(**fields):
                raise JobGone(self.job_id)
            publish_on_commit(
                catalog.TrainingProgress(
                    job_id=self.job_id,
                    progress=fields["progress"],
                    stage=update.stage,
                    current_stage=current_stage,
                    estimated_time_remaining=update.estimated_time_remaining,
                    current_epoch=epoch,
                    total_epochs=self.total_epochs,
                    current_loss=fields["current_loss"],
                    live_accuracy=fields["live_accuracy"],
                    message=fields["message"],
                )
            )

    def should_stop(self) -> bool:
        """Read the row's cancel_requested; the trainer asks before every epoch (and at a few stage
        starts). At most one read per CANCEL_CHECK_INTERVAL: epochs longer than that (the ones a
        person can watch) are each checked, so a cancel stops the job within one epoch; a run of
        millisecond epochs stops within that interval instead of paying a query per epoch."""
        now = time.monotonic()
        if now - self.last_cancel_check < CANCEL_CHECK_INTERVAL:
            return False
        self.last_cancel_check = now
        return TrainingJob.objects.filter(pk=self.job_id, cancel_requested=True).exists()


def _training_job_complete(*, job: TrainingJob, result) -> ModelVersion | None:
    """Store the artifact, register the model version and end the job, all or nothing."""
    artifact_name = default_storage.save(artifact_path(None, ""), ContentFile(result.artifact_bytes))
    score_name = "accuracy" if result.task == "classification" else "R²"
    message = f"{job.name}: validation {score_name} {result.validation_score:.3f} after {job.epochs} epoch(s)"
    try:
        for attempt in range(5):
            try:
                with transaction.atomic():
                    if not finish(
                        TrainingJob,
                        job.pk,
                        status=JobStatus.SUCCEEDED,
                        stage="finalization",
                        progress=100.0,
                        current_epoch=job.epochs,
                        estimated_time_remaining=0.0,
                        task=result.task,
                        history=result.history,
                        metrics=result.metrics,
                        final_accuracy=result.final_accuracy,
                        validation_score=result.validation_score,
                        training_time=result.training_time,
                        message=message[:500],
                    ):
                        raise JobGone(job.pk)
                    version = _model_version_register(job=job, result=result, artifact_name=artifact_name)
                    publish_on_commit(
                        catalog.TrainingCompleted(
                            job_id=job.pk,
                            model_id=version.pk,
                            final_accuracy=float(result.final_accuracy),
                            validation_score=float(result.validation_score),
                            training_time=float(result.training_time),
                            model_size=int(result.model_size),
                            total_epochs=job.epochs,
                            message=f"{version.label} registered. {message}",
                        )
                    )
                    activity_record_quietly(title=f"Training completed: {version.label}", action_type="training_complete",
                              user=job.created_by, status="succeeded", severity_level="success",
                              duration=result.training_time, description=message,
                              metadata={"job_id": job.pk, "model_id": version.pk,
                                        "validation_score": result.validation_score})
                return version
            except IntegrityError:
                # Another job of the same name took this version number: take the next one.
                if attempt == 4:
                    raise
    except JobGone:
        default_storage.delete(artifact_name)
        logger.warning("training job %s ended elsewhere before it could complete", job.pk)
        return None
    except BaseException:
        default_storage.delete(artifact_name)
        raise


def _training_job_fail(
    *,
    job_id: int,
    code: str,
    error: str,
    suggestions: list[str] | None = None,
    status: str = JobStatus.FAILED,
    from_statuses=(JobStatus.RUNNING,),
    recorder: ProgressRecorder | None = None,
) -> bool:
    """End a job as failed (or cancelled) once, and publish training_failed; False if it had ended."""
    suggestions = list(suggestions if suggestions is not None else SUGGESTIONS.get(code, []))
    with transaction.atomic():
        row = TrainingJob.objects.filter(pk=job_id).values("stage", "progress", "history", "name", "created_by_id").first()
        if row is None:
            return False
        stage = recorder.stage if recorder else row["stage"]
        progress = recorder.progress if recorder else row["progress"]
        fields = {}
        if recorder is not None and len(recorder.history) > len(row["history"] or []):
            fields["history"] = recorder.history  # epochs that coalescing had not written yet
        if not finish(
            TrainingJob,
            job_id,
            status=status,
            from_statuses=from_statuses,
            error=error,
            error_code=code,
            suggestions=suggestions,
            stage=stage or "",
            stage_failed=stage or "queued",
            progress=float(progress or 0.0),
            estimated_time_remaining=None,
            message=error[:500],
            **fields,
        ):
            return False
        publish_on_commit(
            catalog.TrainingFailed(
                job_id=job_id,
                error=error,
                error_code=code,
                stage_failed=stage or "queued",
                progress_when_failed=float(progress or 0.0),
                suggestions=[str(s) for s in suggestions],
            )
        )
        cancelled = code == "CANCELLED"
        activity_record_quietly(title=f"Training {'cancelled' if cancelled else 'failed'}: {row['name']}",
                  action_type="training_cancel" if cancelled else "training_failed", status=str(status),
                  severity_level="warning" if cancelled else "error", description=error[:1000],
                  user=_user(row["created_by_id"]), metadata={"job_id": job_id, "error_code": code})
    return True


def _user(user_id):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=user_id).first() if user_id else None


def training_jobs_reap_stale() -> int:
    """Fail running jobs whose worker stopped beating (run by beat through jobs.reap_stale)."""
    reaped = 0
    now = timezone.now()
    for job in stale(TrainingJob).only("id", "started_at", "time_limit", "cancel_requested"):
        status = JobStatus.FAILED
        if job.cancel_requested:
            code, status, error = "CANCELLED", JobStatus.CANCELLED, "Cancelled; its worker stopped before it noticed."
        elif job.time_limit and job.started_at and (now - job.started_at).total_seconds() >= job.time_limit:
            code, error = "TIMEOUT", f"The worker was stopped at the hard time limit ({job.time_limit} s)."
        else:
            code, error = "WORKER_LOST", "The worker running this job stopped responding (killed or out of memory)."
        if _training_job_fail(job_id=job.pk, code=code, error=error, status=status):
            logger.warning("training job %s reaped: %s", job.pk, code)
            reaped += 1
    return reaped


def training_jobs_resend(cutoff) -> int:
    """Queued jobs whose broker message was lost: enqueue them again (see jobs.resend_lost)."""
    ids = list(TrainingJob.objects.filter(status=JobStatus.QUEUED, created_at__lt=cutoff).values_list("pk", flat=True))
    for job_id in ids:
        logger.warning("training job %s: still queued with no message in the broker; sent again", job_id)
        _training_job_enqueue(job_id=job_id)
    return len(ids)


# =================================================================================================
# Model registry and deployment
# =================================================================================================


def _model_version_register(*, job: TrainingJob, result, artifact_name: str) -> ModelVersion:
    latest = ModelVersion.objects.filter(name=job.name).aggregate(v=Max("version"))["v"] or 0
    version = ModelVersion(
        name=job.name,
        version=latest + 1,
        status=ModelVersion.Status.INACTIVE,
        algorithm=result.algorithm,
        task=result.task,
        target_column=result.target_column or job.target_column,
        metrics=result.metrics,
        final_accuracy=result.final_accuracy,
        validation_score=result.validation_score,
        feature_schema=result.feature_schema,
        classes=result.classes,
        dropped_columns=result.dropped_columns,
        n_train=result.n_train,
        n_test=result.n_test,
        training_time=result.training_time,
        dataset_id=job.dataset_id,
        training_job=job,
        artifact_sha256=result.artifact_sha256,
        artifact_size=result.model_size,
    )
    version.artifact.name = artifact_name
    # Field checks only: the (name, version) constraint is the database's to enforce. Checked here,
    # a version committed by a concurrent job of the same name after our Max() was a
    # ValidationError that failed the job; from the database it is an IntegrityError, and
    # _training_job_complete takes the next number.
    version.full_clean(validate_unique=False, validate_constraints=False)
    version.save()
    return version


def _status_event(version: ModelVersion, status: str) -> catalog.ModelStatusChange:
    return catalog.ModelStatusChange(
        model_id=version.pk,
        status=status,
        health_score={"active": 1.0, "inactive": None, "error": 0.0, "training": None}[status],
        last_prediction=version.last_prediction_at.isoformat() if version.last_prediction_at else None,
    )


def _artifact_intact(version: ModelVersion) -> bool:
    import hashlib

    digest = hashlib.sha256()
    try:
        with default_storage.open(version.artifact.name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == version.artifact_sha256


def model_version_deploy(*, version: ModelVersion, user=None) -> Deployment | None:
    """Make this version the one serving its name; the one serving before goes inactive.

    Deploying the version that already serves changes nothing (returns None). Deploying an older
    version than the serving one is recorded as a rollback.
    """
    if not _artifact_intact(version):
        model_version_mark_error(version=version, reason="artifact missing or checksum mismatch")
        raise Conflict(f"{version.label} cannot be deployed: its artifact is missing or does not match its checksum.")
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status == ModelVersion.Status.ERROR:
            raise Conflict(f"{version.label} is in error and cannot be deployed; train a new version.")
        if version.status == ModelVersion.Status.ACTIVE:
            return None
        previous = ModelVersion.objects.select_for_update().filter(name=version.name, status=ModelVersion.Status.ACTIVE).first()
        now = timezone.now()
        if previous is not None:
            previous.status = ModelVersion.Status.INACTIVE
            previous.save(update_fields=["status"])
        version.status = ModelVersion.Status.ACTIVE
        version.deployed_at = now
        version.full_clean()
        version.save(update_fields=["status", "deployed_at"])
        rollback = previous is not None and version.version < previous.version
        deployment = Deployment(
            model_version=version,
            previous=previous,
            action=Deployment.Action.ROLLBACK if rollback else Deployment.Action.DEPLOY,
            deployed_by=user if getattr(user, "is_authenticated", False) else None,
        )
        deployment.full_clean()
        deployment.save()
        verb = "rolled back to" if rollback else "deployed"
        replaced = f", replacing v{previous.version}" if previous is not None else ""
        publish_on_commit(
            catalog.ModelDeployed(
                model_id=version.pk,
                model_name=version.name,
                model_version=version.version,
                model_accuracy=version.validation_score,
                deployment_timestamp=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                message=f"{version.name}: {verb} v{version.version}{replaced}.",
            )
        )
        publish_on_commit(_status_event(version, ModelVersion.Status.ACTIVE))
        if previous is not None:
            publish_on_commit(_status_event(previous, ModelVersion.Status.INACTIVE))
        activity_record_quietly(title=f"Model {'rolled back' if rollback else 'deployed'}: {version.label}",
                  action_type="model_rollback" if rollback else "model_deploy", user=deployment.deployed_by,
                  severity_level="success", description=f"{version.name}: {verb} v{version.version}{replaced}.",
                  metadata={"model_id": version.pk, "previous_id": previous.pk if previous else None})
    return deployment


def model_version_mark_error(*, version: ModelVersion, reason: str) -> bool:
    """A version whose artifact cannot be trusted stops serving (status error)."""
    with transaction.atomic():
        changed = ModelVersion.objects.filter(pk=version.pk).exclude(status=ModelVersion.Status.ERROR).update(
            status=ModelVersion.Status.ERROR
        )
        if changed:
            logger.error("model version %s marked error: %s", version.pk, reason)
            version.status = ModelVersion.Status.ERROR
            publish_on_commit(_status_event(version, ModelVersion.Status.ERROR))
    _forget_model(version.pk)
    return bool(changed)


# =================================================================================================
# Predictions
# =================================================================================================

MAX_PREDICTION_INSTANCES = 10_000
MILESTONES = (100, 500, 1_000, 5_000, 10_000)
MILESTONE_STEP = 10_000  # after the last milestone: every 10,000
VOLUME_INTERVAL = 10  # seconds between prediction_volume events of one version while traffic flows
RATE_SLOT = 10  # seconds per bucket of the per-minute rate
MODEL_CACHE_SIZE = 8

_models: OrderedDict[tuple[int, str], object] = OrderedDict()
_models_lock = threading.Lock()


class ArtifactError(Exception):
    """A version's artifact is missing or does not match its checksum (the version is now error)."""


def _forget_model(version_id: int) -> None:
    with _models_lock:
        for key in [k for k in _models if k[0] == version_id]:
            del _models[key]


def model_version_load(*, version: ModelVersion):
    """The version's fitted pipeline, cached per process by (version id, sha256).

    The bytes are checked against the stored sha256 before they are unpickled, on every load.
    """
    from . import trainer

    key = (version.pk, version.artifact_sha256)
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            _models.move_to_end(key)
            return model
    try:
        with default_storage.open(version.artifact.name, "rb") as f:
            data = f.read()
        model = trainer.load_artifact(data, version.artifact_sha256)
    except (OSError, trainer.ArtifactIntegrityError) as exc:
        model_version_mark_error(version=version, reason=str(exc))
        raise ArtifactError(f"{version.label} cannot serve: its artifact is missing or does not match its checksum.") from exc
    with _models_lock:
        _models[key] = model
        while len(_models) > MODEL_CACHE_SIZE:
            _models.popitem(last=False)
    return model


def model_version_predict(*, version: ModelVersion, instances: list) -> dict:
    """Predict with a version and count the predictions. Raises trainer.InvalidInputError when the
    instances do not match the version's feature schema, ArtifactError when it cannot serve."""
    from . import trainer

    if version.status == ModelVersion.Status.ERROR:
        raise ArtifactError(f"{version.label} is in error and cannot serve predictions.")
    model = model_version_load(version=version)
    result = trainer.predict(model, instances, version.feature_schema)  # checks the instances first
    model_version_record_predictions(version=version, count=len(instances))
    return result


def model_version_record_predictions(*, version: ModelVersion, count: int) -> int:
    """Add `count` predictions to the version's total (atomically, whatever the number of server
    processes) and publish prediction_volume at milestones or every 10 s. Returns the new total."""
    now = timezone.now()
    total = _add_predictions(version.pk, count, now)
    version.prediction_count, version.last_prediction_at = total, now
    event = _prediction_volume_event(version=version, count=count, version_total=total)
    if event is not None:
        publish_on_commit(event)
    return total


def _add_predictions(pk: int, count: int, now) -> int:
    """Add to a version's prediction count and return its new total, in one statement.

    Every concurrent prediction of a model updates this one row, so it is a single UPDATE ...
    RETURNING (PostgreSQL, and SQLite since 3.35): the row lock lasts one statement, with no
    round trip while it is held. An UPDATE then a SELECT in a transaction held it across both,
    and under load the predictions queued on it. (The ORM's update() cannot return values.)"""
    table = connection.ops.quote_name(ModelVersion._meta.db_table)
    count_col = connection.ops.quote_name("prediction_count")
    at_col = connection.ops.quote_name("last_prediction_at")
    pk_col = connection.ops.quote_name(ModelVersion._meta.pk.column)
    field = ModelVersion._meta.get_field("last_prediction_at")
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {count_col} = {count_col} + %s, {at_col} = %s WHERE {pk_col} = %s RETURNING {count_col}",
            [count, field.get_db_prep_value(now, connection), pk],
        )
        row = cursor.fetchone()
    if row is None:
        raise ModelVersion.DoesNotExist(f"model version {pk} no longer exists")
    return int(row[0])


def milestone_between(old: int, new: int) -> int | None:
    """The largest milestone m with old < m <= new, if any."""
    reached = None
    for m in MILESTONES:
        if old < m <= new:
            reached = m
    if new >= MILESTONES[-1] + MILESTONE_STEP:
        m = (new // MILESTONE_STEP) * MILESTONE_STEP
        if old < m <= new:
            reached = m
    return reached


def _redis_key(*parts) -> str:
    return ":".join([settings.REDIS_KEY_PREFIX, "training", *map(str, parts)])


def _prediction_volume_event(*, version: ModelVersion, count: int, version_total: int):
    now = time.time()
    slot = int(now // RATE_SLOT)
    try:
        client = bus.sync_client()
        pipe = client.pipeline(transaction=False)
        pipe.incrby(_redis_key("predictions", "total"), count)
        pipe.expire(_redis_key("predictions", "total"), 86_400)  # idle a day: re-seeded from the database
        pipe.incrby(_redis_key("predictions", "rate", slot), count)
        pipe.expire(_redis_key("predictions", "rate", slot), RATE_SLOT * 8)
        pipe.set(_redis_key("predictions", "gate", version.pk), 1, nx=True, ex=VOLUME_INTERVAL)
        redis_total, _, _, _, gate_open = pipe.execute()
        # The milestone is one of the system's total; Redis' INCRBY orders concurrent requests
        # across processes, so exactly one request crosses each milestone. Its counter is seeded
        # from the database when Redis lost it (first use, or a restart).
        if redis_total == count:
            seeded = _all_models_total()
            client.incrby(_redis_key("predictions", "total"), max(0, seeded - count))
            milestone = milestone_between(seeded - count, seeded)
            redis_total = seeded
        else:
            milestone = milestone_between(redis_total - count, redis_total)
        if milestone is None and not gate_open:
            return None
        buckets = client.mget([_redis_key("predictions", "rate", s) for s in range(slot - 5, slot + 1)])
    except redis.RedisError as exc:
        logger.warning("prediction volume not tracked: %s", exc)
        return None
    window = 5 * RATE_SLOT + (now - slot * RATE_SLOT)
    per_minute = round(sum(int(b or 0) for b in buckets) * 60.0 / max(window, 1.0), 2)
    total = _all_models_total()  # the database's: what the API and the pages show
    if milestone is not None:
        message = f"{milestone:,} predictions served ({version.label} now at {version_total:,})."
    else:
        message = f"{total:,} predictions served; {per_minute:,.0f} per minute."
    return catalog.PredictionVolume(
        total_predictions=int(total),
        predictions_per_minute=float(per_minute),
        milestone_reached=milestone,
        message=message,
        model_id=version.pk,
        model_name=version.name,
        model_predictions=int(version_total),
    )


def _all_models_total() -> int:
    return int(ModelVersion.objects.aggregate(n=Sum("prediction_count"))["n"] or 0)
