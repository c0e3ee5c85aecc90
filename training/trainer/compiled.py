"""The fitted preprocessor as plain numpy, for the prediction API's small requests.

A one-row prediction through the fitted sklearn ``ColumnTransformer`` costs about 10 ms of CPU,
almost all of it input checks and DataFrame handling (pandas, narwhals) around a few arithmetic
operations: median and mode imputation, standard scaling, one-hot lookup. At 50 predictions per
second that was most of a server process. `compile_preprocessor` reads the fitted parameters once
per loaded model and applies them with the same floating-point operations, in the same order, so
the output is identical (checked against sklearn when it is compiled, and by the tests); anything
it does not know how to reproduce exactly stays on sklearn's path:

- a preprocessor other than the one `features._build_preprocessor` builds (numeric and categorical
  columns; datetime columns use sklearn);
- per request, a value the fast path does not coerce exactly as `features._coerce_frame` would (a
  numeric column given as a string, an integer too large for a float).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .features import _coerce_frame, _coerce_value

logger = logging.getLogger(__name__)

_EXACT_INT = 2**53  # integers below this convert to float exactly, as pandas does
_UNSUPPORTED = object()  # a value this module leaves to sklearn's path


class _Numeric:
    """SimpleImputer(median) then StandardScaler, column by column."""

    def __init__(self, columns: list[str], imputer: SimpleImputer, scaler: StandardScaler):
        stats = np.asarray(imputer.statistics_, dtype=np.float64)
        keep = ~np.isnan(stats)  # a column all missing at fit time has no statistic and is dropped
        self.columns = columns
        self.keep = np.flatnonzero(keep)
        self.fill = stats
        self.mean = None if scaler.mean_ is None else np.asarray(scaler.mean_, dtype=np.float64)
        self.scale = None if scaler.scale_ is None else np.asarray(scaler.scale_, dtype=np.float64)
        self.width = len(self.keep)

    def transform(self, instances: list[dict]) -> np.ndarray | None:
        X = np.empty((len(instances), len(self.columns)), dtype=np.float64)
        for i, inst in enumerate(instances):
            row = X[i]
            for j, name in enumerate(self.columns):
                value = _numeric(inst.get(name))
                if value is _UNSUPPORTED:
                    return None
                row[j] = value
        missing = np.isnan(X)
        if missing.any():
            X = np.where(missing, self.fill, X)
        X = X[:, self.keep]
        # StandardScaler.transform: X -= mean_, then X /= scale_ (in that order, as here)
        if self.mean is not None:
            X -= self.mean
        if self.scale is not None:
            X /= self.scale
        return X


class _Categorical:
    """SimpleImputer(most_frequent) then OneHotEncoder(handle_unknown="ignore"), as one lookup per
    column: value -> output column (unknown values: none, all zeros)."""

    def __init__(self, columns: list[str], types: list[str], imputer: SimpleImputer, encoder: OneHotEncoder):
        self.columns = columns
        self.types = types
        stats = list(imputer.statistics_)
        kept = [j for j, s in enumerate(stats) if not _is_nan(s)]
        if len(kept) != len(encoder.categories_):
            raise ValueError("imputer and encoder disagree on the columns")
        self.kept = kept
        self.fill = stats
        widths = list(encoder._n_features_outs)
        self.width = sum(widths)
        self.lookup: list[dict] = []
        offset = 0
        # The encoder's own transform of each known category gives its output column, which covers
        # its grouping of infrequent categories (max_categories) without re-implementing it.
        for k, categories in enumerate(encoder.categories_):
            probe = np.empty((len(categories), len(encoder.categories_)), dtype=object)
            for other, cats in enumerate(encoder.categories_):
                probe[:, other] = cats[0]
            probe[:, k] = categories
            out = encoder.transform(probe)
            out = out.toarray() if sparse.issparse(out) else np.asarray(out)
            block = out[:, offset:offset + widths[k]]
            table = {}
            for category, hot in zip(categories, block):
                (ones,) = np.nonzero(hot)
                if len(ones) != 1 or hot[ones[0]] != 1.0:
                    raise ValueError("a category does not map to exactly one column")
                table[category] = offset + int(ones[0])
            if len(set(map(type, table))) > 1:
                raise ValueError("mixed category types")  # True == 1 in a dict; keep to sklearn's path
            self.lookup.append(table)
            offset += widths[k]

    def transform(self, instances: list[dict]) -> np.ndarray | None:
        X = np.zeros((len(instances), self.width), dtype=np.float64)
        for i, inst in enumerate(instances):
            for k, j in enumerate(self.kept):
                # What features._coerce_frame does to each value of a categorical or boolean column.
                value = _coerce_value(inst.get(self.columns[j]), self.types[j])
                if _is_nan(value):
                    value = self.fill[j]
                try:
                    column = self.lookup[k].get(value)
                except TypeError:  # unhashable: not a value sklearn would have matched either
                    return None
                if column is not None:
                    X[i, column] = 1.0
        return X


class CompiledPreprocessor:
    def __init__(self, parts: list, sparse_output: bool):
        self.parts = parts
        self.sparse_output = sparse_output

    def transform(self, instances: list[dict]):
        """The preprocessor's output for these (already checked) instances, or None when a value
        must go through sklearn's path."""
        blocks = []
        for part in self.parts:
            block = part.transform(instances)
            if block is None:
                return None
            blocks.append(block)
        X = np.hstack(blocks) if len(blocks) > 1 else blocks[0]
        return sparse.csr_matrix(X) if self.sparse_output else X


def compile_preprocessor(preprocessor: Any, schema: list[dict[str, Any]]) -> CompiledPreprocessor | None:
    """A CompiledPreprocessor for a fitted preprocessor built by `features._build_preprocessor`, or
    None when it has anything else (datetime columns, another layout, another sklearn)."""
    try:
        compiled = _compile(preprocessor, schema)
        if compiled is not None and not _agrees_with_sklearn(compiled, preprocessor, schema):
            logger.warning("the compiled preprocessor differs from sklearn's; predictions use sklearn's")
            return None
    except Exception:  # noqa: BLE001 - whatever went wrong, sklearn's own path still serves
        logger.warning("the preprocessor could not be compiled; predictions use sklearn's", exc_info=True)
        return None
    return compiled


def _compile(ct: Any, schema: list[dict[str, Any]]) -> CompiledPreprocessor | None:
    if type(ct) is not ColumnTransformer or not ct.transformers_:
        return None
    types = {c["name"]: c["type"] for c in schema}
    parts = []
    for name, transformer, columns in ct.transformers_:
        if transformer == "drop" or name == "remainder":
            if transformer != "drop":
                return None
            continue
        if not isinstance(transformer, Pipeline) or not all(isinstance(c, str) for c in columns):
            return None
        steps = [step for _, step in transformer.steps]
        kinds = [type(s) for s in steps]
        if kinds == [SimpleImputer, StandardScaler] and steps[0].strategy == "median":
            if any(types.get(c) != "numeric" for c in columns):
                return None
            parts.append(_Numeric(list(columns), steps[0], steps[1]))
        elif kinds == [SimpleImputer, OneHotEncoder] and steps[0].strategy == "most_frequent":
            encoder = steps[1]
            if encoder.handle_unknown != "ignore" or encoder.drop is not None:
                return None
            if any(types.get(c) not in ("categorical", "boolean") for c in columns):
                return None
            parts.append(_Categorical(list(columns), [types[c] for c in columns], steps[0], encoder))
        else:
            return None
        if _missing_values_not_nan(steps[0]):
            return None
    if not parts:
        return None
    return CompiledPreprocessor(parts, sparse_output=bool(ct.sparse_output_))


def _agrees_with_sklearn(compiled: CompiledPreprocessor, ct: ColumnTransformer, schema: list[dict]) -> bool:
    """Compare with sklearn on a few instances built from the fitted parameters themselves: every
    column missing, every known category, and a spread of numbers."""
    import pandas as pd

    probes: list[dict] = [{c["name"]: None for c in schema}]
    longest = max([len(t) for p in compiled.parts if isinstance(p, _Categorical) for t in p.lookup] or [0])
    numbers = [-3.5, 0, 1, 2.25, 1e6]
    for i in range(max(longest, len(numbers)) + 1):
        inst = {}
        for c in schema:
            inst[c["name"]] = None
        for part in compiled.parts:
            if isinstance(part, _Numeric):
                for j, name in enumerate(part.columns):
                    inst[name] = numbers[(i + j) % len(numbers)] * (1 + j)
            else:
                for k, j in enumerate(part.kept):
                    table = list(part.lookup[k])
                    inst[part.columns[j]] = table[i % len(table)] if i < len(table) else "never-seen-value"
        probes.append(inst)
    frame = pd.DataFrame([{c["name"]: p.get(c["name"]) for c in schema} for p in probes],
                         columns=[c["name"] for c in schema])
    expected = ct.transform(_coerce_frame(frame, schema))
    got = compiled.transform(probes)
    if got is None:
        return False
    if sparse.issparse(expected) != sparse.issparse(got):
        return False
    if sparse.issparse(expected):
        expected, got = expected.toarray(), got.toarray()
    expected = np.asarray(expected, dtype=np.float64)
    return expected.shape == got.shape and np.array_equal(expected, got, equal_nan=True)


def _missing_values_not_nan(imputer: SimpleImputer) -> bool:
    return not _is_nan(imputer.missing_values)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _numeric(value: Any):
    """`pd.to_numeric(errors="coerce").astype(float)` for the values it is sure of."""
    if value is None:
        return math.nan
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and -_EXACT_INT < value < _EXACT_INT:
        return float(value)
    return _UNSUPPORTED  # strings (pandas parses them its own way), bools, huge integers
