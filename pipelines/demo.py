"""The demo pipeline for a first run: over the breast-cancer demo dataset (datasets.demo),
validate → clean → train (sgd, 20 epochs) → quality gate at accuracy 0.9 → deploy.

The dataset may still be validating when this runs (bootstrap loads it a moment earlier): the
steps name its known columns, and a run waits for the dataset to be ready before its first step.
"""

from datasets import selectors as datasets_selectors

from . import services
from .models import Pipeline

NAME = "Breast cancer demo pipeline"
DATASET = "Breast cancer (demo)"
MODEL_NAME = "breast-cancer-pipeline"

STEPS = [
    {"kind": "validate_dataset", "options": {"min_quality_score": 50, "required_columns": ["target"]}},
    {"kind": "process_dataset", "options": {"operation": "clean", "options": {"drop_duplicates": True,
                                                                            "missing": "fill_median"}}},
    {"kind": "train_model", "options": {"algorithm": "sgd", "target_column": "target", "epochs": 20,
                                        "task": "classification", "name": MODEL_NAME}},
    {"kind": "evaluate", "options": {"metric": "accuracy", "threshold": 0.9}},
    {"kind": "deploy_model", "options": {}},
]


def load(stdout=None):
    """Create the demo pipeline once (idempotent); returns it, or None when it exists or can't be made."""
    dataset = datasets_selectors.dataset_by_name(DATASET)
    if dataset is None:
        if stdout is not None:
            stdout.write(f"No demo pipeline: the dataset {DATASET!r} is missing.\n")
        return None
    if Pipeline.objects.filter(project_id=dataset.project_id, name=NAME).exists():
        return None
    # Made by the system, in the demo dataset's project; a run's steps act as whoever presses Run.
    pipeline = services.pipeline_create(
        user=None, project=dataset.project_id, name=NAME, dataset=dataset, steps=STEPS,
        description="Validate the breast-cancer data, clean it, train a linear model, check its accuracy "
                    "(≥ 0.9) and deploy it. Press Run and watch each step.",
    )
    if stdout is not None:
        stdout.write(f"Created the demo pipeline {NAME!r} (open Pipelines and press Run).\n")
    return pipeline
