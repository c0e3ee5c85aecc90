"""IsolationForest over a CSV file's numeric columns: a score per row and the most anomalous rows.
No Django imports (called by monitoring.services in a Celery worker, testable on its own).

Scores are scikit-learn's anomaly scores (the negated `score_samples`): higher is more anomalous,
about 0.5 for ordinary rows and approaching 1 for rows that are isolated in very few splits.
Missing values are imputed with the column's median; a column with no value at all is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


class DetectionError(ValueError):
    """The file or the requested columns cannot be scored; the message says why."""


@dataclass
class Result:
    scores: np.ndarray  # float32, one per row, in file order
    flagged: np.ndarray  # bool, one per row
    threshold: float
    columns: list[str]
    dropped: list[str] = field(default_factory=list)
    top_rows: list[dict] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_flagged(self) -> int:
        return int(self.flagged.sum())

    @property
    def share_flagged(self) -> float:
        return self.n_flagged / self.n_rows if self.n_rows else 0.0

    @property
    def max_score(self) -> float:
        return float(self.scores.max()) if self.n_rows else 0.0


def _json_value(value):
    if value is None:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if pd.isna(value):
        return None
    return str(value)


def numeric_frame(frame: pd.DataFrame, columns: list[str] | None, exclude: set[str]) -> tuple[pd.DataFrame, list[str]]:
    """The columns to score as floats: the requested ones, or every numeric/boolean column."""
    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DetectionError(f"Not columns of the file: {', '.join(missing)}.")
        chosen = list(columns)
    else:
        chosen = [c for c in frame.columns if c not in exclude and (
            pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]
    data, dropped = {}, []
    for name in chosen:
        series = frame[name]
        if pd.api.types.is_bool_dtype(series):
            series = series.astype(float)
        converted = pd.to_numeric(series, errors="coerce")
        if columns and converted.notna().sum() < max(1, 0.5 * series.notna().sum()):
            raise DetectionError(f"Column {name!r} is not numeric.")
        if converted.notna().sum() == 0:
            dropped.append(name)
            continue
        data[name] = converted.astype(float)
    if not data:
        raise DetectionError("The file has no numeric column to score.")
    return pd.DataFrame(data), dropped


def detect(
    path,
    *,
    contamination: float,
    columns: list[str] | None = None,
    exclude: set[str] | frozenset = frozenset(),
    encoding: str = "utf-8",
    delimiter: str = ",",
    top: int = 50,
    random_state: int = 0,
) -> Result:
    from sklearn.ensemble import IsolationForest

    if not 0.0 < contamination <= 0.5:
        raise DetectionError("contamination must be in (0, 0.5].")
    try:
        frame = pd.read_csv(path, encoding=encoding or "utf-8", sep=delimiter or ",", low_memory=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DetectionError(f"The file could not be read: {exc}") from exc
    if len(frame) < 2:
        raise DetectionError("At least two rows are needed to score anomalies.")
    numeric, dropped = numeric_frame(frame, columns, set(exclude))
    values = numeric.fillna(numeric.median()).to_numpy(dtype=np.float64)
    values = np.where(np.isfinite(values), values, 0.0)

    forest = IsolationForest(contamination=contamination, random_state=random_state, n_estimators=100)
    forest.fit(values)
    scores = (-forest.score_samples(values)).astype(np.float32)
    threshold = float(-forest.offset_)
    flagged = forest.predict(values) == -1

    order = np.argsort(-scores, kind="stable")[: max(0, top)]
    top_rows = [
        {
            "row": int(i),
            "score": round(float(scores[i]), 5),
            "flagged": bool(flagged[i]),
            "values": {str(k): _json_value(v) for k, v in frame.iloc[int(i)].items()},
        }
        for i in order
    ]
    return Result(scores=scores, flagged=flagged, threshold=threshold, columns=list(numeric.columns),
                  dropped=dropped, top_rows=top_rows)


# --- a range of multivariate readings, optionally against a baseline period -----------------------

# How far above the threshold a reading's score is, for its severity (scores are in (0, 1)).
SEVERITY_MARGINS = (("critical", 0.15), ("high", 0.09), ("medium", 0.04))
MAD_SCALE = 1.4826  # a normal distribution's MAD → its standard deviation


@dataclass
class RangeResult:
    scores: np.ndarray  # float64, one per range row
    flagged: np.ndarray  # bool, one per range row
    threshold: float
    deviating: np.ndarray  # int, per range row: the column with the largest robust z
    z: np.ndarray  # float64, per range row: that column's robust z

    @property
    def n_flagged(self) -> int:
        return int(self.flagged.sum())


def severity_for(score: float, threshold: float) -> str:
    margin = score - threshold
    for name, floor in SEVERITY_MARGINS:
        if margin >= floor:
            return name
    return "low"


def robust_z(reference: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """|x - median| / (1.4826·MAD) per column, the median and MAD of `reference`; a constant column's
    scale falls back to its standard deviation, then to a tiny share of its level."""
    median = np.median(reference, axis=0)
    scale = MAD_SCALE * np.median(np.abs(reference - median), axis=0)
    std = reference.std(axis=0)
    scale = np.where(scale > 0, scale, std)
    scale = np.where(scale > 0, scale, np.maximum(np.abs(median) * 1e-3, 1e-9))
    return np.abs(rows - median) / scale


def detect_range(rows, *, contamination: float, baseline=None, random_state: int = 0) -> RangeResult:
    """Score `rows` (n × metrics) with an IsolationForest. With a baseline it is fitted on the baseline
    and its threshold is the baseline's score quantile at `contamination` (sklearn's offset): a range
    as ordinary as its baseline has about that share flagged, a faulty one more. Without, it is fitted
    on the rows themselves and flags `contamination` of them."""
    from sklearn.ensemble import IsolationForest

    if not 0.0 < contamination <= 0.5:
        raise DetectionError("contamination must be in (0, 0.5].")
    rows = np.asarray(rows, dtype=np.float64)
    reference = rows if baseline is None else np.asarray(baseline, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] < 2 or reference.shape[0] < 2:
        raise DetectionError("At least two aligned rows are needed to score anomalies.")
    forest = IsolationForest(contamination=contamination, random_state=random_state, n_estimators=100)
    forest.fit(reference)
    scores = -forest.score_samples(rows)
    threshold = float(-forest.offset_)
    z = robust_z(reference, rows)
    deviating = np.argmax(z, axis=1)
    return RangeResult(scores=scores, flagged=scores > threshold, threshold=threshold, deviating=deviating,
                       z=z[np.arange(rows.shape[0]), deviating])
