"""Training: load a CSV, check the target, split, fit epoch by epoch while reporting progress,
evaluate on the held-out rows and package the fitted Pipeline(preprocessor, model) as the artifact.

No Django here: :func:`train` is tested and benchmarked on its own.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline

from .errors import TrainingCancelled, TrainingError
from .features import (
    _build_preprocessor,
    _coerce_frame,
    _describe_columns,
    _float,
    _is_bool_series,
    _is_integral,
    _py,
    infer_task,
)

ALGORITHMS = ("sgd", "mlp", "random_forest", "gradient_boosting")
TASKS = ("classification", "regression")
STAGES = ("data_preparation", "feature_engineering", "model_training", "validation", "finalization")

# Overall progress (percent) at the start of each stage.
STAGE_PROGRESS = {
    "data_preparation": 0.0,
    "feature_engineering": 10.0,
    "model_training": 20.0,
    "validation": 90.0,
    "finalization": 97.0,
}
TRAINING_SPAN = (20.0, 90.0)

MAX_CLASSES = 100
MIN_ROWS = 10
TREES_PER_EPOCH = 10  # random_forest
BOOST_ITERS_PER_EPOCH = 10  # gradient_boosting
EVAL_SAMPLE = 20_000  # rows used for per-epoch loss / live accuracy
TAIL_SECONDS = 1.0  # rough constant added to the ETA for validation + finalization


@dataclass
class ProgressUpdate:
    stage: str
    progress: float  # overall 0..100
    current_epoch: int | None = None
    total_epochs: int | None = None
    current_loss: float | None = None
    live_accuracy: float | None = None  # validation accuracy (classification) or R^2 (regression)
    estimated_time_remaining: float | None = None  # seconds
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingResult:
    task: str
    algorithm: str
    metrics: dict[str, float]
    final_accuracy: float
    validation_score: float
    history: list[dict[str, Any]]
    training_time: float
    feature_schema: list[dict[str, Any]]
    classes: list[Any] | None
    artifact_bytes: bytes = field(repr=False)
    artifact_sha256: str
    model_size: int
    n_train: int
    n_test: int
    target_column: str = ""
    dropped_columns: list[dict[str, str]] = field(default_factory=list)
    # The fitted Pipeline itself (same object that was serialized), for callers that
    # want to use it without re-loading the bytes. Not part of summary().
    pipeline: Any = field(default=None, repr=False, compare=False)

    def summary(self) -> dict[str, Any]:
        """Everything except the artifact bytes and the pipeline object (JSON-serialisable)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)
                if f.name not in ("artifact_bytes", "pipeline")}


class ScaledTargetRegressor(RegressorMixin, BaseEstimator):
    """Wrap a regressor trained on a standardised target; predicts in original units."""

    # Stored artifacts pickle this class under the path it had before the trainer became a package.
    __module__ = "training.trainer"

    def __init__(self, regressor=None, y_mean: float = 0.0, y_scale: float = 1.0):
        self.regressor = regressor
        self.y_mean = y_mean
        self.y_scale = y_scale

    def fit(self, X, y):
        y = np.asarray(y, dtype=float)
        self.y_mean = float(np.mean(y))
        self.y_scale = float(np.std(y)) or 1.0
        self.regressor.fit(X, (y - self.y_mean) / self.y_scale)
        return self

    def __sklearn_is_fitted__(self):
        return self.regressor is not None and hasattr(self.regressor, "n_features_in_")

    def predict(self, X):
        return np.asarray(self.regressor.predict(X), dtype=float) * self.y_scale + self.y_mean


def _make_model(algorithm: str, task: str, random_state: int):
    clf = task == "classification"
    if algorithm == "sgd":
        if clf:
            return SGDClassifier(loss="log_loss", alpha=1e-4, learning_rate="invscaling", eta0=0.1,
                                 random_state=random_state)
        return SGDRegressor(alpha=1e-4, random_state=random_state)
    if algorithm == "mlp":
        kw = dict(hidden_layer_sizes=(64, 32), learning_rate_init=0.01, alpha=1e-4,
                  random_state=random_state)
        return MLPClassifier(**kw) if clf else MLPRegressor(**kw)
    if algorithm == "random_forest":
        kw = dict(n_estimators=0, warm_start=True, bootstrap=True,
                  min_samples_leaf=2 if clf else 3, random_state=random_state, n_jobs=1)
        return RandomForestClassifier(**kw) if clf else RandomForestRegressor(**kw)
    if algorithm == "gradient_boosting":
        kw = dict(max_iter=0, warm_start=True, early_stopping=False, learning_rate=0.1,
                  random_state=random_state)
        return HistGradientBoostingClassifier(**kw) if clf else HistGradientBoostingRegressor(**kw)
    raise TrainingError(
        f"Unknown algorithm {algorithm!r}.",
        code="INVALID_ALGORITHM",
        suggestions=[f"Choose one of: {', '.join(ALGORITHMS)}."],
    )


def _nearest(name: str, options: list[str]) -> list[str]:
    lowered = {o.lower().strip(): o for o in options}
    if name.lower().strip() in lowered:
        return [lowered[name.lower().strip()]]
    return difflib.get_close_matches(name, options, n=3, cutoff=0.6)


class _Reporter:
    def __init__(self, on_progress):
        self._cb = on_progress

    def __call__(self, **kw):
        if self._cb is not None:
            self._cb(ProgressUpdate(**kw))


def _validate_params(task, algorithm, epochs, test_size) -> str | None:
    if algorithm not in ALGORITHMS:
        raise TrainingError(
            f"Unknown algorithm {algorithm!r}.",
            code="INVALID_ALGORITHM",
            suggestions=[f"Choose one of: {', '.join(ALGORITHMS)}."],
        )
    if task in (None, "", "auto"):
        task = None
    elif task not in TASKS:
        raise TrainingError(
            f"Unknown task {task!r}.",
            code="INVALID_PARAMETERS",
            suggestions=["Use 'classification', 'regression', or leave it empty to infer it from the target."],
        )
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise TrainingError(f"epochs must be a positive integer, got {epochs!r}.", code="INVALID_PARAMETERS",
                            suggestions=["Use at least 1 epoch."])
    if not (0.0 < float(test_size) < 1.0):
        raise TrainingError(f"test_size must be between 0 and 1 (exclusive), got {test_size!r}.",
                            code="INVALID_PARAMETERS", suggestions=["A value like 0.2 is typical."])
    return task


def _load_csv(csv_path: str, encoding: str, delimiter: str) -> pd.DataFrame:
    try:
        return pd.read_csv(csv_path, encoding=encoding, sep=delimiter, low_memory=False)
    except UnicodeDecodeError as exc:
        raise TrainingError(
            f"The file could not be decoded as {encoding}: {exc.reason}.",
            code="INVALID_DATA",
            suggestions=["Re-upload the file saved as UTF-8, or pick the right encoding (e.g. latin-1)."],
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise TrainingError("The CSV file is empty.", code="INVALID_DATA",
                            suggestions=["Upload a file with a header row and data rows."]) from exc
    except pd.errors.ParserError as exc:
        raise TrainingError(
            f"The CSV file could not be parsed: {exc}",
            code="INVALID_DATA",
            suggestions=[f"Check that the delimiter is {delimiter!r} and that quoting is consistent."],
        ) from exc


def _prepare_target(df: pd.DataFrame, target_column: str, task: str | None):
    if target_column not in df.columns:
        columns = [str(c) for c in df.columns]
        close = _nearest(target_column, columns)
        suggestions = [f"Did you mean {c!r}?" for c in close]
        suggestions.append("Available columns: " + ", ".join(columns[:30]) + (" ..." if len(columns) > 30 else ""))
        raise TrainingError(f"Target column {target_column!r} is not in the dataset.", code="INVALID_TARGET",
                            suggestions=suggestions)
    df = df[df[target_column].notna()].reset_index(drop=True)
    y_raw = df[target_column]
    if len(df) == 0:
        raise TrainingError(f"Target column {target_column!r} has no values.", code="INVALID_TARGET",
                            suggestions=["Choose a column that is filled in for most rows."])
    n_unique = int(y_raw.nunique())
    if n_unique < 2:
        raise TrainingError(
            f"Target column {target_column!r} has a single value ({_py(y_raw.iloc[0])!r}); there is nothing to learn.",
            code="INVALID_TARGET",
            suggestions=["Choose a target column with at least two different values."],
        )
    if task is None:
        task = infer_task(y_raw)
    is_bool = _is_bool_series(y_raw)
    if task == "regression":
        if is_bool or not pd.api.types.is_numeric_dtype(y_raw):
            raise TrainingError(
                f"Regression needs a numeric target, but {target_column!r} is not numeric.",
                code="INVALID_TARGET",
                suggestions=["Use task 'classification' for this column, or choose a numeric target."],
            )
        return df, y_raw.astype(float).to_numpy(), task, None
    # classification
    if n_unique > MAX_CLASSES:
        suggestions = ["Group rare values into broader classes, or choose another target."]
        if pd.api.types.is_numeric_dtype(y_raw) and not is_bool:
            suggestions.insert(0, "This looks like a continuous value: try task 'regression'.")
        raise TrainingError(
            f"Target column {target_column!r} has {n_unique} classes; at most {MAX_CLASSES} are supported.",
            code="INVALID_TARGET",
            suggestions=suggestions,
        )
    if is_bool:
        y = np.asarray([bool(v) for v in y_raw], dtype=bool)
    elif pd.api.types.is_numeric_dtype(y_raw) and _is_integral(y_raw):
        y = y_raw.astype("int64").to_numpy()
    elif pd.api.types.is_numeric_dtype(y_raw):
        y = y_raw.astype(float).to_numpy()
    else:
        y = np.asarray([str(v) for v in y_raw], dtype=object)
    values, counts = np.unique(y, return_counts=True)
    singletons = [_py(v) for v, c in zip(values, counts) if c < 2]
    if singletons:
        shown = ", ".join(repr(v) for v in singletons[:10]) + (" ..." if len(singletons) > 10 else "")
        raise TrainingError(
            f"Some classes of {target_column!r} have a single row ({shown}); each class needs at least 2 rows.",
            code="INVALID_TARGET",
            suggestions=["Remove or merge the rare classes, or add more rows for them."],
        )
    return df, y, task, [_py(v) for v in values]


def _split(X: pd.DataFrame, y: np.ndarray, task: str, test_size: float, random_state: int):
    n = len(y)
    if n < MIN_ROWS:
        raise TrainingError(f"Only {n} usable rows; at least {MIN_ROWS} are needed.", code="INVALID_DATA",
                            suggestions=["Upload more data."])
    stratify = None
    if task == "classification":
        _, counts = np.unique(y, return_counts=True)
        n_test = math.ceil(test_size * n)
        if counts.min() >= 2 and len(counts) <= n_test and len(counts) <= n - n_test:
            stratify = y
    try:
        return train_test_split(X, y, test_size=test_size, random_state=random_state, stratify=stratify)
    except ValueError:
        return train_test_split(X, y, test_size=test_size, random_state=random_state)


class _OOBAccumulator:
    """Incremental out-of-bag predictions for a warm-started random forest.

    sklearn's built-in ``oob_score`` recomputes the OOB predictions of *all*
    trees on every ``fit`` call, which makes per-epoch OOB quadratic in the
    number of epochs.  Here only the trees added in the latest epoch are
    evaluated, and only on the (bounded) evaluation rows.  The bootstrap
    indices of a tree are re-derived the way sklearn draws them
    (``RandomState(tree.random_state).randint(0, n, n)``);
    ``tests/training/test_trainer.py`` checks this against sklearn's own
    ``oob_decision_function_``.
    """

    def __init__(self, task: str, n_samples: int, rows: np.ndarray):
        self.task = task
        self.n_samples = n_samples
        self.rows = np.asarray(rows)
        self.n_seen = 0
        self.sums: np.ndarray | None = None
        self.counts = np.zeros(len(self.rows))

    def add_new_trees(self, forest, X) -> None:
        if self.sums is None:
            width = int(forest.n_classes_) if self.task == "classification" else 1
            self.sums = np.zeros((len(self.rows), width))
        new = forest.estimators_[self.n_seen:]
        self.n_seen = len(forest.estimators_)
        for tree in new:
            drawn = np.random.RandomState(tree.random_state).randint(0, self.n_samples, self.n_samples)
            in_bag = np.bincount(drawn, minlength=self.n_samples)[self.rows] > 0
            oob = ~in_bag
            if not oob.any():
                continue
            X_oob = X[self.rows[oob]]
            if self.task == "classification":
                pred = tree.predict_proba(X_oob)
            else:
                pred = np.asarray(tree.predict(X_oob), dtype=float).reshape(-1, 1)
            self.sums[oob] += pred
            self.counts[oob] += 1

    def loss(self, y_rows: np.ndarray, labels=None) -> float | None:
        ok = self.counts > 0
        if ok.sum() < 2:
            return None
        pred = self.sums[ok] / self.counts[ok, None]
        if self.task == "classification":
            return float(log_loss(y_rows[ok], pred, labels=labels))
        return float(mean_squared_error(y_rows[ok], pred[:, 0]))


def _epoch_loss(model, task, Xe, ye) -> float:
    """Training loss: log-loss (classification) or MSE in target units (regression)."""
    if task == "classification":
        return float(log_loss(ye, model.predict_proba(Xe), labels=model.classes_))
    return float(mean_squared_error(ye, model.predict(Xe)))


def _score(model, task, X, y) -> float:
    pred = model.predict(X)
    if task == "classification":
        return float(accuracy_score(y, pred))
    return float(r2_score(y, pred))


def train(
    *,
    csv_path: str,
    target_column: str,
    task: str | None,
    algorithm: str,
    epochs: int,
    test_size: float = 0.2,
    random_state: int = 42,
    encoding: str = "utf-8",
    delimiter: str = ",",
    on_progress: Callable[[ProgressUpdate], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainingResult:
    """Train a model on a CSV file; see the module docstring.

    ``on_progress`` is called once at the start of each stage and once after
    every epoch.  ``should_stop`` is called before every epoch and at the
    start of the feature_engineering, validation and finalization stages;
    if it returns True, :class:`TrainingCancelled` is raised.
    """
    try:
        return _train(
            csv_path=csv_path, target_column=target_column, task=task, algorithm=algorithm, epochs=epochs,
            test_size=test_size, random_state=random_state, encoding=encoding, delimiter=delimiter,
            on_progress=on_progress, should_stop=should_stop,
        )
    except MemoryError as exc:
        raise TrainingError(
            "Ran out of memory while training.",
            code="MEMORY_ERROR",
            suggestions=[
                "Train on a random sample of the rows.",
                "Remove columns that are not useful (IDs, free text, many-valued categories).",
                "Choose a lighter algorithm such as 'sgd', or fewer epochs for 'random_forest'.",
            ],
        ) from exc


def _train(*, csv_path, target_column, task, algorithm, epochs, test_size, random_state, encoding, delimiter,
           on_progress, should_stop) -> TrainingResult:
    t_start = time.perf_counter()
    report = _Reporter(on_progress)

    def check_stop():
        if should_stop is not None and should_stop():
            raise TrainingCancelled()

    task = _validate_params(task, algorithm, epochs, test_size)

    # ---------------- data_preparation ----------------
    report(stage="data_preparation", progress=STAGE_PROGRESS["data_preparation"], total_epochs=epochs,
           message="Loading and checking the dataset")
    df = _load_csv(csv_path, encoding, delimiter)
    df, y, task, classes = _prepare_target(df, target_column, task)
    schema, dropped = _describe_columns(df, target_column, y, task)
    if not schema:
        raise TrainingError(
            "No usable feature columns are left after removing the target, identifiers and empty columns.",
            code="INVALID_DATA",
            suggestions=["Add columns that describe each row (numbers, categories, dates)."]
            + [f"Dropped {d['name']!r}: {d['reason']}" for d in dropped[:10]],
        )
    X = _coerce_frame(df, schema)
    del df

    # ---------------- feature_engineering ----------------
    check_stop()
    report(stage="feature_engineering", progress=STAGE_PROGRESS["feature_engineering"], total_epochs=epochs,
           message=f"Encoding {len(schema)} feature columns ({task})")
    X_train_df, X_test_df, y_train, y_test = _split(X, y, task, test_size, random_state)
    del X
    # tree ensembles are much faster on dense input (and HistGradientBoosting requires it)
    preprocessor = _build_preprocessor(schema, dense=algorithm in ("random_forest", "gradient_boosting"))
    Xt_train = preprocessor.fit_transform(X_train_df)
    Xt_test = preprocessor.transform(X_test_df)
    n_train, n_test = len(y_train), len(y_test)

    rng = np.random.default_rng(random_state)
    eval_idx = rng.choice(n_train, EVAL_SAMPLE, replace=False) if n_train > EVAL_SAMPLE else np.arange(n_train)
    live_idx = rng.choice(n_test, EVAL_SAMPLE, replace=False) if n_test > EVAL_SAMPLE else np.arange(n_test)
    Xe, ye = Xt_train[eval_idx], y_train[eval_idx]
    Xl, yl = Xt_test[live_idx], y_test[live_idx]

    # ---------------- model_training ----------------
    model = _make_model(algorithm, task, random_state)
    scale_target = task == "regression" and algorithm in ("sgd", "mlp")
    if scale_target:
        y_mean = float(np.mean(y_train))
        y_scale = float(np.std(y_train)) or 1.0
        y_fit = (y_train - y_mean) / y_scale
        final_model = ScaledTargetRegressor(model, y_mean, y_scale)
    else:
        y_fit = y_train
        final_model = model
    class_array = np.asarray(classes, dtype=y.dtype) if classes is not None else None

    oob = _OOBAccumulator(task, n_train, eval_idx) if algorithm == "random_forest" else None
    report(stage="model_training", progress=STAGE_PROGRESS["model_training"], current_epoch=0,
           total_epochs=epochs, message=f"Training {algorithm} for {epochs} epoch(s)")
    history: list[dict[str, Any]] = []
    durations: list[float] = []
    lo, hi = TRAINING_SPAN
    for epoch in range(1, epochs + 1):
        check_stop()
        t0 = time.perf_counter()
        if algorithm in ("sgd", "mlp"):
            # one pass over freshly shuffled training data
            order = rng.permutation(n_train)
            if task == "classification":
                model.partial_fit(Xt_train[order], y_fit[order], classes=class_array)
            else:
                model.partial_fit(Xt_train[order], y_fit[order])
        elif algorithm == "random_forest":
            model.set_params(n_estimators=epoch * TREES_PER_EPOCH)  # warm_start: adds the new trees
            model.fit(Xt_train, y_fit)
            oob.add_new_trees(model, Xt_train)
        else:  # gradient_boosting
            model.set_params(max_iter=epoch * BOOST_ITERS_PER_EPOCH)
            model.fit(Xt_train, y_fit)
        train_dt = time.perf_counter() - t0
        loss = None
        if oob is not None:
            # out-of-bag loss: the in-sample loss of a forest is near zero and says little
            loss = oob.loss(ye, labels=getattr(model, "classes_", None))
        if loss is None:
            loss = _epoch_loss(final_model, task, Xe, ye)
        live = _score(final_model, task, Xl, yl)
        duration = time.perf_counter() - t0
        durations.append(duration)
        history.append({"epoch": epoch, "loss": _float(loss), "accuracy": _float(live),
                        "duration": round(duration, 6), "fit_time": round(train_dt, 6)})
        eta = float(np.mean(durations)) * (epochs - epoch) + TAIL_SECONDS
        metric_name = "accuracy" if task == "classification" else "R²"
        report(
            stage="model_training",
            progress=round(lo + (hi - lo) * epoch / epochs, 4),
            current_epoch=epoch,
            total_epochs=epochs,
            current_loss=_float(loss),
            live_accuracy=_float(live),
            estimated_time_remaining=round(eta, 3),
            message=f"Epoch {epoch}/{epochs}: loss {loss:.4f}, validation {metric_name} {live:.4f}",
        )

    # ---------------- validation ----------------
    check_stop()
    report(stage="validation", progress=STAGE_PROGRESS["validation"], current_epoch=epochs, total_epochs=epochs,
           estimated_time_remaining=TAIL_SECONDS, message="Evaluating on the held-out split")
    metrics: dict[str, float | None] = {}
    pred_test = final_model.predict(Xt_test)
    if task == "classification":
        proba_test = final_model.predict_proba(Xt_test)
        metrics["accuracy"] = float(accuracy_score(y_test, pred_test))
        metrics["f1_macro"] = float(f1_score(y_test, pred_test, average="macro", zero_division=0))
        metrics["precision_macro"] = float(precision_score(y_test, pred_test, average="macro", zero_division=0))
        metrics["recall_macro"] = float(recall_score(y_test, pred_test, average="macro", zero_division=0))
        metrics["log_loss"] = float(log_loss(y_test, proba_test, labels=final_model.classes_))
        if len(classes) == 2 and len(np.unique(y_test)) == 2:
            pos = list(final_model.classes_).index(class_array[1]) if class_array[1] in final_model.classes_ else None
            if pos is not None:
                metrics["roc_auc"] = float(roc_auc_score(y_test == class_array[1], proba_test[:, pos]))
        validation_score = metrics["accuracy"]
    else:
        metrics["r2"] = float(r2_score(y_test, pred_test))
        metrics["mae"] = float(mean_absolute_error(y_test, pred_test))
        metrics["rmse"] = float(math.sqrt(mean_squared_error(y_test, pred_test)))
        validation_score = metrics["r2"]
    final_accuracy = _score(final_model, task, Xt_train, y_train)
    metrics = {k: _float(v) for k, v in metrics.items()}

    # ---------------- finalization ----------------
    check_stop()
    report(stage="finalization", progress=STAGE_PROGRESS["finalization"], current_epoch=epochs, total_epochs=epochs,
           estimated_time_remaining=round(TAIL_SECONDS / 2, 3), message="Packaging the model artifact")
    pipeline = Pipeline([("preprocessor", preprocessor), ("model", final_model)])
    buf = io.BytesIO()
    joblib.dump(pipeline, buf, compress=3)
    artifact = buf.getvalue()

    return TrainingResult(
        task=task,
        algorithm=algorithm,
        metrics=metrics,
        final_accuracy=float(final_accuracy),
        validation_score=float(validation_score),
        history=history,
        training_time=round(time.perf_counter() - t_start, 6),
        feature_schema=schema,
        classes=classes,
        artifact_bytes=artifact,
        artifact_sha256=hashlib.sha256(artifact).hexdigest(),
        model_size=len(artifact),
        n_train=int(n_train),
        n_test=int(n_test),
        target_column=target_column,
        dropped_columns=dropped,
        pipeline=pipeline,
    )
