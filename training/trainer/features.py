"""Features: what each input column is (numeric, categorical, boolean, datetime), how its values are
coerced the same way at training and prediction time, and the preprocessor that encodes them.

No Django here. The prediction fast path (`compiled.py`) reuses the coercion of this module.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

MAX_CLASSIFICATION_INT_VALUES = 20  # integer targets with <= this many values -> classification
MAX_CATEGORIES = 50  # one-hot columns per categorical feature (rest -> "infrequent")
MAX_SCHEMA_VALUES = 50  # allowed values listed per categorical feature in the schema

_ID_NAME_RE = re.compile(r"(^|[_\s.-])(id|uuid|guid|key|index|idx)$|^(id|uuid|guid|index|unnamed: ?\d+)", re.I)
_ISO_DATE_RE = re.compile(r"^\s*\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$")
_TRUE_STRINGS = {"true", "t", "yes", "y", "1"}
_FALSE_STRINGS = {"false", "f", "no", "n", "0"}


class DatetimeFeatures(TransformerMixin, BaseEstimator):
    """Turn date/time columns into numeric features (epoch days, year, month, day, weekday, hour)."""

    # Stored artifacts pickle this class under the path it had before the trainer became a package.
    __module__ = "training.trainer"

    _PARTS = ("epoch_days", "year", "month", "day", "day_of_week", "hour")

    def fit(self, X, y=None):
        frame = pd.DataFrame(X)
        self.feature_names_in_ = np.asarray([str(c) for c in frame.columns], dtype=object)
        self.n_features_in_ = frame.shape[1]
        return self

    def transform(self, X):
        frame = pd.DataFrame(X)
        out = []
        for col in frame.columns:
            ts = pd.to_datetime(frame[col], errors="coerce", utc=True, format="ISO8601")
            valid = ts.notna().to_numpy()
            epoch = np.full(len(ts), np.nan)
            if valid.any():
                epoch[valid] = (ts[valid] - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1)
            out.append(epoch)
            for part in ("year", "month", "day", "day_of_week", "hour"):
                out.append(getattr(ts.dt, part).astype(float).to_numpy())
        if not out:
            return np.empty((len(frame), 0))
        return np.column_stack(out).astype(float)

    def get_feature_names_out(self, input_features=None):
        names = input_features if input_features is not None else self.feature_names_in_
        return np.asarray([f"{c}_{p}" for c in names for p in self._PARTS], dtype=object)


def _py(value: Any) -> Any:
    """Convert numpy / pandas scalars to plain JSON-friendly Python values."""
    if value is None:
        return None
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    return value


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        return bool(pd.isna(value)) if np.isscalar(value) else False
    except (TypeError, ValueError):
        return False


def _is_bool_series(s: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(s):
        return True
    if pd.api.types.is_object_dtype(s):
        non_null = s.dropna()
        return len(non_null) > 0 and all(isinstance(v, (bool, np.bool_)) for v in non_null)
    return False


def _is_integral(s: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(s):
        return True
    if pd.api.types.is_float_dtype(s):
        vals = s.dropna().to_numpy(dtype=float)
        return len(vals) > 0 and bool(np.all(np.isfinite(vals))) and bool(np.all(vals == np.round(vals)))
    return False


def infer_task(target: pd.Series) -> str:
    """Guess ``"classification"`` or ``"regression"`` from the (non-missing) target values.

    Non-numeric, boolean, or integer-valued with at most 20 distinct values
    -> classification; otherwise regression.
    """
    s = target.dropna()
    if _is_bool_series(s) or not pd.api.types.is_numeric_dtype(s):
        return "classification"
    if _is_integral(s) and s.nunique() <= MAX_CLASSIFICATION_INT_VALUES:
        return "classification"
    return "regression"


def _looks_datetime(s: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(s):
        return True
    if not (pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s)):
        return False
    sample = s.dropna()
    if len(sample) == 0:
        return False
    sample = sample.sample(min(len(sample), 500), random_state=0) if len(sample) > 500 else sample
    matches = sample.map(lambda v: isinstance(v, str) and bool(_ISO_DATE_RE.match(v)))
    return float(matches.mean()) >= 0.95


def _leaks_target(s: pd.Series, y: np.ndarray, task: str) -> bool:
    """True if the column is just a re-encoding of the target (e.g. titanic's ``alive`` vs ``survived``)."""
    if s.isna().any():
        return False
    if task == "classification":
        if s.nunique() != len(np.unique(y)):
            return False
        pairs = pd.DataFrame({"x": s.astype(str).to_numpy(), "y": pd.Series(y).astype(str).to_numpy()})
        return bool(pairs.groupby("x")["y"].nunique().max() == 1 and pairs.groupby("y")["x"].nunique().max() == 1)
    if pd.api.types.is_numeric_dtype(s) and not _is_bool_series(s):
        x = s.to_numpy(dtype=float)
        if np.std(x) == 0 or np.std(y) == 0:
            return False
        return bool(abs(np.corrcoef(x, y)[0, 1]) >= 0.99999)
    return False


def _describe_columns(df: pd.DataFrame, target_column: str, y: np.ndarray | None = None,
                      task: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Decide the type of each input column; returns (feature_schema, dropped_columns)."""
    schema: list[dict[str, Any]] = []
    dropped: list[dict[str, str]] = []
    n_rows = len(df)
    for name in df.columns:
        if name == target_column:
            continue
        s = df[name]
        non_null = s.dropna()
        n_non_null = len(non_null)
        if n_non_null == 0:
            dropped.append({"name": str(name), "reason": "all values are missing"})
            continue
        n_unique = int(non_null.nunique())
        if y is not None and _leaks_target(s, y, task):
            dropped.append({"name": str(name), "reason": f"duplicates the target {target_column!r} (leakage)"})
            continue
        if _is_bool_series(s):
            schema.append({"name": str(name), "type": "boolean", "required": True})
            continue
        if pd.api.types.is_numeric_dtype(s):
            if (
                pd.api.types.is_integer_dtype(s)
                and n_rows >= 20
                and n_unique == n_rows
                and (
                    _ID_NAME_RE.search(str(name))
                    or (int(non_null.max()) - int(non_null.min()) + 1) <= int(1.1 * n_rows) + 1
                )
            ):
                dropped.append({"name": str(name), "reason": "looks like an identifier (unique integers)"})
                continue
            schema.append({"name": str(name), "type": "numeric", "required": True})
            continue
        if _looks_datetime(s):
            schema.append({"name": str(name), "type": "datetime", "required": True})
            continue
        # string-like / object / categorical
        if n_non_null >= 20 and n_unique == n_non_null:
            dropped.append({"name": str(name), "reason": "looks like an identifier (every value is unique)"})
            continue
        if n_unique > MAX_CATEGORIES and n_unique > 0.5 * n_non_null:
            dropped.append({"name": str(name),
                            "reason": f"free text / too many distinct values ({n_unique} of {n_non_null} rows)"})
            continue
        counts = non_null.astype(str).value_counts()
        schema.append({
            "name": str(name),
            "type": "categorical",
            "required": True,
            "allowed_values": [str(v) for v in counts.index[:MAX_SCHEMA_VALUES]],
        })
    return schema, dropped


def _coerce_value(value: Any, col_type: str) -> Any:
    if _is_missing(value):
        return np.nan
    if col_type == "boolean":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, float, np.integer, np.floating)):
            return bool(value)
        text = str(value).strip().lower()
        if text in _TRUE_STRINGS:
            return True
        if text in _FALSE_STRINGS:
            return False
        return np.nan
    if col_type == "categorical":
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            # a CSV column read as strings keeps "3", not "3.0"
            return str(int(value))
        return str(value)
    return value  # datetime / text: raw


def _coerce_frame(df: pd.DataFrame, schema: list[dict[str, Any]]) -> pd.DataFrame:
    """Make column dtypes consistent between training and prediction."""
    out = {}
    for col in schema:
        name, col_type = col["name"], col["type"]
        s = df[name] if name in df.columns else pd.Series([np.nan] * len(df), index=df.index)
        if col_type == "numeric":
            out[name] = pd.to_numeric(s, errors="coerce").astype(float)
        elif col_type == "datetime":
            out[name] = s.astype(object).where(s.notna(), np.nan)
        elif col_type == "categorical" and pd.api.types.is_string_dtype(s) and not pd.api.types.is_object_dtype(s):
            # fast path for CSV string columns (training): already strings
            out[name] = s.astype(object).where(s.notna(), np.nan)
        elif col_type == "boolean" and pd.api.types.is_bool_dtype(s):
            out[name] = s.astype(object)
        else:
            values = [_coerce_value(v, col_type) for v in s.astype(object).tolist()]
            out[name] = pd.Series(values, index=df.index, dtype=object)
    return pd.DataFrame(out, index=df.index)


def _build_preprocessor(schema: list[dict[str, Any]], dense: bool) -> ColumnTransformer:
    numeric = [c["name"] for c in schema if c["type"] == "numeric"]
    categorical = [c["name"] for c in schema if c["type"] in ("categorical", "boolean")]
    datetimes = [c["name"] for c in schema if c["type"] == "datetime"]
    transformers = []
    if numeric:
        transformers.append((
            "numeric",
            Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
            numeric,
        ))
    if categorical:
        transformers.append((
            "categorical",
            Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", max_categories=MAX_CATEGORIES,
                                         sparse_output=not dense)),
            ]),
            categorical,
        ))
    if datetimes:
        transformers.append((
            "datetime",
            Pipeline([
                ("expand", DatetimeFeatures()),
                ("impute", SimpleImputer(strategy="median")),
                ("scale", StandardScaler()),
            ]),
            datetimes,
        ))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0 if dense else 0.3)
