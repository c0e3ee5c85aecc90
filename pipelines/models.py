"""Pipelines (an input dataset and an ordered list of steps), their runs and each run's steps.

A PipelineRun moves queued → running → succeeded | failed | cancelled (mlops_dashboard.jobs). It
copies the pipeline's steps when it is created, with one StepRun per step; a StepRun moves
queued → running → succeeded | failed | cancelled, or ends `skipped` when an earlier step stopped
the run. A retry is a new run (`retry_of`) whose leading StepRuns are copies (`reused`) of the steps
that had succeeded.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from mlops_dashboard.jobs import JobFields
from mlops_dashboard.models import DESCRIPTION_MAX_LENGTH

from . import steps as step_kinds


# Runs of one pipeline at once: each holds a worker for up to its time limit, so a pipeline may not
# take over the workers of every other one.
MAX_CONCURRENT_RUNS = 10


def default_max_concurrent_runs() -> int:
    return max(1, min(settings.PIPELINE_MAX_CONCURRENT_RUNS, MAX_CONCURRENT_RUNS))


class Pipeline(models.Model):
    project = models.ForeignKey("mlops_dashboard.Project", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=DESCRIPTION_MAX_LENGTH)
    dataset = models.ForeignKey("datasets.Dataset", null=True, on_delete=models.SET_NULL, related_name="pipelines",
                                help_text="The input dataset of the first step.")
    # [{"kind": "train_model", "options": {...}}, ...], checked by pipelines.steps.clean_steps.
    steps = models.JSONField(default=list)
    schedule = models.CharField(max_length=120, blank=True,
                                help_text='A cron expression (minute hour day-of-month month day-of-week), e.g. "0 3 * * *".')
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", null=True, blank=True,
                                         on_delete=models.SET_NULL, related_name="+", editable=False)
    max_concurrent_runs = models.PositiveIntegerField(
        default=default_max_concurrent_runs, validators=[MinValueValidator(1), MaxValueValidator(MAX_CONCURRENT_RUNS)],
        help_text="Runs over this limit wait queued until a running one ends.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="pipelines")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="pipeline_name_unique_per_project")]

    def __str__(self):
        return self.name


class StepStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"


STEP_TERMINAL = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED})


class PipelineRun(JobFields):
    class Trigger(models.TextChoices):
        MANUAL = "manual", "Manual"
        SCHEDULE = "schedule", "Schedule"
        RETRY = "retry", "Retry"

    project = models.ForeignKey("mlops_dashboard.Project", on_delete=models.PROTECT, related_name="+")
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    dataset = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+", help_text="The pipeline's input dataset when the run was created.")
    # The definition the run executes (the pipeline's steps when it was created).
    steps = models.JSONField(default=list)
    # What the steps hand each other: {"dataset_id", "model_version_id", "gate_passed"}.
    context = models.JSONField(default=dict, blank=True)
    current_step = models.IntegerField(null=True, blank=True)
    failed_step = models.CharField(max_length=40, blank=True)
    message = models.CharField(max_length=500, blank=True)
    # Set when the run was handed to a worker (it holds one of the pipeline's run slots from then).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="pipeline_runs")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["pipeline", "status"])]

    def __str__(self):
        return f"Run #{self.pk} of {self.pipeline_id} ({self.status})"

    @property
    def total_steps(self) -> int:
        return len(self.steps or [])


class StepRun(models.Model):
    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="step_runs")
    index = models.PositiveIntegerField()
    kind = models.CharField(max_length=32, choices=[(k, step_kinds.KIND_LABELS[k]) for k in step_kinds.KINDS])
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # What the step worked on and produced.
    input_dataset = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    output_dataset = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+")
    model_version = models.ForeignKey("training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    processing_job = models.ForeignKey("datasets.ProcessingJob", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+")
    training_job = models.ForeignKey("training.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    metrics = models.JSONField(default=dict, blank=True)
    output = models.JSONField(default=dict, blank=True)
    log = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    reused = models.BooleanField(default=False, help_text="Copied from the run this one retries.")
    reused_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="step_run_unique_index")]

    def __str__(self):
        return f"Step {self.index} ({self.kind}) of run #{self.run_id}"

    @property
    def label(self) -> str:
        return step_kinds.KIND_LABELS.get(self.kind, self.kind)

    @property
    def duration(self) -> float | None:
        if not self.started_at:
            return None
        from django.utils import timezone

        end = self.finished_at or timezone.now()
        return round((end - self.started_at).total_seconds(), 3)

    @property
    def is_terminal(self) -> bool:
        return self.status in STEP_TERMINAL
