"""Processing operations over a CSV file: clean, split, scale. Pure pandas, no Django.

Each operation reads its input, reports progress through `progress(fraction, step)`, checks
`should_stop()` between steps, and writes one or more output CSV files. Options are checked up
front by `clean_options()` so that a bad request fails at the edge, before any work is queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

OPERATIONS = ("clean", "split", "scale")
MISSING_STRATEGIES = ("none", "drop_rows", "fill_mean", "fill_median", "fill_mode", "fill_constant")
SCALE_METHODS = ("standard", "minmax")


class OptionsError(ValueError):
    """Bad options for an operation: `errors` maps option names to messages."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class Cancelled(Exception):
    """should_stop() said so."""


@dataclass
class Output:
    label: str  # "cleaned", "train", "test", "scaled"
    path: str
    rows: int


def _bool(value, name, errors, default):
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    errors[name] = "must be true or false"
    return default


def _columns(value, name, errors, columns):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        errors[name] = "must be a list of column names"
        return None
    unknown = [c for c in value if c not in columns]
    if unknown:
        errors[name] = f"not columns of this dataset: {', '.join(unknown[:10])}"
    return value


def clean_options(operation: str, options, *, columns: list[str], target_column: str = "") -> dict:
    """Checked, complete options for `operation`; raises OptionsError naming each bad option."""
    if operation not in OPERATIONS:
        raise OptionsError({"operation": f"must be one of {', '.join(OPERATIONS)}"})
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise OptionsError({"options": "must be an object"})
    errors: dict[str, str] = {}
    out: dict = {}
    allowed = {
        "clean": {"drop_duplicates", "missing", "fill_value", "columns"},
        "split": {"test_ratio", "stratify", "random_state", "shuffle"},
        "scale": {"method", "columns"},
    }[operation]
    for key in options:
        if key not in allowed:
            errors[key] = f"unknown option for {operation} (allowed: {', '.join(sorted(allowed))})"
    if operation == "clean":
        out["drop_duplicates"] = _bool(options.get("drop_duplicates"), "drop_duplicates", errors, True)
        missing = options.get("missing", "none")
        if missing not in MISSING_STRATEGIES:
            errors["missing"] = f"must be one of {', '.join(MISSING_STRATEGIES)}"
        out["missing"] = missing
        if missing == "fill_constant":
            if "fill_value" not in options or isinstance(options["fill_value"], (dict, list)):
                errors["fill_value"] = "fill_constant needs a fill_value (a number or a string)"
            out["fill_value"] = options.get("fill_value")
        out["columns"] = _columns(options.get("columns"), "columns", errors, columns)
    elif operation == "split":
        ratio = options.get("test_ratio", 0.2)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
            errors["test_ratio"] = "must be a number between 0 and 1 (e.g. 0.2)"
        out["test_ratio"] = ratio
        out["stratify"] = _bool(options.get("stratify"), "stratify", errors, False)
        if out["stratify"] and not target_column:
            errors["stratify"] = "needs the dataset's target column to be set"
        seed = options.get("random_state", 42)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            errors["random_state"] = "must be a non-negative integer"
        out["random_state"] = seed
        out["shuffle"] = _bool(options.get("shuffle"), "shuffle", errors, True)
        if out["stratify"] and not out["shuffle"]:
            errors["shuffle"] = "a stratified split must shuffle"
    else:
        method = options.get("method", "standard")
        if method not in SCALE_METHODS:
            errors["method"] = f"must be one of {', '.join(SCALE_METHODS)}"
        out["method"] = method
        out["columns"] = _columns(options.get("columns"), "columns", errors, columns)
    if errors:
        raise OptionsError(errors)
    return out


def _read(path: str, encoding: str, delimiter: str) -> pd.DataFrame:
    return pd.read_csv(path, encoding=encoding, sep=delimiter, low_memory=False)


def _check(should_stop):
    if should_stop is not None and should_stop():
        raise Cancelled()


def run(
    operation: str,
    *,
    path: str,
    encoding: str,
    delimiter: str,
    options: dict,
    target_column: str,
    output_path: Callable[[str], str],
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[Output], dict]:
    """Run one operation; returns its output files and a summary of what it did."""
    report = progress or (lambda fraction, step: None)
    report(0.0, "reading the file")
    frame = _read(path, encoding, delimiter)
    _check(should_stop)
    handler = {"clean": _clean, "split": _split, "scale": _scale}[operation]
    frames, summary = handler(frame, options, target_column, report, should_stop)
    outputs = []
    for i, (label, out) in enumerate(frames):
        _check(should_stop)
        report(0.8 + 0.2 * i / len(frames), f"writing the {label} file")
        target = output_path(label)
        out.to_csv(target, index=False)
        outputs.append(Output(label=label, path=target, rows=len(out)))
    report(1.0, "done")
    return outputs, {"rows_in": int(len(frame)), **summary}


def _clean(frame, options, target, report, should_stop):
    summary = {}
    report(0.2, "dropping duplicate rows")
    if options["drop_duplicates"]:
        before = len(frame)
        frame = frame.drop_duplicates()
        summary["duplicates_dropped"] = int(before - len(frame))
    _check(should_stop)
    report(0.5, "handling missing values")
    columns = options.get("columns") or list(frame.columns)
    strategy = options["missing"]
    missing_before = int(frame[columns].isna().sum().sum())
    if strategy == "drop_rows":
        before = len(frame)
        frame = frame.dropna(subset=columns)
        summary["rows_dropped_for_missing"] = int(before - len(frame))
    elif strategy != "none":
        for column in columns:
            series = frame[column]
            if not series.isna().any():
                continue
            numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
            if strategy == "fill_mean" and numeric:
                value = series.mean()
            elif strategy == "fill_median" and numeric:
                value = series.median()
            elif strategy == "fill_constant":
                value = options["fill_value"]
            else:  # mode, and mean/median for non-numeric columns
                modes = series.mode(dropna=True)
                value = modes.iloc[0] if len(modes) else None
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                frame[column] = series.fillna(value)
    summary["missing_before"] = missing_before
    summary["missing_after"] = int(frame[columns].isna().sum().sum())
    summary["rows_out"] = int(len(frame))
    return [("cleaned", frame)], summary


def _split(frame, options, target, report, should_stop):
    report(0.3, "splitting rows")
    rng = np.random.default_rng(options["random_state"])
    ratio = options["test_ratio"]
    if options["stratify"]:
        if target not in frame.columns:
            raise ValueError(f"target column {target!r} is not in the file")
        test_idx = []
        for _, group in frame.groupby(frame[target].astype("string").fillna("<missing>"), sort=True):
            idx = group.index.to_numpy().copy()
            rng.shuffle(idx)
            take = int(round(len(idx) * ratio))
            test_idx.extend(idx[:take].tolist())
        test_mask = frame.index.isin(test_idx)
    else:
        order = np.arange(len(frame))
        if options["shuffle"]:
            rng.shuffle(order)
        cut = int(round(len(frame) * ratio))
        test_mask = np.zeros(len(frame), dtype=bool)
        test_mask[order[:cut] if options["shuffle"] else order[len(frame) - cut:]] = True
    train, test = frame[~test_mask], frame[test_mask]
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"a {ratio:g} split of {len(frame)} rows leaves one side empty")
    return [("train", train), ("test", test)], {"train_rows": int(len(train)), "test_rows": int(len(test))}


def _scale(frame, options, target, report, should_stop):
    report(0.3, "scaling numeric columns")
    numeric = [
        c for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) and c != target
    ]
    columns = [c for c in (options.get("columns") or numeric) if c in numeric]
    skipped = [c for c in (options.get("columns") or []) if c not in numeric]
    stats = {}
    for column in columns:
        series = frame[column].astype(float)
        if options["method"] == "standard":
            center, spread = series.mean(), series.std(ddof=0)
        else:
            center, spread = series.min(), series.max() - series.min()
        spread = spread if spread and not np.isnan(spread) else 1.0
        frame[column] = (series - center) / spread
        stats[column] = {"center": float(center) if not np.isnan(center) else None, "scale": float(spread)}
    return [("scaled", frame)], {"scaled_columns": columns, "skipped_columns": skipped, "parameters": stats}
