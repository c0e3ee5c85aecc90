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
