"""Every write of the pipelines app: define pipelines (with their cron schedule), start, execute,
cancel, retry and reap runs, and the events that announce them.

Execution: one Celery task per run (`pipelines.run_execute`) claims the run (a second delivery
does nothing), beats while it runs, and executes the steps in order by calling the other apps' real
services: a processing or training job is created with its own service, then run inline in this
process (it claims itself: if another worker already took the copy its on_commit enqueue sent, the
inline call returns at once) and waited for until it is terminal. A background thread folds the
inner job's progress into the run's percent while it runs. Cancel sets the run's flag and cancels
the current inner job with that job's own cancel service, so the step stops as the job's own
cancel does.

Runs of one pipeline are limited to `max_concurrent_runs`: a run over the limit waits `queued`;
`pipeline_runs_dispatch` (serialized by a lock on the pipeline row) hands the oldest queued runs to
workers when a slot is free. It is called when a run is created and when one ends, and by beat
(`pipelines.runs_kick`) as a safety net.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from datasets.models import Dataset, ProcessingJob
from mlops_dashboard.activity import activity_record
from mlops_dashboard.events import catalog, publish_on_commit
from mlops_dashboard.jobs import JobStatus, claim, finish, heartbeat, job_failed_send, stale

from . import steps as step_kinds
from .models import Pipeline, PipelineRun, StepRun, StepStatus

logger = logging.getLogger(__name__)

# The share of a run's progress bar each kind of step takes (long steps take more).
STEP_WEIGHTS = {step_kinds.TRAIN_MODEL: 4, step_kinds.PROCESS_DATASET: 2, step_kinds.DETECT_ANOMALIES: 2}
POLL_SECONDS = 0.3  # how often a step reads its inner job's row while waiting
WATCH_SECONDS = 0.5  # how often the progress thread folds the inner job's progress in
SCHEDULED_TASK = "pipelines.pipeline_run_scheduled"
# A run handed to a worker this long ago and still queued lost its message: send it again.
REENQUEUE_AFTER = timedelta(seconds=120)


class Conflict(Exception):
    """The request is valid but the object's state does not allow it (the API answers 409)."""


class StepFailed(Exception):
    """The step cannot succeed; the message says why, for people."""


class StepCancelled(Exception):
    """The run was cancelled while this step ran."""


# =================================================================================================
# Defining pipelines
# =================================================================================================


def validate_schedule(value: str) -> str:
    """A five-field cron expression (minute hour day-of-month month day-of-week), or ""."""
    from celery.schedules import crontab
    from django_celery_beat.validators import crontab_validator

    value = " ".join((value or "").split())
    if not value:
        return ""
    parts = value.split(" ")
    if len(parts) != 5:
        raise ValidationError({"schedule": f"{value!r} is not a cron expression: give 5 fields "
                                           "(minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\"."})
    try:
        crontab_validator(value)
        minute, hour, day_of_month, month_of_year, day_of_week = parts
        crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                day_of_week=day_of_week)
    except (ValidationError, ValueError, TypeError) as exc:
        detail = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        raise ValidationError({"schedule": f"{value!r} is not a valid cron expression ({detail})."}) from None
    return value


def pipeline_steps_clean(*, steps, dataset: Dataset | None) -> list[dict]:
    """The checked steps for this input dataset; ValidationError({"steps": [...]}) naming each bad step."""
    ready = dataset is not None and dataset.status == Dataset.Status.READY and dataset.column_names
    try:
        return step_kinds.clean_steps(
            steps, columns=list(dataset.column_names) if ready else None,
            target_column=dataset.target_column if dataset is not None else "",
        )
    except step_kinds.StepsError as exc:
        raise ValidationError({"steps": exc.messages}) from None


def _pipeline_check(pipeline: Pipeline) -> None:
    errors = {}
    try:
        pipeline.schedule = validate_schedule(pipeline.schedule)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if pipeline.dataset_id is None:
        errors["dataset"] = ["Choose the input dataset of the first step."]
    try:
        pipeline.steps = pipeline_steps_clean(steps=pipeline.steps, dataset=pipeline.dataset)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        pipeline.full_clean(exclude=["periodic_task", *errors])
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
    if errors:
        raise ValidationError(errors)


def pipeline_create(*, name: str, dataset: Dataset | None, steps: list, description: str = "", schedule: str = "",
                    max_concurrent_runs: int | None = None, created_by=None) -> Pipeline:
    pipeline = Pipeline(
        name=(name or "").strip(), description=description or "", dataset=dataset, steps=steps,
        schedule=schedule or "", created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
    )
    if max_concurrent_runs is not None:
        pipeline.max_concurrent_runs = max_concurrent_runs
    _pipeline_check(pipeline)
    with transaction.atomic():
        pipeline.save()
        _schedule_sync(pipeline)
        publish_on_commit(catalog.PipelineCreated(pipeline_id=pipeline.pk, name=pipeline.name))
        activity_record(title=f"Pipeline created: {pipeline.name}", action_type="pipeline_create",
                        user=pipeline.created_by, description=_steps_summary(pipeline.steps),
                        metadata={"pipeline_id": pipeline.pk})
    return pipeline


EDITABLE = ("name", "description", "dataset", "steps", "schedule", "max_concurrent_runs")


def pipeline_update(*, pipeline: Pipeline, **changes) -> Pipeline:
    """Change any of name, description, dataset, steps, schedule, max_concurrent_runs (the steps are
    checked again against the, possibly new, dataset). Runs already created keep their own copy."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise TypeError(f"pipeline_update() got unexpected fields: {', '.join(sorted(unknown))}")
    for field, value in changes.items():
        if field in ("name", "description", "schedule"):
            value = (value or "").strip() if field == "name" else (value or "")
        elif field == "max_concurrent_runs" and value is None:
            continue
        setattr(pipeline, field, value)
    _pipeline_check(pipeline)
    with transaction.atomic():
        pipeline.save()
        _schedule_sync(pipeline)
        publish_on_commit(catalog.PipelineUpdated(pipeline_id=pipeline.pk, name=pipeline.name))
        # A higher limit may free a slot for a queued run.
        pk = pipeline.pk
        transaction.on_commit(lambda: pipeline_runs_dispatch(pipeline_id=pk), robust=True)
    return pipeline


def pipeline_delete(*, pipeline: Pipeline, user=None) -> None:
    """Delete a pipeline, its runs and its schedule; refused (Conflict) while a run is active."""
    if pipeline.runs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).exists():
        raise Conflict(f"Pipeline {pipeline.name!r} has a queued or running run: cancel it first.")
    pk, name = pipeline.pk, pipeline.name
    with transaction.atomic():
        task = pipeline.periodic_task
        pipeline.delete()
        if task is not None:
            _periodic_task_delete(task)
        publish_on_commit(catalog.PipelineDeleted(pipeline_id=pk, name=name))
        activity_record(title=f"Pipeline deleted: {name}", action_type="pipeline_delete", user=user,
                        severity_level="warning", metadata={"pipeline_id": pk})


def _steps_summary(steps: list) -> str:
    return " → ".join(step["kind"] for step in steps)


# --- the schedule: one PeriodicTask (and its CrontabSchedule) per scheduled pipeline --------------


def _schedule_sync(pipeline: Pipeline) -> None:
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    task = pipeline.periodic_task
    if not pipeline.schedule:
        if task is not None:
            Pipeline.objects.filter(pk=pipeline.pk).update(periodic_task=None)
            pipeline.periodic_task = None
            _periodic_task_delete(task)
        return
    minute, hour, day_of_month, month_of_year, day_of_week = pipeline.schedule.split(" ")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year, day_of_week=day_of_week,
        timezone=settings.CELERY_TIMEZONE,
    )
    fields = {
        "task": SCHEDULED_TASK, "crontab": crontab, "interval": None, "args": json.dumps([pipeline.pk]),
        "enabled": True, "description": f"Runs the pipeline {pipeline.name!r} on its schedule ({pipeline.schedule}).",
    }
    if task is None:
        task = PeriodicTask(name=f"pipeline-{pipeline.pk}", **fields)
    else:
        old_crontab_id = task.crontab_id
        for key, value in fields.items():
            setattr(task, key, value)
    task.full_clean()
    task.save()
    if pipeline.periodic_task_id != task.pk:
        pipeline.periodic_task = task
        Pipeline.objects.filter(pk=pipeline.pk).update(periodic_task=task)
    elif old_crontab_id and old_crontab_id != crontab.pk:
        _crontab_forget(old_crontab_id)


def _periodic_task_delete(task) -> None:
    crontab_id = task.crontab_id
    task.delete()
    if crontab_id:
        _crontab_forget(crontab_id)


def _crontab_forget(crontab_id: int) -> None:
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    if not PeriodicTask.objects.filter(crontab_id=crontab_id).exists():
        CrontabSchedule.objects.filter(pk=crontab_id).delete()


# =================================================================================================
# Starting, dispatching, cancelling and retrying runs
# =================================================================================================


def _run_data(run: PipelineRun, **extra) -> dict:
    data = {
        "pipeline_name": run.pipeline.name if run.pipeline_id else "",
        "trigger": run.trigger,
        "progress": round(run.progress, 1),
        "current_step": run.current_step,
        "total_steps": run.total_steps,
        "duration": run.duration,
        "retry_of": run.retry_of_id,
    }
    if run.error:
        data["error"] = run.error
    if run.failed_step:
        data["failed_step"] = run.failed_step
    data.update(extra)
    return data


def _status_event(run: PipelineRun, **extra) -> None:
    publish_on_commit(catalog.PipelineStatus(pipeline_id=run.pipeline_id, run_id=run.pk, status=run.status,
                                             data=_run_data(run, **extra)))


def _step_event(step: StepRun, run: PipelineRun, *, log: list[str] | None = None) -> None:
    publish_on_commit(catalog.PipelineStep(
        pipeline_id=run.pipeline_id, run_id=run.pk, step_index=step.index, kind=step.kind, status=step.status,
        log=list(log or []), output=step_output(step), error=step.error or None,
    ))


def step_output(step: StepRun) -> dict:
    """What a step produced, as its event and the API show it."""
    out = dict(step.output or {})
    for key, value in (
        ("input_dataset_id", step.input_dataset_id), ("dataset_id", step.output_dataset_id),
        ("model_version_id", step.model_version_id), ("processing_job_id", step.processing_job_id),
        ("training_job_id", step.training_job_id),
    ):
        if value is not None:
            out[key] = value
    if step.metrics:
        out["metrics"] = step.metrics
    if step.started_at:
        out["duration"] = step.duration
    if step.reused:
        out["reused"] = True
    return out


def pipeline_run_start(*, pipeline: Pipeline, user=None, trigger: str = PipelineRun.Trigger.MANUAL,
                       retry_of: PipelineRun | None = None) -> PipelineRun:
    """Record a queued run with one StepRun per step and hand it to a worker when a slot is free."""
    if pipeline.dataset_id is None:
        raise ValidationError({"dataset": f"Pipeline {pipeline.name!r} has no input dataset (was it deleted?)."})
    if not pipeline.steps:
        raise ValidationError({"steps": f"Pipeline {pipeline.name!r} has no steps."})
    run = PipelineRun(
        pipeline=pipeline, trigger=trigger, retry_of=retry_of, dataset_id=pipeline.dataset_id,
        steps=list(pipeline.steps), context={"dataset_id": pipeline.dataset_id},
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    run.full_clean()
    with transaction.atomic():
        run.save()
        reused = _reuse_steps(run, retry_of) if retry_of is not None else []
        for index, step in enumerate(run.steps):
            if index < len(reused):
                continue
            row = StepRun(run=run, index=index, kind=step["kind"], options=step.get("options") or {})
            row.full_clean(exclude=["run"])
            row.save()
        if reused:
            run.progress = _progress_of(run.steps, len(reused), 0.0)
            run.save(update_fields=["context", "progress"])
        _status_event(run, reused_steps=len(reused))
        pk, pipeline_id = run.pk, pipeline.pk
        transaction.on_commit(lambda: pipeline_runs_dispatch(pipeline_id=pipeline_id), robust=True)
    logger.info("pipeline %s: run %s queued (%s)", pipeline.pk, pk, trigger)
    return run


def _reuse_steps(run: PipelineRun, old: PipelineRun) -> list[StepRun]:
    """Copy the leading steps of `old` that succeeded and are defined the same way now."""
    if old.dataset_id != run.dataset_id:
        return []
    copied = []
    old_steps = {s.index: s for s in old.step_runs.all()}
    context = {"dataset_id": run.dataset_id}
    for index, step in enumerate(run.steps):
        previous = old_steps.get(index)
        if previous is None or previous.status != StepStatus.SUCCEEDED:
            break
        if previous.kind != step["kind"] or previous.options != (step.get("options") or {}):
            break
        copy = StepRun(
            run=run, index=index, kind=previous.kind, options=previous.options, status=StepStatus.SUCCEEDED,
            progress=100.0, started_at=previous.started_at, finished_at=previous.finished_at,
            input_dataset_id=previous.input_dataset_id, output_dataset_id=previous.output_dataset_id,
            model_version_id=previous.model_version_id, processing_job_id=previous.processing_job_id,
            training_job_id=previous.training_job_id, metrics=previous.metrics, output=previous.output,
            log=[f"Reused the output of run #{old.pk} (step {index}, {previous.kind}); not run again."],
            reused=True, reused_from=previous.reused_from or previous,
        )
        copy.save()
        copied.append(copy)
        _context_after(context, copy)
    run.context = context
    return copied


def _context_after(context: dict, step: StepRun) -> None:
    """What a succeeded step hands the next one."""
    if step.kind == step_kinds.PROCESS_DATASET and step.output_dataset_id:
        context["dataset_id"] = step.output_dataset_id
    elif step.kind == step_kinds.TRAIN_MODEL and step.model_version_id:
        context["model_version_id"] = step.model_version_id
        context.pop("gate_passed", None)
    elif step.kind == step_kinds.EVALUATE:
        context["gate_passed"] = bool((step.metrics or {}).get("passed"))


def _run_slots_taken(pipeline_id: int) -> int:
    return PipelineRun.objects.filter(pipeline_id=pipeline_id).filter(
        Q(status=JobStatus.RUNNING) | Q(status=JobStatus.QUEUED, enqueued_at__isnull=False)
    ).count()


def pipeline_runs_dispatch(*, pipeline_id: int) -> list[int]:
    """Hand the oldest queued runs of a pipeline to workers while it has free run slots."""
    with transaction.atomic():
        # The lock on the pipeline row serializes every dispatch of this pipeline (PostgreSQL; SQLite
        # serializes all writers anyway), so two ending runs never both take the last slot.
        pipeline = Pipeline.objects.select_for_update().filter(pk=pipeline_id).first()
        if pipeline is None:
            return []
        free = pipeline.max_concurrent_runs - _run_slots_taken(pipeline_id)
        if free <= 0:
            return []
        ids = list(
            PipelineRun.objects.filter(pipeline_id=pipeline_id, status=JobStatus.QUEUED, enqueued_at__isnull=True)
            .order_by("created_at", "id").values_list("pk", flat=True)[:free]
        )
        if ids:
            PipelineRun.objects.filter(pk__in=ids).update(enqueued_at=timezone.now())
            for run_id in ids:
                transaction.on_commit(lambda run_id=run_id: _run_enqueue(run_id=run_id))
    return ids


def _run_enqueue(*, run_id: int) -> None:
    from .tasks import run_execute

    try:
        run_execute.apply_async(args=[run_id], soft_time_limit=settings.PIPELINE_SOFT_TIME_LIMIT,
                                time_limit=settings.PIPELINE_HARD_TIME_LIMIT)
    except Exception:  # the broker is down: the run stays queued and beat's kick sends it again
        logger.exception("could not enqueue pipeline run %s", run_id)
        PipelineRun.objects.filter(pk=run_id, status=JobStatus.QUEUED).update(enqueued_at=None)


def pipeline_runs_kick() -> int:
    """Beat's safety net: dispatch every pipeline with queued runs; resend runs whose message was lost."""
    stuck = PipelineRun.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=timezone.now() - REENQUEUE_AFTER)
    resent = 0
    for run_id in stuck.values_list("pk", flat=True):
        # claim() makes a duplicate delivery harmless.
        if PipelineRun.objects.filter(pk=run_id, status=JobStatus.QUEUED).update(enqueued_at=timezone.now()):
            _run_enqueue(run_id=run_id)
            resent += 1
    started = 0
    for pipeline_id in set(PipelineRun.objects.filter(status=JobStatus.QUEUED).values_list("pipeline_id", flat=True)):
        started += len(pipeline_runs_dispatch(pipeline_id=pipeline_id))
    return resent + started


def pipeline_run_scheduled(*, pipeline_id: int) -> PipelineRun | None:
    """A run started by the pipeline's cron schedule (beat)."""
    pipeline = Pipeline.objects.filter(pk=pipeline_id).first()
    if pipeline is None:
        return None
    try:
        return pipeline_run_start(pipeline=pipeline, trigger=PipelineRun.Trigger.SCHEDULE)
    except ValidationError as exc:
        logger.warning("scheduled run of pipeline %s not started: %s", pipeline_id, exc)
        return None


def pipeline_run_cancel(*, run: PipelineRun, user=None) -> PipelineRun:
    """A queued run is cancelled at once; a running one stops as its current step's job stops."""
    with transaction.atomic():
        if finish(PipelineRun, run.pk, status=JobStatus.CANCELLED, from_statuses=(JobStatus.QUEUED,),
                  cancel_requested=True, error="Cancelled before it started.",
                  message="Cancelled before it started."):
            run.refresh_from_db()
            for step in run.step_runs.filter(status=StepStatus.QUEUED):
                step.status = StepStatus.SKIPPED
                step.save(update_fields=["status"])
                _step_event(step, run)
            _run_ended(run, user=user)
            return run
        if not PipelineRun.objects.filter(pk=run.pk, status=JobStatus.RUNNING).update(cancel_requested=True):
            status = PipelineRun.objects.filter(pk=run.pk).values_list("status", flat=True).first()
            raise Conflict(f"Run #{run.pk} has already ended ({status}).")
    step = run.step_runs.filter(status=StepStatus.RUNNING).select_related("training_job", "processing_job").first()
    if step is not None:
        _inner_job_cancel(step)
    run.refresh_from_db()
    return run


def _inner_job_cancel(step: StepRun) -> None:
    """Cancel a step's processing or training job with that job's own cancel service."""
    from datasets.services import processing_job_cancel
    from training.services import Conflict as TrainingConflict
    from training.services import training_job_cancel

    step.refresh_from_db(fields=["training_job", "processing_job"])
    if step.training_job_id:
        try:
            training_job_cancel(job=step.training_job)
        except TrainingConflict:
            pass  # it had just ended
    if step.processing_job_id:
        try:
            processing_job_cancel(job=step.processing_job)
        except ValidationError:
            pass


def pipeline_run_retry(*, run: PipelineRun, user=None) -> PipelineRun:
    """A new run of the pipeline's current definition that reuses the outputs of the leading steps
    of `run` that succeeded (and are still defined the same way), starting at the first other one."""
    run.refresh_from_db(fields=["status"])
    if run.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise Conflict(f"Only failed or cancelled runs can be retried; run #{run.pk} is {run.status}.")
    return pipeline_run_start(pipeline=run.pipeline, user=user, trigger=PipelineRun.Trigger.RETRY, retry_of=run)


# =================================================================================================
# Executing a run (in a Celery worker)
# =================================================================================================


def _progress_of(steps: list[dict], index: int, fraction: float) -> float:
    weights = [STEP_WEIGHTS.get(s["kind"], 1) for s in steps]
    total = sum(weights) or 1
    done = sum(weights[:index]) + (weights[index] * max(0.0, min(1.0, fraction)) if index < len(weights) else 0)
    return round(100.0 * done / total, 2)


def pipeline_run_execute(*, run_id: int) -> None:
    """Run a claimed pipeline run's steps in order. A second delivery finds nothing to claim."""
    if not claim(PipelineRun, run_id, message="Starting"):
        logger.info("pipeline run %s: already claimed or ended; nothing to do", run_id)
        return
    run = PipelineRun.objects.select_related("pipeline", "created_by").get(pk=run_id)
    try:
        with transaction.atomic():
            _status_event(run)
            activity_record(title=f"Pipeline run started: {run.pipeline.name}", action_type="pipeline_run",
                            user=run.created_by, status="running",
                            description=f"Run #{run.pk} ({run.trigger}): {_steps_summary(run.steps)}",
                            metadata={"pipeline_id": run.pipeline_id, "run_id": run.pk})
        with heartbeat(PipelineRun, run_id):
            try:
                _Execution(run).execute()
            except Exception as exc:  # never leave the run running (the reaper would, later)
                logger.exception("pipeline run %s failed unexpectedly", run_id)
                step = StepRun.objects.filter(run_id=run_id, status=StepStatus.RUNNING).first()
                _run_end(run_id, status=JobStatus.FAILED, step=step,
                         error=f"The run failed unexpectedly: {type(exc).__name__}: {exc}"[:2000])
    finally:
        pipeline_runs_dispatch(pipeline_id=run.pipeline_id)


class _Execution:
    """The state of one run while a worker executes it: its steps, context and log writing."""

    def __init__(self, run: PipelineRun):
        self.run = run
        self.context = dict(run.context or {})
        self.lock = threading.Lock()
        self.last_progress = (-1.0, 0.0)

    # --- progress and logs ---------------------------------------------------------------------------

    def log(self, step: StepRun, *lines: str) -> None:
        """Append lines to the step's log and publish them (from the step or the progress thread)."""
        stamp = timezone.now().strftime("%H:%M:%S")
        new = [f"{stamp} {line}" for line in lines if line]
        if not new:
            return
        with self.lock:
            step.log = list(step.log or []) + new
            StepRun.objects.filter(pk=step.pk).update(log=step.log)
            _step_event(step, self.run, log=new)

    def progress(self, step: StepRun, fraction: float, *, force: bool = False) -> None:
        percent = _progress_of(self.run.steps, step.index, fraction)
        with self.lock:
            now = time.monotonic()
            last_percent, last_at = self.last_progress
            if not force and (percent == last_percent or (percent - last_percent < 0.5 and now - last_at < 1.0)):
                return
            self.last_progress = (percent, now)
            step.progress = round(100.0 * max(0.0, min(1.0, fraction)), 1)
            self.run.progress = percent
            StepRun.objects.filter(pk=step.pk).update(progress=step.progress)
            PipelineRun.objects.filter(pk=self.run.pk, status=JobStatus.RUNNING).update(progress=percent)
            publish_on_commit(catalog.PipelineProgress(
                pipeline_id=self.run.pipeline_id, run_id=self.run.pk, progress=percent, status="running",
                current_step=step.kind, step_index=step.index, total_steps=self.run.total_steps,
            ))

    @contextlib.contextmanager
    def watching(self, step: StepRun, read: Callable[[], tuple[float, str] | None]):
        """While the block runs, a thread folds `read()` (percent 0-100, message) into the run's
        progress and logs each new message: the inner job may run in this thread or another worker."""
        stop = threading.Event()

        def loop():
            last_message = None
            try:
                while not stop.wait(WATCH_SECONDS):
                    try:
                        got = read()
                    except Exception:
                        logger.warning("pipeline run %s: reading step progress failed", self.run.pk, exc_info=True)
                        continue
                    if got is None:
                        continue
                    percent, message = got
                    self.progress(step, (percent or 0.0) / 100.0)
                    if message and message != last_message:
                        last_message = message
                        self.log(step, message)
            finally:
                connections.close_all()  # this thread's own connections

        thread = threading.Thread(target=loop, name=f"pipeline-run-{self.run.pk}-watch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=WATCH_SECONDS + 2)

    # --- the run -------------------------------------------------------------------------------------

    def cancel_requested(self) -> bool:
        return PipelineRun.objects.filter(pk=self.run.pk, cancel_requested=True).exists()

    def still_running(self) -> bool:
        return PipelineRun.objects.filter(pk=self.run.pk, status=JobStatus.RUNNING).exists()

    def execute(self) -> None:
        steps = list(self.run.step_runs.order_by("index"))
        for step in steps:
            if step.status == StepStatus.SUCCEEDED:  # reused from the run this one retries
                _context_after(self.context, step)
                continue
            if not self.still_running():
                return  # reaped or ended elsewhere
            if self.cancel_requested():
                self.end(step, JobStatus.CANCELLED, error="Cancelled by a user.", step_started=False)
                return
            self.start_step(step)
            try:
                RUNNERS[step.kind](self, step)
            except StepCancelled as exc:
                self.end(step, JobStatus.CANCELLED, error=str(exc) or "Cancelled by a user.")
                return
            except StepFailed as exc:
                self.end(step, JobStatus.FAILED, error=str(exc))
                return
            except Exception as exc:  # a bug or a time limit: the run still ends, naming the step
                logger.exception("pipeline run %s: step %s (%s) failed unexpectedly", self.run.pk, step.index, step.kind)
                self.end(step, JobStatus.FAILED, error=f"The step failed unexpectedly: {type(exc).__name__}: {exc}"[:2000])
                return
            self.finish_step(step)
        self.end(None, JobStatus.SUCCEEDED)

    def start_step(self, step: StepRun) -> None:
        step.status = StepStatus.RUNNING
        step.started_at = timezone.now()
        step.input_dataset_id = self.context.get("dataset_id") if Dataset.objects.filter(
            pk=self.context.get("dataset_id") or 0).exists() else None
        with transaction.atomic():
            step.save(update_fields=["status", "started_at", "input_dataset"])
            self.run.current_step = step.index
            self.run.message = f"Step {step.index + 1} of {self.run.total_steps}: {step.label}"
            PipelineRun.objects.filter(pk=self.run.pk).update(current_step=step.index, message=self.run.message)
            _step_event(step, self.run)
        self.log(step, f"Started {step.label.lower()}" + (f" ({d})" if (d := step_kinds.describe(
            {"kind": step.kind, "options": step.options})) else ""))
        self.progress(step, 0.0, force=True)

    def finish_step(self, step: StepRun) -> None:
        _context_after(self.context, step)
        step.status = StepStatus.SUCCEEDED
        step.finished_at = timezone.now()
        step.progress = 100.0
        with transaction.atomic():
            step.save(update_fields=["status", "finished_at", "progress", "output_dataset", "model_version",
                                     "processing_job", "training_job", "metrics", "output"])
            self.run.context = dict(self.context)
            PipelineRun.objects.filter(pk=self.run.pk).update(context=self.run.context)
            _step_event(step, self.run)
        self.log(step, f"Succeeded in {step.duration:.1f} s")
        self.progress(step, 1.0, force=True)

    def end(self, step: StepRun | None, status: str, *, error: str = "", step_started: bool = True) -> None:
        """End the run (and its current step) as succeeded, failed or cancelled, once."""
        if step is not None and step_started:
            self.log(step, f"{'Cancelled' if status == JobStatus.CANCELLED else 'Failed'}: {error}")
        # A step that never started is skipped with the rest, not cancelled.
        _run_end(self.run.pk, status=status, error=error, step=step if step_started else None, context=self.context)

    # --- what the steps use --------------------------------------------------------------------------

    def input_dataset(self, step: StepRun) -> Dataset:
        """The dataset the step works on; waits while it is still being validated or profiled."""
        dataset_id = self.context.get("dataset_id")
        deadline = time.monotonic() + settings.PIPELINE_DATASET_WAIT
        waited = False
        while True:
            dataset = Dataset.objects.filter(pk=dataset_id or 0).first()
            if dataset is None:
                raise StepFailed(f"The input dataset (#{dataset_id}) no longer exists.")
            if not dataset.is_busy:
                break
            if not waited:
                self.log(step, f"Waiting for dataset #{dataset.pk} ({dataset.name}) to finish {dataset.status}")
                waited = True
            if self.cancel_requested():
                raise StepCancelled("Cancelled by a user.")
            if time.monotonic() > deadline:
                raise StepFailed(f"Dataset #{dataset.pk} ({dataset.name}) was still {dataset.status} after "
                                 f"{settings.PIPELINE_DATASET_WAIT} s.")
            time.sleep(POLL_SECONDS * 3)
        if dataset.status != Dataset.Status.READY:
            errors = " ".join(dataset.errors or [])
            raise StepFailed(f"Dataset #{dataset.pk} ({dataset.name}) is {dataset.status}" + (f": {errors}" if errors else "."))
        return dataset

    def model_version(self):
        from training.models import ModelVersion

        version = ModelVersion.objects.filter(pk=self.context.get("model_version_id") or 0).first()
        if version is None:
            raise StepFailed("No model version to work on: a train_model step must succeed before this step.")
        return version

    def wait_terminal(self, model, pk: int, *, cancel: Callable[[], None]):
        """Poll an inner job's row until it ends; cancels it (with its own service) when the run is."""
        asked = False
        while True:
            job = model.objects.get(pk=pk)
            if job.is_terminal:
                return job
            if not asked and self.cancel_requested():
                asked = True
                cancel()
            time.sleep(POLL_SECONDS)


def _run_end(run_id: int, *, status: str, error: str = "", step: StepRun | None = None, context: dict | None = None,
             from_statuses=(JobStatus.RUNNING,)) -> bool:
    """End a run once: its current step failed/cancelled, later queued steps skipped; events and
    activity on commit. False when the run had already ended (reaped, or ended elsewhere)."""
    fields = {"error": error[:5000], "cancel_requested": status == JobStatus.CANCELLED or None}
    fields = {k: v for k, v in fields.items() if v is not None}
    if context is not None:
        fields["context"] = context
    if step is not None and status != JobStatus.SUCCEEDED:
        fields["failed_step"] = step.kind if status == JobStatus.FAILED else ""
        fields["current_step"] = step.index
    if status == JobStatus.SUCCEEDED:
        fields["progress"] = 100.0
    with transaction.atomic():
        if not finish(PipelineRun, run_id, status=status, from_statuses=from_statuses, **fields):
            return False
        run = PipelineRun.objects.select_related("pipeline", "created_by").get(pk=run_id)
        if step is not None and status != JobStatus.SUCCEEDED:
            step_status = StepStatus.CANCELLED if status == JobStatus.CANCELLED else StepStatus.FAILED
            step.refresh_from_db(fields=["log"])
            step.status, step.error, step.finished_at = step_status, error[:5000], timezone.now()
            step.save(update_fields=["status", "error", "finished_at", "output_dataset", "model_version",
                                     "processing_job", "training_job", "metrics", "output", "input_dataset"])
            _step_event(step, run)
        for later in run.step_runs.filter(status__in=[StepStatus.QUEUED, StepStatus.RUNNING]).exclude(
                pk=getattr(step, "pk", None)):
            later.status = StepStatus.SKIPPED if later.status == StepStatus.QUEUED else StepStatus.FAILED
            later.save(update_fields=["status"])
            _step_event(later, run)
        done = run.step_runs.filter(status=StepStatus.SUCCEEDED).count()
        if status == JobStatus.SUCCEEDED:
            run.message = f"All {run.total_steps} steps succeeded in {run.duration or 0:.1f} s."
        elif status == JobStatus.CANCELLED:
            run.message = f"Cancelled after {done} of {run.total_steps} steps."
        else:
            where = f"step {step.index + 1} ({step.kind})" if step is not None else "a step"
            run.message = f"Failed at {where}: {error}"[:500]
        PipelineRun.objects.filter(pk=run_id).update(message=run.message[:500])
        _run_ended(run)
    return True


def _run_ended(run: PipelineRun, user=None) -> None:
    """The events, activity and alert of a run that has just ended (inside the ending transaction)."""
    if run.status == JobStatus.SUCCEEDED:
        publish_on_commit(catalog.PipelineProgress(
            pipeline_id=run.pipeline_id, run_id=run.pk, progress=100.0, status="succeeded",
            current_step=run.steps[-1]["kind"] if run.steps else "", step_index=max(0, run.total_steps - 1),
            total_steps=run.total_steps,
        ))
    _status_event(run)
    if run.status == JobStatus.FAILED:
        publish_on_commit(catalog.PipelineFailed(pipeline_id=run.pipeline_id, run_id=run.pk, error=run.error or "failed",
                                                 failed_step=run.failed_step or "unknown"))
    else:
        publish_on_commit(catalog.PipelineCompleted(pipeline_id=run.pipeline_id, run_id=run.pk, status=run.status,
                                                    message=run.message or run.status, duration=float(run.duration or 0.0)))
    severity = {"succeeded": "success", "failed": "error"}.get(run.status, "warning")
    activity_record(title=f"Pipeline run {run.status}: {run.pipeline.name}", action_type="pipeline_run",
                    user=user or run.created_by, status=run.status, severity_level=severity, duration=run.duration,
                    description=(run.message or "")[:500],
                    metadata={"pipeline_id": run.pipeline_id, "run_id": run.pk, "failed_step": run.failed_step or None})
    if run.status == JobStatus.FAILED:
        transaction.on_commit(lambda: _alert_raise(run), robust=True)
    pipeline_id = run.pipeline_id
    transaction.on_commit(lambda: pipeline_runs_dispatch(pipeline_id=pipeline_id), robust=True)


def _alert_raise(run: PipelineRun) -> None:
    """Tell whoever listens (monitoring raises its alert) that the run failed; the monitoring app's
    own failed-job check uses the same subject, so the two make one alert."""
    job_failed_send("pipeline_run", run)


# --- the steps -------------------------------------------------------------------------------------


def _step_validate_dataset(ex: _Execution, step: StepRun) -> None:
    dataset = ex.input_dataset(step)
    options = step.options
    quality = dataset.quality_score
    step.metrics = {"rows": dataset.row_count, "columns": dataset.column_count, "quality_score": quality}
    step.output = {"dataset_id": dataset.pk}
    ex.log(step, f"Dataset #{dataset.pk} {dataset.name}: {dataset.row_count} rows, {dataset.column_count} columns, "
                 f"quality {quality if quality is not None else 'unknown'}")
    missing = [c for c in options.get("required_columns") or [] if c not in (dataset.column_names or [])]
    if missing:
        raise StepFailed(f"Required columns missing from dataset #{dataset.pk}: {', '.join(missing)}.")
    minimum = options.get("min_quality_score")
    if minimum is not None:
        if quality is None or quality < minimum:
            raise StepFailed(f"Quality score {quality if quality is not None else 'unknown'} is below the minimum {minimum}.")
        ex.log(step, f"Quality {quality:.1f} ≥ {minimum}")


def _step_process_dataset(ex: _Execution, step: StepRun) -> None:
    from datasets.services import processing_job_cancel, processing_job_create, processing_job_run

    dataset = ex.input_dataset(step)
    operation, options = step.options["operation"], step.options.get("options") or {}
    try:
        job = processing_job_create(dataset=dataset, operation=operation, options=options, user=ex.run.created_by)
    except ValidationError as exc:
        raise StepFailed(f"The {operation} job was refused: {'; '.join(exc.messages)}") from None
    step.processing_job = job
    StepRun.objects.filter(pk=step.pk).update(processing_job=job)
    ex.log(step, f"Processing job #{job.pk} ({operation}) on dataset #{dataset.pk} created")

    def read():
        row = ProcessingJob.objects.filter(pk=job.pk).values("progress", "current_step").first()
        return (row["progress"], row["current_step"]) if row else None

    with ex.watching(step, read):
        processing_job_run(job_id=job.pk)  # returns at once when another worker claimed it first
        job = ex.wait_terminal(ProcessingJob, job.pk, cancel=lambda: processing_job_cancel(job=job))
    step.processing_job = job
    if job.status == JobStatus.CANCELLED:
        raise StepCancelled(f"Processing job #{job.pk} was cancelled.")
    if job.status != JobStatus.SUCCEEDED:
        raise StepFailed(f"Processing job #{job.pk} failed: {job.error or job.status}")
    outputs = (job.result or {}).get("outputs") or []
    chosen = next((o for o in outputs if o.get("label") == "train"), None) if operation == "split" else None
    chosen = chosen or (outputs[0] if outputs else None)
    if chosen is None:
        raise StepFailed(f"Processing job #{job.pk} produced no dataset.")
    output = Dataset.objects.get(pk=chosen["dataset_id"])
    if output.status != Dataset.Status.READY:
        raise StepFailed(f"The {chosen['label']} dataset #{output.pk} is {output.status}: {' '.join(output.errors or [])}")
    step.output_dataset = output
    summary = {k: v for k, v in (job.result or {}).items() if k != "outputs" and not isinstance(v, (dict, list))}
    step.output = {"outputs": outputs, "result": summary}
    step.metrics = {"rows_in": (job.result or {}).get("rows_in"), "rows_out": output.row_count}
    ex.log(step, f"Produced dataset #{output.pk} {output.name} ({output.row_count} rows)")


def _model_name(pipeline: Pipeline) -> str:
    name = pipeline.name.replace("/", "-").replace("\\", "-").strip() or f"pipeline-{pipeline.pk}"
    return name[:200]


def _step_train_model(ex: _Execution, step: StepRun) -> None:
    from training.models import ModelVersion, TrainingJob
    from training.services import Conflict as TrainingConflict
    from training.services import training_job_cancel, training_job_run, training_job_start

    dataset = ex.input_dataset(step)
    options = step.options
    try:
        job = training_job_start(
            dataset=dataset, target_column=options.get("target_column") or dataset.target_column,
            algorithm=options["algorithm"], epochs=options["epochs"], test_size=options.get("test_size", 0.2),
            task=options.get("task") or None, name=options.get("name") or _model_name(ex.run.pipeline),
            created_by=ex.run.created_by,
        )
    except ValidationError as exc:
        raise StepFailed(f"The training job was refused: {'; '.join(exc.messages)}") from None
    step.training_job = job
    StepRun.objects.filter(pk=step.pk).update(training_job=job)
    ex.log(step, f"Training job #{job.pk} ({job.algorithm}, {job.epochs} epochs) on dataset #{dataset.pk} created")

    def read():
        row = TrainingJob.objects.filter(pk=job.pk).values("progress", "message").first()
        return (row["progress"], row["message"]) if row else None

    def cancel():
        try:
            training_job_cancel(job=job)
        except TrainingConflict:
            pass

    with ex.watching(step, read):
        training_job_run(job_id=job.pk)  # returns at once when another worker claimed it first
        job = ex.wait_terminal(TrainingJob, job.pk, cancel=cancel)
    step.training_job = job
    if job.history:
        last = job.history[-1]
        loss, score = last.get("loss"), last.get("accuracy")
        ex.log(step, f"Epoch {last.get('epoch')}/{job.epochs} done" + (f": loss {loss:.4f}" if loss is not None else "")
               + (f", validation score {score:.4f}" if score is not None else ""))
    if job.status == JobStatus.CANCELLED:
        raise StepCancelled(f"Training job #{job.pk} was cancelled.")
    if job.status != JobStatus.SUCCEEDED:
        raise StepFailed(f"Training job #{job.pk} failed ({job.error_code or 'error'}): {job.error}")
    version = ModelVersion.objects.filter(training_job=job).first()
    if version is None:
        raise StepFailed(f"Training job #{job.pk} succeeded but registered no model version.")
    step.model_version = version
    step.metrics = dict(version.metrics or {})
    step.output = {"model": version.label, "validation_score": version.validation_score}
    ex.log(step, f"Registered {version.label}: validation score {version.validation_score:.4f}")


def _step_evaluate(ex: _Execution, step: StepRun) -> None:
    version = ex.model_version()
    metric, threshold = step.options["metric"], step.options["threshold"]
    value = (version.metrics or {}).get(metric)
    op = "≤" if metric in step_kinds.ERROR_METRICS else "≥"
    if value is None:
        step.metrics = {"metric": metric, "threshold": threshold, "value": None, "passed": False}
        raise StepFailed(f"Quality gate failed: {version.label} has no {metric} metric "
                         f"(it has: {', '.join(sorted(version.metrics or {})) or 'none'}).")
    passed = step_kinds.gate_passes(metric, value, threshold)
    step.model_version = version
    step.metrics = {"metric": metric, "value": value, "threshold": threshold, "passed": passed}
    ex.log(step, f"{version.label}: {metric} = {value:.4f} (gate: {op} {threshold})")
    if not passed:
        raise StepFailed(f"Quality gate failed: {metric} {value:.4f} is not {op} {threshold}.")
    ex.log(step, "Quality gate passed")


def _step_deploy_model(ex: _Execution, step: StepRun) -> None:
    from training.services import Conflict as TrainingConflict
    from training.services import model_version_deploy

    version = ex.model_version()
    if ex.context.get("gate_passed") is False:
        raise StepFailed(f"{version.label} did not pass its quality gate; it is not deployed.")
    try:
        deployment = model_version_deploy(version=version, user=ex.run.created_by)
    except TrainingConflict as exc:
        raise StepFailed(str(exc)) from None
    step.model_version = version
    step.output = {"model": version.label, "deployment_id": deployment.pk if deployment else None}
    ex.log(step, f"{version.label} is now serving" + ("" if deployment else " (it already was)"))


def anomaly_service():
    """(start, run) of the monitoring app's on-demand anomaly detection, looked up at run time (the
    monitoring app may not offer it); None when it is missing."""
    try:
        from monitoring import services as monitoring_services
    except ImportError:
        return None
    start = getattr(monitoring_services, "anomaly_detection_start", None)
    run = getattr(monitoring_services, "anomaly_detection_run", None)
    return (start, run) if callable(start) and callable(run) else None


def _step_detect_anomalies(ex: _Execution, step: StepRun) -> None:
    service = anomaly_service()
    if service is None:
        raise StepFailed("Anomaly detection is not available: the monitoring app has no on-demand anomaly "
                         "detection service (monitoring.services.anomaly_detection_start).")
    start, run = service
    dataset = ex.input_dataset(step)
    options = step.options
    try:
        detection = start(dataset=dataset, contamination=options.get("contamination", 0.05),
                          columns=options.get("columns") or None, user=ex.run.created_by)
    except ValidationError as exc:
        raise StepFailed(f"Anomaly detection was refused: {'; '.join(exc.messages)}") from None
    model = type(detection)
    step.output = {"anomaly_detection_id": detection.pk}
    ex.log(step, f"Anomaly detection #{detection.pk} on dataset #{dataset.pk} created")

    def read():
        row = model.objects.filter(pk=detection.pk).values("progress").first()
        return (row["progress"], "") if row else None

    with ex.watching(step, read):
        run(detection_id=detection.pk)  # returns at once when another worker claimed it first
        # It has no cancel of its own: a cancelled run stops after it, before the next step.
        detection = ex.wait_terminal(model, detection.pk, cancel=lambda: None)
    if detection.status != JobStatus.SUCCEEDED:
        raise StepFailed(f"Anomaly detection #{detection.pk} {detection.status}: {detection.error or 'no result'}")
    step.metrics = {"rows": detection.n_rows, "flagged": detection.n_flagged,
                    "share_flagged": detection.share_flagged, "max_score": detection.max_score}
    step.output = _jsonable({"anomaly_detection_id": detection.pk, "columns": detection.columns_used,
                             "top_rows": (detection.top_rows or [])[:5]})
    ex.log(step, f"{detection.n_flagged} of {detection.n_rows} rows flagged as anomalous "
                 f"({(detection.share_flagged or 0):.1%})")


def _jsonable(value):
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return {"result": str(value)}


RUNNERS: dict[str, Callable[[_Execution, StepRun], None]] = {
    step_kinds.VALIDATE_DATASET: _step_validate_dataset,
    step_kinds.PROCESS_DATASET: _step_process_dataset,
    step_kinds.TRAIN_MODEL: _step_train_model,
    step_kinds.EVALUATE: _step_evaluate,
    step_kinds.DEPLOY_MODEL: _step_deploy_model,
    step_kinds.DETECT_ANOMALIES: _step_detect_anomalies,
}


# =================================================================================================
# The reaper
# =================================================================================================


def pipeline_runs_reap_stale() -> int:
    """Runs whose worker stopped beating end `failed`, naming the step that was running."""
    reaped = 0
    for run in stale(PipelineRun).only("id"):
        step = StepRun.objects.filter(run_id=run.pk, status=StepStatus.RUNNING).order_by("index").first()
        where = f" during step {step.index + 1} ({step.kind})" if step is not None else ""
        error = f"The worker running this pipeline stopped responding (killed or out of memory){where}."
        if step is None:
            # Between two steps: name the next one, which never started.
            step = StepRun.objects.filter(run_id=run.pk, status=StepStatus.QUEUED).order_by("index").first()
        if _run_end(run.pk, status=JobStatus.FAILED, error=error, step=step):
            logger.warning("pipeline run %s reaped%s", run.pk, where)
            reaped += 1
    return reaped
