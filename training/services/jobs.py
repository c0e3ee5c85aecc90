"""Training jobs: start, run (in a Celery worker, reporting progress), cancel, reap and resend.

A succeeded job registers its model version (`registry`). `training.trainer` (scikit-learn, pandas)
is imported where it is used, so that importing this module (every Django process does, for the
reaper) stays cheap.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import typing

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from datasets import selectors as datasets_selectors
from mlops_dashboard import permissions
from mlops_dashboard.activity import activity_record_quietly
from mlops_dashboard.audit import audit_record
from mlops_dashboard.events import catalog, publish_on_commit
from mlops_dashboard.jobs import ACTIVE, JobStatus, claim, finish, heartbeat, job_failed_send, stale
from mlops_dashboard.projects import parent_project

from ..models import STAGES, ModelVersion, TrainingJob, artifact_path
from .errors import Conflict
from .registry import model_version_register

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


class JobGone(Exception):
    """The job's row is no longer running (reaped or ended elsewhere): stop working on it."""


def training_job_default_name(*, dataset, algorithm: str) -> str:
    base = (dataset.name or f"dataset-{dataset.pk}").replace("/", "-").replace("\\", "-").strip() or "model"
    return f"{base[:180]}-{algorithm}"


def training_job_start(
    *,
    user,
    dataset,
    target_column: str,
    algorithm: str,
    epochs: int,
    test_size: float = 0.2,
    task: str | None = None,
    name: str = "",
    project=None,
    created_by=None,
    enqueue: bool = True,
) -> TrainingJob:
    """Record a queued training job and enqueue its run once the row is committed.

    The job goes to its dataset's project (a different `project` is a ValidationError); `user` needs
    the editor role there (None: the system). `created_by` defaults to `user` (a pipeline step runs
    as the system for the run's creator). With enqueue=False the caller runs it itself
    (training_job_run), e.g. inside its own task.
    """
    permissions.authorize(user, "create", dataset)
    project = parent_project(dataset, project)
    if not datasets_selectors.dataset_is_ready(dataset):
        raise ValidationError(
            {"dataset": f"Dataset {dataset.name!r} is not ready (status: {dataset.status}); only ready datasets can be trained on."}
        )
    if target_column not in (dataset.column_names or []):
        raise ValidationError({"target_column": f"{target_column!r} is not a column of dataset {dataset.name!r}."})
    creator = created_by if created_by is not None else user
    job = TrainingJob(
        project=project,
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
        created_by=creator if getattr(creator, "is_authenticated", False) else None,
    )
    job.full_clean()
    with transaction.atomic():
        job.save()
        audit_record(user=user if user is not None else job.created_by, action="create", obj=job,
                     summary=f"{job.algorithm}, {job.epochs} epochs on dataset #{dataset.pk} ({dataset.name}), "
                             f"target {target_column}")
        activity_record_quietly(title=f"Training job queued: {job.name}", action_type="training_start", user=job.created_by,
                  status="queued", description=f"{job.algorithm}, {job.epochs} epochs on {dataset.name}",
                  metadata={"job_id": job.pk, "dataset_id": dataset.pk, "algorithm": job.algorithm},
                  project=job.project_id)
        if enqueue:
            transaction.on_commit(lambda: _training_job_enqueue(job_id=job.pk))
    return job


def _training_job_enqueue(*, job_id: int) -> None:
    from ..tasks import training_job_run as task

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


def training_job_cancel(*, user, job: TrainingJob) -> TrainingJob:
    """A queued job is cancelled at once; a running one stops within one epoch (its task checks).
    `user` needs to be its creator with the editor role, or a maintainer (None: the system)."""
    permissions.authorize(user, "cancel", job)
    with transaction.atomic():
        if not TrainingJob.objects.filter(pk=job.pk, status__in=list(ACTIVE)).update(cancel_requested=True):
            raise Conflict(f"Training job {job.pk} has already ended ({TrainingJob.objects.get(pk=job.pk).status}).")
        audit_record(user=user, action="cancel", obj=job, summary=f"status: {job.status} → cancel requested")
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
    if dataset is None or not datasets_selectors.dataset_is_ready(dataset) or not dataset.file \
            or not default_storage.exists(dataset.file.name):
        if dataset is None:
            state = "was deleted"
        elif not datasets_selectors.dataset_is_ready(dataset):
            state = f"is {dataset.status}"
        else:
            state = "has lost its file"
        _training_job_fail(job_id=job_id, code="DATASET_NOT_READY", error=f"The dataset {state}; it must be ready to train on.")
        return None
    publish_on_commit(
        catalog.TrainingStarted(project_id=job.project_id, job_id=job.pk, model_name=job.name, dataset_id=dataset.pk, total_epochs=job.epochs)
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
        from .. import trainer

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

    from .. import trainer

    dataset = job.dataset
    with heartbeat(TrainingJob, job.pk), threadpool_limits(limits=settings.TRAINING_THREADS), \
            tempfile.TemporaryDirectory(prefix="training-sample-") as workdir:
        csv_path, task = _training_rows(job, recorder, workdir)
        return trainer.train(
            csv_path=csv_path,
            target_column=job.target_column,
            task=task,
            algorithm=job.algorithm,
            epochs=job.epochs,
            test_size=job.test_size,
            encoding=dataset.encoding or "utf-8",
            delimiter=dataset.delimiter or ",",
            on_progress=recorder,
            should_stop=recorder.should_stop,
        )


def _training_rows(job: TrainingJob, recorder: ProgressRecorder, workdir: str) -> tuple[str, str | None]:
    """The file to train on and the task: the dataset's own file, or, past TRAINING_MAX_ROWS rows, a
    sample of it (stratified by class for classification) in `workdir`. Says which on the row and in
    a progress event."""
    from .. import trainer

    dataset, limit, task = job.dataset, settings.TRAINING_MAX_ROWS, job.task or None
    total = dataset.row_count or 0
    fields = {"rows_total": total, "rows_used": total, "sampling": TrainingJob.Sampling.ALL}
    path = dataset.file.path
    if total > limit:
        def classification(target) -> bool:
            nonlocal task
            task = task or trainer.infer_task(target.dropna())
            return task == "classification"

        def progress(fraction: float, step: str):
            recorder(trainer.ProgressUpdate(stage="data_preparation", progress=round(10.0 * fraction, 4),
                                            message=f"Sampling {limit:,} of {total:,} rows: {step}"))

        def should_stop() -> bool:
            if recorder.should_stop():
                raise trainer.TrainingCancelled()
            return False

        sample = datasets_selectors.dataset_sample(
            dataset, rows=limit, target_column=job.target_column, stratify=classification,
            output_path=os.path.join(workdir, "sample.csv"), progress=progress, should_stop=should_stop)
        path = sample.path
        fields = {"rows_total": sample.rows_total, "rows_used": sample.rows,
                  "sampling": TrainingJob.Sampling.STRATIFIED if sample.stratified else TrainingJob.Sampling.RANDOM}
    if not TrainingJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(**fields):
        raise JobGone(job.pk)
    for name, value in fields.items():
        setattr(job, name, value)
    if fields["sampling"] != TrainingJob.Sampling.ALL:
        recorder(trainer.ProgressUpdate(stage="data_preparation", progress=10.0, message=sampling_text(job)))
    return path, task


def sampling_text(job: TrainingJob) -> str:
    """What a job trained on, in a sentence (its page, its events)."""
    if not job.sampling:
        return ""
    if job.sampling == TrainingJob.Sampling.ALL:
        return f"Trained on all {job.rows_used:,} rows."
    kind = "a stratified" if job.sampling == TrainingJob.Sampling.STRATIFIED else "a random"
    return f"Trained on {kind} sample of {job.rows_used:,} of {job.rows_total:,} rows (TRAINING_MAX_ROWS)."


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
        self.project_id = job.project_id
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
                    project_id=self.project_id,
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
                    version = model_version_register(job=job, result=result, artifact_name=artifact_name)
                    publish_on_commit(
                        catalog.TrainingCompleted(
                            project_id=job.project_id,
                            job_id=job.pk,
                            model_id=version.pk,
                            final_accuracy=float(result.final_accuracy),
                            validation_score=float(result.validation_score),
                            training_time=float(result.training_time),
                            model_size=int(result.model_size),
                            total_epochs=job.epochs,
                            rows_used=int(job.rows_used or 0),
                            rows_total=int(job.rows_total or 0),
                            sampling=job.sampling or TrainingJob.Sampling.ALL,
                            message=f"{version.label} registered. {message}",
                        )
                    )
                    activity_record_quietly(title=f"Training completed: {version.label}", action_type="training_complete",
                              user=job.created_by, status="succeeded", severity_level="success",
                              duration=result.training_time, description=message,
                              metadata={"job_id": job.pk, "model_id": version.pk,
                                        "validation_score": result.validation_score},
                              project=job.project_id)
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
        row = TrainingJob.objects.filter(pk=job_id).values("stage", "progress", "history", "name", "created_by_id", "project_id").first()
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
                project_id=row["project_id"],
                job_id=job_id,
                error=error,
                error_code=code,
                stage_failed=stage or "queued",
                progress_when_failed=float(progress or 0.0),
                suggestions=[str(s) for s in suggestions],
            )
        )
        if status == JobStatus.FAILED:  # monitoring's alert (and its creator's email) at once, not at the next check
            transaction.on_commit(lambda: _failed_announce(job_id), robust=True)
        cancelled = code == "CANCELLED"
        activity_record_quietly(title=f"Training {'cancelled' if cancelled else 'failed'}: {row['name']}",
                  action_type="training_cancel" if cancelled else "training_failed", status=str(status),
                  severity_level="warning" if cancelled else "error", description=error[:1000],
                  user=_user(row["created_by_id"]), metadata={"job_id": job_id, "error_code": code},
                  project=row["project_id"])
    return True


def _failed_announce(job_id: int) -> None:
    job = TrainingJob.objects.defer("history").filter(pk=job_id).first()
    if job is not None:
        job_failed_send("training_job", job)


def _user(user_id):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=user_id).first() if user_id else None


def training_jobs_reap_stale() -> int:
    """Fail running jobs whose worker stopped beating (run by beat through mlops_dashboard.jobs_recover)."""
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


def training_jobs_resend_lost(cutoff) -> int:
    """Queued jobs whose broker message was lost: enqueue them again (see jobs.resend_lost)."""
    ids = list(TrainingJob.objects.filter(status=JobStatus.QUEUED, created_at__lt=cutoff).values_list("pk", flat=True))
    for job_id in ids:
        logger.warning("training job %s: still queued with no message in the broker; sent again", job_id)
        _training_job_enqueue(job_id=job_id)
    return len(ids)
