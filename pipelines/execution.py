"""Executing a pipeline run in a worker: the steps in order, each by the other apps' own services.

A processing or training job (or an anomaly detection) is created with its app's service, then run
inline in this process (it claims itself: if another worker already took the copy its on_commit
enqueue sent, the inline call returns at once) and waited for until it is terminal. A background
thread folds the inner job's progress into the run's percent while it runs. `Execution.execute()`
returns how the run ended; `services.pipeline_run_execute` records it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.db import connections, transaction
from django.utils import timezone

from datasets import selectors as datasets_selectors
from datasets import services as datasets_services
from mlops_dashboard import permissions
from mlops_dashboard.events import catalog, publish_on_commit
from mlops_dashboard.jobs import JobStatus
from monitoring import services as monitoring_services
from training import selectors as training_selectors
from training import services as training_services

from . import steps as step_kinds
from .models import Pipeline, PipelineRun, StepRun, StepStatus

logger = logging.getLogger(__name__)

# The share of a run's progress bar each kind of step takes (long steps take more).
STEP_WEIGHTS = {step_kinds.TRAIN_MODEL: 4, step_kinds.PROCESS_DATASET: 2, step_kinds.DETECT_ANOMALIES: 2}
POLL_SECONDS = 0.3  # how often a step reads its inner job's row while waiting
WATCH_SECONDS = 0.5  # how often the progress thread folds the inner job's progress in


class StepFailed(Exception):
    """The step cannot succeed; the message says why, for people."""


class RunEnded(Exception):
    """The run was reaped or ended elsewhere while a step ran: its steps are no longer this worker's."""


class StepCancelled(Exception):
    """The run was cancelled while this step ran."""


@dataclass(frozen=True)
class Outcome:
    """How an executed run ended: its status, why, and the step it ended at (None when none had)."""

    status: str
    error: str = ""
    step: StepRun | None = None
    context: dict = field(default_factory=dict)


def progress_of(steps: list[dict], index: int, fraction: float) -> float:
    """The run's percent when step `index` is `fraction` done."""
    weights = [STEP_WEIGHTS.get(s["kind"], 1) for s in steps]
    total = sum(weights) or 1
    done = sum(weights[:index]) + (weights[index] * max(0.0, min(1.0, fraction)) if index < len(weights) else 0)
    return round(100.0 * done / total, 2)


def context_after(context: dict, step: StepRun) -> None:
    """What a succeeded step hands the next one."""
    if step.kind == step_kinds.PROCESS_DATASET and step.output_dataset_id:
        context["dataset_id"] = step.output_dataset_id
    elif step.kind == step_kinds.TRAIN_MODEL and step.model_version_id:
        context["model_version_id"] = step.model_version_id
        context.pop("gate_passed", None)
    elif step.kind == step_kinds.EVALUATE:
        context["gate_passed"] = bool((step.metrics or {}).get("passed"))


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


def step_event(step: StepRun, run: PipelineRun, *, log: list[str] | None = None) -> None:
    publish_on_commit(catalog.PipelineStep(
        project_id=run.project_id, pipeline_id=run.pipeline_id, run_id=run.pk, step_index=step.index, kind=step.kind, status=step.status,
        log=list(log or []), output=step_output(step), error=step.error or None,
    ))


def run_actor(run: PipelineRun, *, action: str = "create", obj=None):
    """The user a run's steps act as, checked for `action` (a step calls the other apps' services as
    that user): the run's creator, or, for a run beat started, the pipeline's creator. Read afresh
    for every step, so a role lost mid-run stops the next step. StepFailed (naming the role) when
    that user is gone or lacks the role: steps never fall back to the system's rights."""
    scheduled = run.created_by_id is None and run.trigger == PipelineRun.Trigger.SCHEDULE
    who = "the pipeline's creator" if scheduled else "the run's creator"
    user_id = run.pipeline.created_by_id if scheduled else run.created_by_id
    obj = obj if obj is not None else run.pipeline
    project = run.project
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first() if user_id else None
    if user is None:
        needed = permissions.needed_role(None, action, obj)
        raise StepFailed(f"Steps run as {who}, and there is none (deleted, deactivated, or made by the system): the step needs "
                         f"a user with the {needed} role in project “{project.name}”. Run it again yourself.")
    try:
        permissions.authorize(user, action, obj)
    except (PermissionDenied, Http404):
        raise StepFailed(f"Steps run as {who} ({user.get_username()}), who may not do this any more: "
                         f"{permissions.denial(user, action, obj)}") from None
    return user


class Execution:
    """The state of one run while a worker executes it: its steps, context and log writing."""

    def __init__(self, run: PipelineRun):
        self.run = run
        self.context = dict(run.context or {})
        self.lock = threading.Lock()
        self.last_progress = (-1.0, 0.0)
        self.actor = None  # the user the current step acts as (run_actor), set before each step

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
            step_event(step, self.run, log=new)

    def progress(self, step: StepRun, fraction: float, *, force: bool = False) -> None:
        percent = progress_of(self.run.steps, step.index, fraction)
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
                project_id=self.run.project_id, pipeline_id=self.run.pipeline_id, run_id=self.run.pk, progress=percent, status="running",
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

    def execute(self) -> Outcome | None:
        """Run the steps in order; how the run ended, or None when it was reaped or ended elsewhere."""
        steps = list(self.run.step_runs.order_by("index"))
        for step in steps:
            if step.status == StepStatus.SUCCEEDED:  # reused from the run this one retries
                context_after(self.context, step)
                continue
            if not self.still_running():
                return None  # reaped or ended elsewhere
            if self.cancel_requested():
                return self.end(step, JobStatus.CANCELLED, error="Cancelled by a user.", step_started=False)
            try:
                self.start_step(step)
            except RunEnded:
                return None
            try:
                self.actor = run_actor(self.run)
                RUNNERS[step.kind](self, step)
            except StepCancelled as exc:
                return self.end(step, JobStatus.CANCELLED, error=str(exc) or "Cancelled by a user.")
            except StepFailed as exc:
                return self.end(step, JobStatus.FAILED, error=str(exc))
            except Exception as exc:  # a bug or a time limit: the run still ends, naming the step
                logger.exception("pipeline run %s: step %s (%s) failed unexpectedly", self.run.pk, step.index, step.kind)
                return self.end(step, JobStatus.FAILED,
                                error=f"The step failed unexpectedly: {type(exc).__name__}: {exc}"[:2000])
            try:
                self.finish_step(step)
            except RunEnded:
                return None
        return self.end(None, JobStatus.SUCCEEDED)

    def write_step(self, step: StepRun, *fields: str) -> None:
        """Write these fields of the step while its run is still running (never a bare save(): the
        reaper may have ended the run, and its steps, meanwhile); RunEnded when it has."""
        values = {name: getattr(step, StepRun._meta.get_field(name).attname) for name in fields}
        if not StepRun.objects.filter(pk=step.pk, run__status=JobStatus.RUNNING).update(**values):
            raise RunEnded(self.run.pk)

    def start_step(self, step: StepRun) -> None:
        step.status = StepStatus.RUNNING
        step.started_at = timezone.now()
        dataset_id = self.context.get("dataset_id")
        step.input_dataset_id = dataset_id if datasets_selectors.dataset_exists(dataset_id) else None
        with transaction.atomic():
            self.write_step(step, "status", "started_at", "input_dataset")
            self.run.current_step = step.index
            self.run.message = f"Step {step.index + 1} of {self.run.total_steps}: {step.label}"
            PipelineRun.objects.filter(pk=self.run.pk).update(current_step=step.index, message=self.run.message)
            step_event(step, self.run)
        self.log(step, f"Started {step.label.lower()}" + (f" ({d})" if (d := step_kinds.describe(
            {"kind": step.kind, "options": step.options})) else ""))
        self.progress(step, 0.0, force=True)

    def finish_step(self, step: StepRun) -> None:
        context_after(self.context, step)
        step.status = StepStatus.SUCCEEDED
        step.finished_at = timezone.now()
        step.progress = 100.0
        with transaction.atomic():
            self.write_step(step, "status", "finished_at", "progress", "output_dataset", "model_version",
                            "processing_job", "training_job", "metrics", "output")
            self.run.context = dict(self.context)
            PipelineRun.objects.filter(pk=self.run.pk).update(context=self.run.context)
            step_event(step, self.run)
        self.log(step, f"Succeeded in {step.duration:.1f} s")
        self.progress(step, 1.0, force=True)

    def end(self, step: StepRun | None, status: str, *, error: str = "", step_started: bool = True) -> Outcome:
        """How the run (and its current step) ends: succeeded, failed or cancelled."""
        if step is not None and step_started:
            self.log(step, f"{'Cancelled' if status == JobStatus.CANCELLED else 'Failed'}: {error}")
        # A step that never started is skipped with the rest, not cancelled.
        return Outcome(status=status, error=error, step=step if step_started else None, context=self.context)

    # --- what the steps use --------------------------------------------------------------------------

    def input_dataset(self, step: StepRun):
        """The dataset the step works on; waits while it is still being validated or profiled."""
        dataset_id = self.context.get("dataset_id")
        deadline = time.monotonic() + settings.PIPELINE_DATASET_WAIT
        waited = False
        while True:
            dataset = datasets_selectors.dataset_get(dataset_id)
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
        if not datasets_selectors.dataset_is_ready(dataset):
            errors = " ".join(dataset.errors or [])
            raise StepFailed(f"Dataset #{dataset.pk} ({dataset.name}) is {dataset.status}" + (f": {errors}" if errors else "."))
        return dataset

    def model_version(self):
        version = training_selectors.model_version_get(self.context.get("model_version_id"))
        if version is None:
            raise StepFailed("No model version to work on: a train_model step must succeed before this step.")
        return version

    def wait_terminal(self, read: Callable[[], object], *, cancel: Callable[[], None]):
        """Poll an inner job (`read()` returns its row) until it ends; cancels it (with its own
        service) when the run is."""
        asked = False
        while True:
            job = read()
            if job.is_terminal:
                return job
            if not asked and self.cancel_requested():
                asked = True
                cancel()
            time.sleep(POLL_SECONDS)


# --- the steps -------------------------------------------------------------------------------------


def _step_validate_dataset(ex: Execution, step: StepRun) -> None:
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


def _job_step(ex: Execution, step: StepRun, *, label: str, refused: str, create: Callable[[], object],
              created: Callable[[object], None], run: Callable[[int], object], read: Callable[[object], object],
              progress: Callable[[object], tuple[float, str] | None], cancel: Callable[[object], None] | None,
              failure: Callable[[object], str], ended: Callable[[object], None] | None = None):
    """Create an inner job with its app's service, run it here while a thread folds its progress into
    the run's (`progress(job)`: percent, message), wait until it ends (`read(job)`: its row now), and
    return it once it has succeeded. A cancelled run cancels the job with `cancel` (None: the job has
    none, and the run stops after it); a job that did not succeed fails the step (`failure` says
    why), or cancels it when the job was cancelled."""
    try:
        job = create()
    except ValidationError as exc:
        raise StepFailed(f"{refused} was refused: {'; '.join(exc.messages)}") from None
    except (PermissionDenied, Http404) as exc:  # the other app's own check, as the run's actor
        raise StepFailed(f"{refused} was refused: {exc or 'not allowed'}") from None
    created(job)
    created_job = job
    with ex.watching(step, lambda: progress(created_job)):
        run(job.pk)  # returns at once when another worker claimed it first
        job = ex.wait_terminal(lambda: read(created_job), cancel=lambda: cancel(created_job) if cancel else None)
    if ended is not None:
        ended(job)
    if job.status == JobStatus.CANCELLED and cancel is not None:
        raise StepCancelled(f"{label} #{job.pk} was cancelled.")
    if job.status != JobStatus.SUCCEEDED:
        raise StepFailed(failure(job))
    return job


def _step_process_dataset(ex: Execution, step: StepRun) -> None:
    dataset = ex.input_dataset(step)
    operation, options = step.options["operation"], step.options.get("options") or {}

    def created(job):
        step.processing_job = job
        StepRun.objects.filter(pk=step.pk).update(processing_job=job)
        ex.log(step, f"Processing job #{job.pk} ({operation}) on dataset #{dataset.pk} created")

    job = _job_step(
        ex, step, label="Processing job", refused=f"The {operation} job", created=created,
        create=lambda: datasets_services.processing_job_create(dataset=dataset, operation=operation, options=options,
                                                               user=ex.actor),
        run=lambda pk: datasets_services.processing_job_run(job_id=pk),
        read=lambda job: datasets_selectors.processing_job_get(job.pk),
        progress=lambda job: datasets_selectors.processing_job_progress(job.pk),
        cancel=lambda job: datasets_services.processing_job_cancel(user=None, job=job),  # the run's cancel was checked
        ended=lambda job: setattr(step, "processing_job", job),
        failure=lambda job: f"Processing job #{job.pk} failed: {job.error or job.status}",
    )
    outputs = (job.result or {}).get("outputs") or []
    chosen = next((o for o in outputs if o.get("label") == "train"), None) if operation == "split" else None
    chosen = chosen or (outputs[0] if outputs else None)
    if chosen is None:
        raise StepFailed(f"Processing job #{job.pk} produced no dataset.")
    output = datasets_selectors.dataset_get(chosen["dataset_id"])
    if output is None:
        raise StepFailed(f"The {chosen['label']} dataset #{chosen['dataset_id']} no longer exists.")
    if not datasets_selectors.dataset_is_ready(output):
        raise StepFailed(f"The {chosen['label']} dataset #{output.pk} is {output.status}: {' '.join(output.errors or [])}")
    step.output_dataset = output
    summary = {k: v for k, v in (job.result or {}).items() if k != "outputs" and not isinstance(v, (dict, list))}
    step.output = {"outputs": outputs, "result": summary}
    step.metrics = {"rows_in": (job.result or {}).get("rows_in"), "rows_out": output.row_count}
    ex.log(step, f"Produced dataset #{output.pk} {output.name} ({output.row_count} rows)")


def _model_name(pipeline: Pipeline) -> str:
    name = pipeline.name.replace("/", "-").replace("\\", "-").strip() or f"pipeline-{pipeline.pk}"
    return name[:200]


def _training_job_cancel(job) -> None:
    try:
        # The system cancels the inner job: whoever cancelled the run was checked for that.
        training_services.training_job_cancel(user=None, job=job)
    except training_services.Conflict:
        pass  # it had just ended


def _step_train_model(ex: Execution, step: StepRun) -> None:
    dataset = ex.input_dataset(step)
    options = step.options

    def create():
        return training_services.training_job_start(
            dataset=dataset, target_column=options.get("target_column") or dataset.target_column,
            algorithm=options["algorithm"], epochs=options["epochs"], test_size=options.get("test_size", 0.2),
            task=options.get("task") or None, name=options.get("name") or _model_name(ex.run.pipeline),
            user=ex.actor,
        )

    def created(job):
        step.training_job = job
        StepRun.objects.filter(pk=step.pk).update(training_job=job)
        ex.log(step, f"Training job #{job.pk} ({job.algorithm}, {job.epochs} epochs) on dataset #{dataset.pk} created")

    def ended(job):
        step.training_job = job
        if job.history:
            last = job.history[-1]
            loss, score = last.get("loss"), last.get("accuracy")
            ex.log(step, f"Epoch {last.get('epoch')}/{job.epochs} done" + (f": loss {loss:.4f}" if loss is not None else "")
                   + (f", validation score {score:.4f}" if score is not None else ""))

    job = _job_step(
        ex, step, label="Training job", refused="The training job", create=create, created=created, ended=ended,
        run=lambda pk: training_services.training_job_run(job_id=pk),
        read=lambda job: training_selectors.training_job_get(job.pk),
        progress=lambda job: training_selectors.training_job_progress(job.pk),
        cancel=_training_job_cancel,
        failure=lambda job: f"Training job #{job.pk} failed ({job.error_code or 'error'}): {job.error}",
    )
    version = training_selectors.model_version_of_job(job)
    if version is None:
        raise StepFailed(f"Training job #{job.pk} succeeded but registered no model version.")
    step.model_version = version
    step.metrics = dict(version.metrics or {})
    step.output = {"model": version.label, "validation_score": version.validation_score}
    ex.log(step, f"Registered {version.label}: validation score {version.validation_score:.4f}")


def _step_evaluate(ex: Execution, step: StepRun) -> None:
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


def _step_deploy_model(ex: Execution, step: StepRun) -> None:
    version = ex.model_version()
    if ex.context.get("gate_passed") is False:
        raise StepFailed(f"{version.label} did not pass its quality gate; it is not deployed.")
    user = run_actor(ex.run, action="deploy", obj=version)  # deploying needs the maintainer role
    try:
        deployment = training_services.model_version_deploy(version=version, user=user)
    except (training_services.Conflict, PermissionDenied) as exc:
        raise StepFailed(str(exc)) from None
    step.model_version = version
    step.output = {"model": version.label, "deployment_id": deployment.pk if deployment else None}
    ex.log(step, f"{version.label} is now serving" + ("" if deployment else " (it already was)"))


def _detection_progress(detection) -> tuple[float, str] | None:
    row = type(detection).objects.filter(pk=detection.pk).values("progress").first()
    return (row["progress"], "") if row else None


def _step_detect_anomalies(ex: Execution, step: StepRun) -> None:
    dataset = ex.input_dataset(step)
    options = step.options

    def created(detection):
        step.output = {"anomaly_detection_id": detection.pk}
        ex.log(step, f"Anomaly detection #{detection.pk} on dataset #{dataset.pk} created")

    detection = _job_step(
        ex, step, label="Anomaly detection", refused="Anomaly detection", created=created,
        create=lambda: monitoring_services.anomaly_detection_start(
            dataset=dataset, contamination=options.get("contamination", 0.05),
            columns=options.get("columns") or None, user=ex.actor),
        run=lambda pk: monitoring_services.anomaly_detection_run(detection_id=pk),
        read=lambda d: type(d).objects.get(pk=d.pk), progress=_detection_progress,
        cancel=None,  # it has no cancel of its own: a cancelled run stops after it, before the next step
        failure=lambda d: f"Anomaly detection #{d.pk} {d.status}: {d.error or 'no result'}",
    )
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


RUNNERS: dict[str, Callable[[Execution, StepRun], None]] = {
    step_kinds.VALIDATE_DATASET: _step_validate_dataset,
    step_kinds.PROCESS_DATASET: _step_process_dataset,
    step_kinds.TRAIN_MODEL: _step_train_model,
    step_kinds.EVALUATE: _step_evaluate,
    step_kinds.DEPLOY_MODEL: _step_deploy_model,
    step_kinds.DETECT_ANOMALIES: _step_detect_anomalies,
}

