"""The step kinds of a pipeline and the checks of their options, done when a pipeline is saved.

A step is `{"kind": <kind>, "options": {...}}`. `clean_steps()` returns the checked, complete list
(defaults filled in) or raises StepsError whose messages name the step they are about:
`steps[2] (train_model): epochs must be between 1 and 500`.

Columns are checked against the input dataset's columns when the dataset has been profiled (its
`column_names` are known); a pipeline may be defined on a dataset that is still being validated,
and its steps are checked again by the real services when they run. Every step keeps the columns
of its input (clean, split and scale change rows and values, not columns), so the pipeline's
dataset's columns are the ones every step sees.
"""

from __future__ import annotations

from datasets import selectors as datasets_selectors
from training import selectors as training_selectors

VALIDATE_DATASET = "validate_dataset"
PROCESS_DATASET = "process_dataset"
TRAIN_MODEL = "train_model"
EVALUATE = "evaluate"
DEPLOY_MODEL = "deploy_model"
DETECT_ANOMALIES = "detect_anomalies"

KINDS = (VALIDATE_DATASET, PROCESS_DATASET, TRAIN_MODEL, EVALUATE, DEPLOY_MODEL, DETECT_ANOMALIES)
KIND_LABELS = {
    VALIDATE_DATASET: "Validate dataset",
    PROCESS_DATASET: "Process dataset",
    TRAIN_MODEL: "Train model",
    EVALUATE: "Quality gate",
    DEPLOY_MODEL: "Deploy model",
    DETECT_ANOMALIES: "Detect anomalies",
}
# Metrics a model version records (training.trainer); error metrics pass when ≤ the threshold.
SCORE_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc", "r2")
ERROR_METRICS = ("log_loss", "mae", "rmse")
METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc", "log_loss", "r2", "mae", "rmse")
TASKS = ("classification", "regression")
MAX_STEPS = 20  # a run's steps share one task's time limit and one worker
MAX_EPOCHS = 500
DEFAULT_EPOCHS = 10
MAX_COLUMN_NAME = 255  # the length of a target column (datasets refuse longer column names)


class StepsError(ValueError):
    """The steps are not valid: `messages` has one line per problem, each naming its step."""

    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages))
        self.messages = messages


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def gate_passes(metric: str, value: float, threshold: float) -> bool:
    return value <= threshold if metric in ERROR_METRICS else value >= threshold


def _unknown(options: dict, allowed: set[str], add) -> None:
    for key in options:
        if key not in allowed:
            add(f"unknown option {key!r} (allowed: {', '.join(sorted(allowed)) or 'none'})")


def _columns_option(value, name, add, columns) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
        add(f"{name} must be a list of column names")
        return None
    if any(len(c) > MAX_COLUMN_NAME for c in value):
        add(f"{name}: a column name is at most {MAX_COLUMN_NAME} characters")
        return None
    if columns is not None:
        unknown = [c for c in value if c not in columns]
        if unknown:
            add(f"{name}: not columns of the dataset: {', '.join(unknown[:10])}")
    return value


def _validate_dataset(options, add, ctx) -> dict:
    _unknown(options, {"min_quality_score", "required_columns"}, add)
    out = {}
    score = options.get("min_quality_score")
    if score is not None:
        if not _is_number(score) or not 0 <= score <= 100:
            add("min_quality_score must be a number between 0 and 100")
        out["min_quality_score"] = score
    out["required_columns"] = _columns_option(options.get("required_columns"), "required_columns", add,
                                              ctx["columns"]) or []
    return out


def _process_dataset(options, add, ctx) -> dict:
    # Either {"operation": "clean", "options": {...}} or the operation's options beside "operation".
    operation = options.get("operation")
    if operation not in datasets_selectors.OPERATIONS:
        add(f"operation must be one of {', '.join(datasets_selectors.OPERATIONS)}")
        return {"operation": operation, "options": {}}
    if "options" in options:
        _unknown(options, {"operation", "options"}, add)
        inner = options["options"]
    else:
        inner = {k: v for k, v in options.items() if k != "operation"}
    if inner is None:
        inner = {}
    columns = ctx["columns"]
    if columns is None:  # not profiled yet: check everything but the column names
        referenced = inner.get("columns") if isinstance(inner, dict) else None
        columns = list(referenced) if isinstance(referenced, list) else []
    try:
        cleaned = datasets_selectors.processing_options_clean(operation, inner, columns=columns, target_column=ctx["target"])
    except datasets_selectors.ProcessingOptionsError as exc:
        for key, message in exc.errors.items():
            add(f"{key}: {message}")
        return {"operation": operation, "options": inner if isinstance(inner, dict) else {}}
    return {"operation": operation, "options": cleaned}


def _train_model(options, add, ctx) -> dict:
    allowed = {"algorithm", "target_column", "epochs", "task", "test_size", "name"}
    _unknown(options, allowed, add)
    out = {}
    algorithms = training_selectors.algorithm_names()
    algorithm = options.get("algorithm")
    if algorithm not in algorithms:
        add(f"algorithm must be one of {', '.join(algorithms)}")
    out["algorithm"] = algorithm
    target = options.get("target_column") or ctx["target"]
    if not target or not isinstance(target, str):
        add("target_column is required (the dataset has no target column)")
    elif len(target) > MAX_COLUMN_NAME:
        add(f"target_column is at most {MAX_COLUMN_NAME} characters")
    elif ctx["columns"] is not None and target not in ctx["columns"]:
        add(f"target_column {target!r} is not a column of the dataset")
    out["target_column"] = target
    epochs = options.get("epochs", DEFAULT_EPOCHS)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        add(f"epochs must be between 1 and {MAX_EPOCHS}")
    out["epochs"] = epochs
    task = options.get("task") or None
    if task is not None and task not in TASKS:
        add(f"task must be one of {', '.join(TASKS)} (or left out to infer it)")
    if task:
        out["task"] = task
    if options.get("test_size") is not None:
        test_size = options["test_size"]
        if not _is_number(test_size) or not 0 < test_size < 1:
            add("test_size must be a number strictly between 0 and 1 (e.g. 0.2)")
        out["test_size"] = test_size
    name = options.get("name") or ""
    if name:
        if not isinstance(name, str) or "/" in name or "\\" in name or not name.strip() or len(name) > 200:
            add("name must be a model name of at most 200 characters, without slashes")
        else:
            out["name"] = name.strip()
    return out


def _evaluate(options, add, ctx) -> dict:
    _unknown(options, {"metric", "threshold"}, add)
    if not ctx["trained"]:
        add("must come after a train_model step")
    metric = options.get("metric")
    if metric not in METRICS:
        add(f"metric must be one of {', '.join(METRICS)}")
    threshold = options.get("threshold")
    if not _is_number(threshold):
        add("threshold must be a number")
    return {"metric": metric, "threshold": threshold}


def _deploy_model(options, add, ctx) -> dict:
    _unknown(options, set(), add)
    if not ctx["trained"]:
        add("must come after a train_model step")
    return {}


def _detect_anomalies(options, add, ctx) -> dict:
    _unknown(options, {"contamination", "columns"}, add)
    contamination = options.get("contamination", 0.05)
    if not _is_number(contamination) or not 0 < contamination <= 0.5:
        add("contamination must be a number in (0, 0.5] (the expected share of anomalous rows)")
    out = {"contamination": contamination}
    columns = _columns_option(options.get("columns"), "columns", add, ctx["columns"])
    if columns:
        out["columns"] = columns
    return out


CHECKS = {
    VALIDATE_DATASET: _validate_dataset,
    PROCESS_DATASET: _process_dataset,
    TRAIN_MODEL: _train_model,
    EVALUATE: _evaluate,
    DEPLOY_MODEL: _deploy_model,
    DETECT_ANOMALIES: _detect_anomalies,
}


def clean_steps(steps, *, columns: list[str] | None, target_column: str = "") -> list[dict]:
    """Checked steps with their defaults filled in; raises StepsError naming each bad step.

    `columns` are the input dataset's columns, or None when they are not known yet.
    """
    if not isinstance(steps, list):
        raise StepsError(["steps must be a list of {kind, options} objects"])
    if not steps:
        raise StepsError(["a pipeline needs at least one step"])
    if len(steps) > MAX_STEPS:
        raise StepsError([f"a pipeline has at most {MAX_STEPS} steps"])
    messages: list[str] = []
    cleaned: list[dict] = []
    ctx = {"columns": list(columns) if columns else None, "target": target_column or "", "trained": False}
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            messages.append(f"steps[{index}]: must be an object with a kind and options")
            continue
        kind = step.get("kind")
        if kind not in KINDS:
            messages.append(f"steps[{index}]: kind must be one of {', '.join(KINDS)}")
            continue

        def add(message, index=index, kind=kind):
            messages.append(f"steps[{index}] ({kind}): {message}")

        for key in step:
            if key not in ("kind", "options"):
                add(f"unknown key {key!r} (a step has a kind and options)")
        options = step.get("options") or {}
        if not isinstance(options, dict):
            add("options must be an object")
            options = {}
        cleaned.append({"kind": kind, "options": CHECKS[kind](options, add, ctx)})
        if kind == TRAIN_MODEL:
            ctx["trained"] = True
    if messages:
        raise StepsError(messages)
    return cleaned


def describe(step: dict) -> str:
    """One line about a step, for lists and logs."""
    kind, o = step.get("kind"), step.get("options") or {}
    if kind == PROCESS_DATASET:
        return f"{o.get('operation')}"
    if kind == TRAIN_MODEL:
        return f"{o.get('algorithm')} on {o.get('target_column')}, {o.get('epochs')} epochs"
    if kind == EVALUATE:
        op = "≤" if o.get("metric") in ERROR_METRICS else "≥"
        return f"{o.get('metric')} {op} {o.get('threshold')}"
    if kind == VALIDATE_DATASET:
        parts = []
        if o.get("min_quality_score") is not None:
            parts.append(f"quality ≥ {o['min_quality_score']}")
        if o.get("required_columns"):
            parts.append(f"{len(o['required_columns'])} required column(s)")
        return ", ".join(parts) or "dataset is ready"
    if kind == DETECT_ANOMALIES:
        return f"contamination {o.get('contamination')}"
    return ""
