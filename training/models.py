"""Training jobs, the model registry (versions of named models) and their deployments.

A TrainingJob moves queued → running → succeeded | failed | cancelled (mlops_dashboard.jobs). Each
succeeded job registers one ModelVersion: version numbers count per name (1, 2, 3 ...), and at most
one version of a name is `active` (serving the name's predictions) at a time. Deploying a version
records a Deployment; a rollback is deploying an older version.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from mlops_dashboard.jobs import JobFields

# Kept in step with training.trainer (not imported here: it pulls in scikit-learn and pandas).
ALGORITHMS = ("sgd", "mlp", "random_forest", "gradient_boosting")
STAGES = ("data_preparation", "feature_engineering", "model_training", "validation", "finalization")
MAX_EPOCHS = 500


def validate_model_name(value: str) -> None:
    # The name is part of a URL (/api/models/by-name/<name>/predict/).
    if "/" in value or "\\" in value or not value.strip():
        raise ValidationError("A model name cannot be blank or contain slashes.")


def validate_test_size(value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValidationError("The test size is a fraction of the rows, strictly between 0 and 1.")


def artifact_path(instance, filename) -> str:
    # Never a name from a client: artifacts are written by workers only, under models/.
    return f"models/{uuid.uuid4().hex}.joblib"


class TrainingJob(JobFields):
    class Task(models.TextChoices):
        CLASSIFICATION = "classification", "Classification"
        REGRESSION = "regression", "Regression"

    class Algorithm(models.TextChoices):
        SGD = "sgd", "SGD (linear)"
        MLP = "mlp", "Neural network (MLP)"
        RANDOM_FOREST = "random_forest", "Random forest"
        GRADIENT_BOOSTING = "gradient_boosting", "Gradient boosting"

    class Sampling(models.TextChoices):
        ALL = "all", "All rows"
        RANDOM = "random", "Random sample"
        STRATIFIED = "stratified", "Stratified sample"

    class Stage(models.TextChoices):
        DATA_PREPARATION = "data_preparation", "Data preparation"
        FEATURE_ENGINEERING = "feature_engineering", "Feature engineering"
        MODEL_TRAINING = "model_training", "Model training"
        VALIDATION = "validation", "Validation"
        FINALIZATION = "finalization", "Finalization"

    project = models.ForeignKey("mlops_dashboard.Project", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200, validators=[validate_model_name],
                            help_text="Name of the model this job registers a version of.")
    dataset = models.ForeignKey("datasets.Dataset", null=True, on_delete=models.SET_NULL, related_name="training_jobs")
    dataset_name = models.CharField(max_length=200, blank=True, help_text="The dataset's name when the job started.")
    target_column = models.CharField(max_length=255)
    # Blank until the trainer infers it (when the job was started without one).
    task = models.CharField(max_length=16, choices=Task.choices, blank=True)
    algorithm = models.CharField(max_length=32, choices=Algorithm.choices)
    epochs = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(MAX_EPOCHS)])
    test_size = models.FloatField(default=0.2, validators=[validate_test_size])

    stage = models.CharField(max_length=32, choices=Stage.choices, blank=True)
    current_epoch = models.PositiveIntegerField(default=0)
    current_loss = models.FloatField(null=True, blank=True)
    live_accuracy = models.FloatField(null=True, blank=True, help_text="Validation accuracy (R² for regression).")
    estimated_time_remaining = models.FloatField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True)
    # One entry per finished epoch: {"epoch", "loss", "accuracy", "duration"}.
    history = models.JSONField(default=list, blank=True)

    error_code = models.CharField(max_length=32, blank=True)
    stage_failed = models.CharField(max_length=32, blank=True)
    suggestions = models.JSONField(default=list, blank=True)

    metrics = models.JSONField(null=True, blank=True)
    final_accuracy = models.FloatField(null=True, blank=True)
    validation_score = models.FloatField(null=True, blank=True)
    training_time = models.FloatField(null=True, blank=True)
    # What it trained on: all the dataset's rows, or a sample of them (TRAINING_MAX_ROWS).
    rows_total = models.PositiveBigIntegerField(null=True, blank=True, help_text="Rows in the dataset's file.")
    rows_used = models.PositiveBigIntegerField(null=True, blank=True, help_text="Rows it read to train and validate.")
    sampling = models.CharField(max_length=16, choices=Sampling.choices, blank=True)

    soft_time_limit = models.PositiveIntegerField(null=True, blank=True)
    time_limit = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="training_jobs")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Training #{self.pk} {self.name} ({self.status})"

    @property
    def total_epochs(self) -> int:
        return self.epochs


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        INACTIVE = "inactive", "Inactive"
        TRAINING = "training", "Training"
        ERROR = "error", "Error"

    project = models.ForeignKey("mlops_dashboard.Project", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200, validators=[validate_model_name], db_index=True)
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.INACTIVE, db_index=True)
    algorithm = models.CharField(max_length=32, choices=TrainingJob.Algorithm.choices)
    task = models.CharField(max_length=16, choices=TrainingJob.Task.choices)
    target_column = models.CharField(max_length=255)
    metrics = models.JSONField(default=dict, blank=True)
    final_accuracy = models.FloatField(null=True, blank=True, help_text="Score on the training split.")
    validation_score = models.FloatField(null=True, blank=True, help_text="Accuracy (or R²) on the held-out split.")
    feature_schema = models.JSONField(default=list, blank=True)
    classes = models.JSONField(null=True, blank=True)
    dropped_columns = models.JSONField(default=list, blank=True)
    n_train = models.PositiveIntegerField(default=0)
    n_test = models.PositiveIntegerField(default=0)
    training_time = models.FloatField(null=True, blank=True)

    dataset = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="model_versions")
    training_job = models.OneToOneField(TrainingJob, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="model_version")
    artifact = models.FileField(upload_to=artifact_path, max_length=300)
    artifact_sha256 = models.CharField(max_length=64)
    artifact_size = models.BigIntegerField(default=0)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", help_text="Who started the training that made it.")
    prediction_count = models.BigIntegerField(default=0)
    last_prediction_at = models.DateTimeField(null=True, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name", "version"], name="model_version_unique_per_name"),
            # At most one version serves a name (names are a project's own).
            models.UniqueConstraint(fields=["project", "name"], condition=models.Q(status="active"),
                                    name="model_version_one_active_per_name"),
        ]

    def __str__(self):
        return f"{self.name} v{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


class Deployment(models.Model):
    class Action(models.TextChoices):
        DEPLOY = "deploy", "Deploy"
        ROLLBACK = "rollback", "Rollback"

    project = models.ForeignKey("mlops_dashboard.Project", on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="deployments")
    previous = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                 help_text="The version that was serving the name before.")
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.DEPLOY)
    deployed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="model_deployments")
    deployed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-deployed_at", "-id"]

    def __str__(self):
        return f"{self.get_action_display()} of {self.model_version} at {self.deployed_at:%Y-%m-%d %H:%M}"
