"""Every write of the pipelines app: define pipelines (with their cron schedule), start, execute,
cancel, retry and reap runs, and the events that announce them.

Execution: one Celery task per run (`pipelines.pipeline_run_execute`) claims the run (a second delivery
does nothing), beats while it runs, and executes the steps in order (`pipelines.execution`) by
calling the other apps' real services. Cancel sets the run's flag and cancels the current inner job
with that job's own cancel service, so the step stops as the job's own cancel does.

Runs of one pipeline are limited to `max_concurrent_runs`: a run over the limit waits `queued`;
`pipeline_runs_dispatch` (serialized by a lock on the pipeline row) hands the oldest queued runs to
workers when a slot is free. It is called when a run is created and when one ends, and by beat
(`pipelines.pipeline_runs_kick`) as a safety net.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from datasets import selectors as datasets_selectors
from datasets import services as datasets_services
from mlops_dashboard import permissions, projects
from mlops_dashboard.activity import activity_record
from mlops_dashboard.audit import audit_record, changes_summary
from mlops_dashboard.events import catalog, publish_on_commit
from mlops_dashboard.jobs import JobStatus, broker_queue_empty, claim, finish, heartbeat, job_failed_send, stale
from mlops_dashboard.models import Project
from training import services as training_services

from . import steps as step_kinds
from .execution import Execution, context_after, progress_of, step_event
from .models import Pipeline, PipelineRun, StepRun, StepStatus
from .schedules import SCHEDULED_TASK, periodic_task_delete, schedule_sync, validate_schedule  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

# A run handed to a worker this long ago and still queued lost its message: send it again.
REENQUEUE_AFTER = timedelta(seconds=120)


class Conflict(Exception):
    """The request is valid but the object's state does not allow it (the API answers 409)."""


# =================================================================================================
# Defining pipelines
# =================================================================================================


def pipeline_steps_clean(*, steps, dataset) -> list[dict]:
    """The checked steps for this input dataset (or None); ValidationError({"steps": [...]}) naming
    each bad step."""
    ready = dataset is not None and datasets_selectors.dataset_is_ready(dataset) and dataset.column_names
    try:
        return step_kinds.clean_steps(
            steps, columns=list(dataset.column_names) if ready else None,
            target_column=dataset.target_column if dataset is not None else "",
        )
    except step_kinds.StepsError as exc:
        raise ValidationError({"steps": exc.messages}) from None


def _pipeline_check(pipeline: Pipeline) -> None:
    errors = {}
    for check in (_dataset_in_project, _name_free):
        try:
            check(pipeline)
        except ValidationError as exc:
            errors.update(exc.message_dict)
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


def _project_of_create(user, project, dataset):
    """The project a new pipeline goes to: the one given, checked for the editor role (the system,
    user None, may name any; without one it takes the dataset's)."""
    project_id = getattr(project, "pk", project)
    if user is None:
        if project_id not in (None, ""):
            return Project.objects.get(pk=project_id)
        return dataset.project if dataset is not None else projects.default_project()
    return projects.project_for_create(user, project_id)


def _dataset_in_project(pipeline: Pipeline) -> None:
    """A pipeline reads only its own project's data: its input dataset must be in its project."""
    dataset = pipeline.dataset
    if dataset is not None and dataset.project_id != pipeline.project_id:
        raise ValidationError({"dataset": f"Dataset {dataset.pk} is in another project; a pipeline of project "
                                          f"“{pipeline.project.name}” starts from one of that project's datasets."})


def _name_free(pipeline: Pipeline) -> None:
    """Names are unique per project (the constraint says so too; this says it in words)."""
    taken = Pipeline.objects.filter(project_id=pipeline.project_id, name=pipeline.name).exclude(pk=pipeline.pk)
    if pipeline.name and taken.exists():
        raise ValidationError({"name": f"Project “{pipeline.project.name}” already has a pipeline named "
                                       f"{pipeline.name!r}."})


def pipeline_create(*, user, name: str, dataset, steps: list, project=None, description: str = "",
                    schedule: str = "", max_concurrent_runs: int | None = None) -> Pipeline:
    """Define a pipeline in `project` (an id or a Project; see projects.project_for_create: editor
    role, required when the user may create in several). Its dataset must be in that project."""
    project = _project_of_create(user, project, dataset)
    pipeline = Pipeline(
        project=project, name=(name or "").strip(), description=description or "", dataset=dataset, steps=steps,
        schedule=schedule or "", created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    if max_concurrent_runs is not None:
        pipeline.max_concurrent_runs = max_concurrent_runs
    _pipeline_check(pipeline)
    with transaction.atomic():
        pipeline.save()
        schedule_sync(pipeline)
        audit_record(user=user, action="create", obj=pipeline, summary=_steps_summary(pipeline.steps))
        publish_on_commit(catalog.PipelineCreated(project_id=pipeline.project_id, pipeline_id=pipeline.pk,
                                                  name=pipeline.name))
        activity_record(title=f"Pipeline created: {pipeline.name}", action_type="pipeline_create",
                        user=pipeline.created_by, description=_steps_summary(pipeline.steps),
                        metadata={"pipeline_id": pipeline.pk}, project=pipeline.project_id)
    return pipeline


EDITABLE = ("name", "description", "dataset", "steps", "schedule", "max_concurrent_runs")


def _definition(pipeline: Pipeline) -> dict:
    return {"name": pipeline.name, "description": pipeline.description, "dataset": pipeline.dataset_id,
            "steps": _steps_summary(pipeline.steps), "schedule": pipeline.schedule,
            "max_concurrent_runs": pipeline.max_concurrent_runs}


def pipeline_update(*, user, pipeline: Pipeline, **changes) -> Pipeline:
    """Change any of name, description, dataset, steps, schedule, max_concurrent_runs (the steps are
    checked again against the, possibly new, dataset). Runs already created keep their own copy.
    Its creator (editor) or a maintainer; the project does not change."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise TypeError(f"pipeline_update() got unexpected fields: {', '.join(sorted(unknown))}")
    permissions.authorize(user, "change", pipeline)
    before = _definition(pipeline)
    for field, value in changes.items():
        if field in ("name", "description", "schedule"):
            value = (value or "").strip() if field == "name" else (value or "")
        elif field == "max_concurrent_runs" and value is None:
            continue
        setattr(pipeline, field, value)
    if "dataset" in changes:
        _pipeline_check(pipeline)
    with transaction.atomic():
        pipeline.save()
        schedule_sync(pipeline)
        audit_record(user=user, action="update", obj=pipeline, summary=changes_summary(before, _definition(pipeline)))
        publish_on_commit(catalog.PipelineUpdated(project_id=pipeline.project_id, pipeline_id=pipeline.pk,
                                                  name=pipeline.name))
        # A higher limit may free a slot for a queued run.
        pk = pipeline.pk
        transaction.on_commit(lambda: pipeline_runs_dispatch(pipeline_id=pk), robust=True)
    return pipeline


def pipeline_delete(*, user, pipeline: Pipeline) -> None:
    """Delete a pipeline, its runs and its schedule (its creator with the editor role, or a
    maintainer); refused (Conflict) while a run is active."""
    permissions.authorize(user, "delete", pipeline)
    if pipeline.runs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).exists():
        raise Conflict(f"Pipeline {pipeline.name!r} has a queued or running run: cancel it first.")
    pk, name, project_id = pipeline.pk, pipeline.name, pipeline.project_id
    with transaction.atomic():
        task = pipeline.periodic_task
        audit_record(user=user, action="delete", obj=pipeline, summary=_steps_summary(pipeline.steps))
        pipeline.delete()
        if task is not None:
            periodic_task_delete(task)
        publish_on_commit(catalog.PipelineDeleted(project_id=project_id, pipeline_id=pk, name=name))
        activity_record(title=f"Pipeline deleted: {name}", action_type="pipeline_delete", user=user,
                        severity_level="warning", metadata={"pipeline_id": pk}, project=project_id)


def _steps_summary(steps: list) -> str:
    return " → ".join(step["kind"] for step in steps)


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
    publish_on_commit(catalog.PipelineStatus(project_id=run.project_id, pipeline_id=run.pipeline_id, run_id=run.pk,
                                             status=run.status, data=_run_data(run, **extra)))


def pipeline_run_start(*, user, pipeline: Pipeline, trigger: str = PipelineRun.Trigger.MANUAL,
                       retry_of: PipelineRun | None = None, project=None) -> PipelineRun:
    """Record a queued run with one StepRun per step and hand it to a worker when a slot is free.
    Needs the editor role in the pipeline's project (`user` None: beat's schedule); the run's project
    is the pipeline's (a different `project` is a 400)."""
    permissions.authorize(user, "create", pipeline)
    project = projects.parent_project(pipeline, getattr(project, "pk", project))
    if pipeline.dataset_id is None:
        raise ValidationError({"dataset": f"Pipeline {pipeline.name!r} has no input dataset (was it deleted?)."})
    if not pipeline.steps:
        raise ValidationError({"steps": f"Pipeline {pipeline.name!r} has no steps."})
    run = PipelineRun(
        project=project, pipeline=pipeline, trigger=trigger, retry_of=retry_of, dataset_id=pipeline.dataset_id,
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
            run.progress = progress_of(run.steps, len(reused), 0.0)
            run.save(update_fields=["context", "progress"])
        audit_record(user=user, action="retry" if retry_of is not None else "run", obj=run,
                     summary=f"{trigger} run of {pipeline.name}" + (f", retrying run #{retry_of.pk}" if retry_of else ""))
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
        context_after(context, copy)
    run.context = context
    return copied


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
    from .tasks import pipeline_run_execute

    try:
        pipeline_run_execute.apply_async(args=[run_id], soft_time_limit=settings.PIPELINE_SOFT_TIME_LIMIT,
                                time_limit=settings.PIPELINE_HARD_TIME_LIMIT)
    except Exception:  # the broker is down: the run stays queued and beat's kick sends it again
        logger.exception("could not enqueue pipeline run %s", run_id)
        PipelineRun.objects.filter(pk=run_id, status=JobStatus.QUEUED).update(enqueued_at=None)


def _broker_has_waiting_messages() -> bool:
    """True when messages wait in the broker's queue (or it cannot be read): a run handed to a
    worker long ago may only be waiting behind them, and sending it again would grow the queue."""
    try:
        return not broker_queue_empty()
    except Exception:
        logger.warning("could not look at the broker's queue; no run sent again", exc_info=True)
        return True


def pipeline_runs_kick() -> int:
    """Beat's safety net: dispatch every pipeline with queued runs; resend runs whose message was lost
    (handed to a worker long ago, still queued, and nothing left waiting in the broker)."""
    stuck = PipelineRun.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=timezone.now() - REENQUEUE_AFTER)
    if stuck.exists() and _broker_has_waiting_messages():
        stuck = stuck.none()  # their messages may still be waiting: a worker will get to them
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
        # Started by the system; its steps act as the pipeline's creator (execution.run_actor).
        return pipeline_run_start(user=None, pipeline=pipeline, trigger=PipelineRun.Trigger.SCHEDULE)
    except ValidationError as exc:
        logger.warning("scheduled run of pipeline %s not started: %s", pipeline_id, exc)
        return None


def pipeline_run_cancel(*, user, run: PipelineRun) -> PipelineRun:
    """A queued run is cancelled at once; a running one stops as its current step's job stops.
    The run's creator (editor) or a maintainer."""
    permissions.authorize(user, "cancel", run)
    with transaction.atomic():
        if finish(PipelineRun, run.pk, status=JobStatus.CANCELLED, from_statuses=(JobStatus.QUEUED,),
                  cancel_requested=True, error="Cancelled before it started.",
                  message="Cancelled before it started."):
            run.refresh_from_db()
            for step in run.step_runs.filter(status=StepStatus.QUEUED):
                step.status = StepStatus.SKIPPED
                step.save(update_fields=["status"])
                step_event(step, run)
            audit_record(user=user, action="cancel", obj=run, summary="queued → cancelled")
            _run_ended(run, user=user)
            return run
        if not PipelineRun.objects.filter(pk=run.pk, status=JobStatus.RUNNING).update(cancel_requested=True):
            status = PipelineRun.objects.filter(pk=run.pk).values_list("status", flat=True).first()
            raise Conflict(f"Run #{run.pk} has already ended ({status}).")
        audit_record(user=user, action="cancel", obj=run, summary="running: cancel requested")
    step = run.step_runs.filter(status=StepStatus.RUNNING).select_related("training_job", "processing_job").first()
    if step is not None:
        _inner_job_cancel(step)
    run.refresh_from_db()
    return run


def _inner_job_cancel(step: StepRun) -> None:
    """Cancel a step's processing or training job with that job's own cancel service."""
    step.refresh_from_db(fields=["training_job", "processing_job"])
    if step.training_job_id:
        try:
            # The system cancels the inner job: the run's cancel was checked (pipeline_run_cancel).
            training_services.training_job_cancel(user=None, job=step.training_job)
        except training_services.Conflict:
            pass  # it had just ended
    if step.processing_job_id:
        try:
            datasets_services.processing_job_cancel(user=None, job=step.processing_job)
        except ValidationError:
            pass


def pipeline_run_retry(*, user, run: PipelineRun) -> PipelineRun:
    """A new run of the pipeline's current definition that reuses the outputs of the leading steps
    of `run` that succeeded (and are still defined the same way), starting at the first other one.
    Needs the editor role, like any run."""
    permissions.authorize(user, "create", run.pipeline)
    run.refresh_from_db(fields=["status"])
    if run.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise Conflict(f"Only failed or cancelled runs can be retried; run #{run.pk} is {run.status}.")
    return pipeline_run_start(pipeline=run.pipeline, user=user, trigger=PipelineRun.Trigger.RETRY, retry_of=run)


# =================================================================================================
# Executing a run (in a Celery worker)
# =================================================================================================


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
                            user=run.created_by, status="running", project=run.project_id,
                            description=f"Run #{run.pk} ({run.trigger}): {_steps_summary(run.steps)}",
                            metadata={"pipeline_id": run.pipeline_id, "run_id": run.pk})
        with heartbeat(PipelineRun, run_id):
            try:
                outcome = Execution(run).execute()
                if outcome is not None:
                    _run_end(run_id, status=outcome.status, error=outcome.error, step=outcome.step,
                             context=outcome.context)
            except Exception as exc:  # never leave the run running (the reaper would, later)
                logger.exception("pipeline run %s failed unexpectedly", run_id)
                step = StepRun.objects.filter(run_id=run_id, status=StepStatus.RUNNING).first()
                _run_end(run_id, status=JobStatus.FAILED, step=step,
                         error=f"The run failed unexpectedly: {type(exc).__name__}: {exc}"[:2000])
    finally:
        pipeline_runs_dispatch(pipeline_id=run.pipeline_id)


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
            step_event(step, run)
        for later in run.step_runs.filter(status__in=[StepStatus.QUEUED, StepStatus.RUNNING]).exclude(
                pk=getattr(step, "pk", None)):
            later.status = StepStatus.SKIPPED if later.status == StepStatus.QUEUED else StepStatus.FAILED
            later.save(update_fields=["status"])
            step_event(later, run)
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
            project_id=run.project_id, pipeline_id=run.pipeline_id, run_id=run.pk, progress=100.0, status="succeeded",
            current_step=run.steps[-1]["kind"] if run.steps else "", step_index=max(0, run.total_steps - 1),
            total_steps=run.total_steps,
        ))
    _status_event(run)
    if run.status == JobStatus.FAILED:
        publish_on_commit(catalog.PipelineFailed(project_id=run.project_id, pipeline_id=run.pipeline_id, run_id=run.pk,
                                                 error=run.error or "failed",
                                                 failed_step=run.failed_step or "unknown"))
    else:
        publish_on_commit(catalog.PipelineCompleted(project_id=run.project_id, pipeline_id=run.pipeline_id, run_id=run.pk,
                                                    status=run.status,
                                                    message=run.message or run.status, duration=float(run.duration or 0.0)))
    severity = {"succeeded": "success", "failed": "error"}.get(run.status, "warning")
    activity_record(title=f"Pipeline run {run.status}: {run.pipeline.name}", action_type="pipeline_run",
                    user=user or run.created_by, status=run.status, severity_level=severity, duration=run.duration,
                    project=run.project_id,
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
