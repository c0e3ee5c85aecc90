"""Datasets (uploaded or produced by a processing job) and the processing jobs over them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from mlops_dashboard.jobs import JobFields
from mlops_dashboard.models import DESCRIPTION_MAX_LENGTH


def dataset_upload_path(instance, filename) -> str:
    # Never a path from the client: a generated name under datasets/.
    return f"datasets/{uuid.uuid4().hex}.csv"


class Dataset(models.Model):
    class Status(models.TextChoices):
        VALIDATING = "validating", "Validating"
        PROFILING = "profiling", "Profiling"
        READY = "ready", "Ready"
        INVALID = "invalid", "Invalid"

    project = models.ForeignKey("mlops_dashboard.Project", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=DESCRIPTION_MAX_LENGTH)
    file = models.FileField(upload_to=dataset_upload_path, max_length=300)
    original_filename = models.CharField(max_length=255, blank=True)
    file_size = models.BigIntegerField(default=0)
    target_column = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.VALIDATING, db_index=True)
    errors = models.JSONField(default=list, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    encoding = models.CharField(max_length=32, blank=True)
    delimiter = models.CharField(max_length=4, blank=True)
    row_count = models.BigIntegerField(null=True, blank=True)
    column_count = models.IntegerField(null=True, blank=True)
    column_names = models.JSONField(default=list, blank=True)
    profile = models.JSONField(null=True, blank=True)
    quality = models.JSONField(null=True, blank=True)
    quality_score = models.FloatField(null=True, blank=True)
    preview = models.JSONField(null=True, blank=True)
    validation_time = models.FloatField(null=True, blank=True)
    profiling_time = models.FloatField(null=True, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    source_job = models.ForeignKey(
        "ProcessingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="outputs"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Touched while a worker validates or profiles; a stale one means the worker died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    @property
    def is_busy(self) -> bool:
        return self.status in (self.Status.VALIDATING, self.Status.PROFILING)

    def lineage(self) -> list[Dataset]:
        """This dataset's ancestors, oldest first, then itself."""
        chain, node, seen = [], self, set()
        while node is not None and node.pk not in seen:
            seen.add(node.pk)
            chain.append(node)
            node = node.parent
        return list(reversed(chain))


class ProcessingJob(JobFields):
    class Operation(models.TextChoices):
        CLEAN = "clean", "Clean (duplicates, missing values)"
        SPLIT = "split", "Train/test split"
        SCALE = "scale", "Scale numeric columns"

    project = models.ForeignKey("mlops_dashboard.Project", on_delete=models.PROTECT, related_name="+")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="jobs")
    operation = models.CharField(max_length=16, choices=Operation.choices)
    options = models.JSONField(default=dict, blank=True)
    current_step = models.CharField(max_length=200, blank=True)
    result = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.get_operation_display()} of {self.dataset_id} ({self.status})"
