"""Per-column statistics: one accumulator per column folds in each chunk, then reports a ColumnProfile.

The accumulator keeps exact value counts while a column has few distinct values, the sketches of
``sketches.py`` beyond that, numbers' moments and sample, strings' lengths, padding and the share
that look like numbers or dates; :meth:`ColumnStats.finish` infers the column's type from them.
A string column's per-chunk methods are in ``strings.py`` (StringStats, which ColumnStats extends).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .hashing import NULL_HASH, U64, hash_numbers, mix, salt_for
from .schema import ColumnProfile, Histogram, TopValue
from .sketches import DistinctSketch, Moments, RowSampler
from .strings import _NUMERIC_RE, MAX_SHOWN_EXAMPLES, TYPE_SHARE, StringStats, _as_numpy_bool

TOP_N = 10
STRING_COUNTS_CAP = 10_000
NUMERIC_COUNTS_CAP = 1_000
HISTOGRAM_BINS = 20
CATEGORICAL_MAX_DISTINCT = 50
CATEGORICAL_MAX_SHARE = 0.05
QUANTILES = {"p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}
#: Longest cell value quoted in a profile (top values, examples) or a finding, in characters.
MAX_QUOTED_CHARS = 100

_BOOLEAN_PAIRS = [
    {"true", "false"}, {"yes", "no"}, {"y", "n"}, {"t", "f"}, {"on", "off"},
]
INTEGER_RE = re.compile(r"^\s*[-+]?\d+\s*$")
FLOAT_RE = re.compile(_NUMERIC_RE)
DATE_ONLY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME_NAIVE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$")


def _kind(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_null(t):
        return "null"
    return "other"


class ColumnStats(StringStats):
    """One column's accumulator: :meth:`update` per chunk, then :meth:`finish` for its ColumnProfile."""

    def __init__(self, index: int, name: str, arrow_type: pa.DataType, is_target: bool, sampler: RowSampler):
        self.index = index
        self.name = name
        self.arrow_type = arrow_type
        self.kind = _kind(arrow_type)
        self.is_target = is_target
        self.salt = salt_for(index)
        self.rows = 0
        self.missing = 0
        self.memory = 0
        self.distinct = DistinctSketch()
        self.counts: dict[Any, int] = {}
        self.counts_exact = True
        self.counts_cap = STRING_COUNTS_CAP if self.kind in ("string", "other") else NUMERIC_COUNTS_CAP
        self.moments = Moments(sampler) if self.kind in ("int", "float") else None
        self.int_min: int | None = None
        self.int_max: int | None = None
        self.infinite = 0
        self.trues = 0
        self.tmin: Any = None
        self.tmax: Any = None
        # strings only
        self.seen = 0
        self.num_alive = self.kind in ("string", "other")
        self.num_like = 0
        self.num_bad_examples: list[str] = []
        self.num_moments = Moments(sampler) if self.num_alive else None
        self.date_alive = self.num_alive
        self.date_like = 0
        self.date_bad_examples: list[str] = []
        self.date_min: str | None = None
        self.date_max: str | None = None
        self.whitespace = 0
        self.whitespace_examples: list[str] = []
        self.spaced = 0
        self.spaced_checked = 0
        self.length_sum = 0
        self.length_max = 0
        self.wide = False
        # strings while their counts are exact: the distinct values seen so far (in the order first
        # seen) and what each chunk needs of them, worked out once per value (see _update_known)
        self.known: pa.Array | None = None
        self.known_counts = np.empty(0, dtype=np.int64)
        self.known_hashes = np.array([NULL_HASH], dtype=U64)  # one per value, then a missing value's
        self.known_lengths = np.empty(0, dtype=np.int64)
        self.known_padded = np.empty(0, dtype=bool)
        self.known_spaced = np.empty(0, dtype=bool)
        self.known_numbers = np.array([np.nan])  # one per value (NaN: not a number), then a missing value's
        self.known_dates = np.empty(0, dtype=bool)

    # -- per chunk --

    def update(self, arr: pa.Array, positions: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Fold one chunk of the column in; return the 64-bit hash of each of its rows.

        positions/keys: the chunk's rows that may belong to the sample (see RowSampler).
        """
        self.rows += len(arr)
        self.memory += arr.nbytes
        kind = self.kind
        if kind in ("int", "float"):
            return self._update_number(arr, positions, keys)
        if kind == "bool":
            return self._update_bool(arr)
        if kind in ("date", "timestamp"):
            return self._update_time(arr)
        if kind == "null":
            self.missing += len(arr)
            return np.full(len(arr), NULL_HASH, dtype=U64)
        if kind == "other":
            arr = pc.cast(arr, pa.string())
        return self._update_string(arr, positions, keys)

    def _update_number(self, arr: pa.Array, positions: np.ndarray, keys: np.ndarray) -> np.ndarray:
        if self.kind == "float":
            full = arr.to_numpy(zero_copy_only=False)
            if full.dtype != np.float64:
                full = full.astype(np.float64)
            missing = np.isnan(full)
            n_missing = int(missing.sum())
            if n_missing:
                h = hash_numbers(np.where(missing, 0.0, full), self.salt)
                h[missing] = NULL_HASH
                valid_h = h[~missing]
            else:
                h = valid_h = hash_numbers(full, self.salt)
            finite = np.isfinite(full)
            n_finite = int(finite.sum())
            self.infinite += len(full) - n_missing - n_finite
            good = full if n_finite == len(full) else full[finite]
            self.missing += n_missing
            self.moments.update(good, full, positions, keys)
            if self.counts_exact:
                vc = pc.value_counts(arr)
                self._merge_counts(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), valid_h)
            else:
                self.distinct.update(valid_h)
            return h
        n_missing = arr.null_count
        if n_missing:
            valid = _as_numpy_bool(arr.is_valid())
            ints = arr.fill_null(0).to_numpy().astype(np.int64, copy=False)
            h = hash_numbers(ints, self.salt)
            h[~valid] = NULL_HASH
            good_ints = ints[valid]
            valid_h = h[valid]
            full = ints.astype(np.float64)
            full[~valid] = np.nan
            good = full[valid]
        else:
            good_ints = arr.to_numpy().astype(np.int64, copy=False)
            h = valid_h = hash_numbers(good_ints, self.salt)
            full = good = good_ints.astype(np.float64)
        self.missing += n_missing
        if len(good_ints):
            lo, hi = int(good_ints.min()), int(good_ints.max())
            self.int_min = lo if self.int_min is None else min(self.int_min, lo)
            self.int_max = hi if self.int_max is None else max(self.int_max, hi)
            self.moments.update(good, full, positions, keys)
            if self.counts_exact:
                self._count_ints(good_ints, lo, hi, valid_h)
            else:
                self.distinct.update(valid_h)
        return h

    def _count_ints(self, ints: np.ndarray, lo: int, hi: int, valid_h: np.ndarray) -> None:
        if hi - lo < 65_536:
            counts = np.bincount(ints - lo)
            present = np.flatnonzero(counts)
            self._merge_counts((present + lo).tolist(), counts[present].tolist(), valid_h)
        else:
            vc = pc.value_counts(pa.array(ints))
            self._merge_counts(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), valid_h)

    def _merge_counts(self, values: list, counts: list, valid_h: np.ndarray) -> None:
        """Exact value counts while there are few distinct values (the distinct sketch takes over
        from there, seeded with the values counted so far)."""
        table = self.counts
        if len(values) <= self.counts_cap + 1:
            for value, n in zip(values, counts):
                if value is None or value != value:
                    continue
                table[value] = table.get(value, 0) + n
            if len(table) <= self.counts_cap:
                return
        self.counts_exact = False
        if table:
            dtype = np.float64 if self.kind == "float" else np.int64  # dates/timestamps: their integers
            self.distinct.update(hash_numbers(np.array(list(table), dtype=dtype), self.salt))
        self.distinct.update(valid_h)
        self.counts = {}

    def _update_bool(self, arr: pa.Array) -> np.ndarray:
        n_missing = arr.null_count
        self.missing += n_missing
        self.trues += int(pc.sum(arr).as_py() or 0)
        vals = _as_numpy_bool(arr.fill_null(False) if n_missing else arr).astype(U64)
        h = mix(vals ^ self.salt)
        if n_missing:
            h[~_as_numpy_bool(arr.is_valid())] = NULL_HASH
        return h

    def _update_time(self, arr: pa.Array) -> np.ndarray:
        n_missing = arr.null_count
        self.missing += n_missing
        width = pa.int32() if pa.types.is_date32(arr.type) else pa.int64()
        ints = arr.view(width)
        if n_missing:
            valid = _as_numpy_bool(arr.is_valid())
            h = hash_numbers(ints.fill_null(0).to_numpy(), self.salt)
            h[~valid] = NULL_HASH
            valid_h = h[valid]
        else:
            h = hash_numbers(ints.to_numpy(), self.salt)
            valid_h = h
        if len(arr) > n_missing:
            mm = pc.min_max(ints)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            self.tmin = lo if self.tmin is None else min(self.tmin, lo)
            self.tmax = hi if self.tmax is None else max(self.tmax, hi)
        if self.counts_exact:
            if len(arr) > n_missing:
                valid_ints = ints.drop_null().to_numpy().astype(np.int64, copy=False)
                self._count_ints(valid_ints, int(valid_ints.min()), int(valid_ints.max()), valid_h)
        else:
            self.distinct.update(valid_h)
        return h


    # -- result --

    def _top_values(self) -> list[TopValue]:
        items = sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:TOP_N]
        return [TopValue(quoted(_value_text(v)), int(n)) for v, n in items]

    def finish(self) -> ColumnProfile:
        self._settle_known()
        present = self.rows - self.missing
        distinct = self.distinct.count()
        distinct_approx = self.distinct.approximate
        if self.kind == "bool":
            falses = present - self.trues
            distinct = int(self.trues > 0) + int(falses > 0)
            distinct_approx = False
        elif self.counts_exact and self.kind in ("string", "other", "int", "float", "date", "timestamp"):
            distinct = len(self.counts)
            distinct_approx = False
        out: dict[str, Any] = {
            "name": self.name,
            "type": "text",
            "arrow_type": str(self.arrow_type),
            "missing_count": int(self.missing),
            "missing_share": share(self.missing, self.rows),
            "distinct_count": int(distinct),
            "distinct_approximate": bool(distinct_approx),
            "memory_bytes": int(self.memory),
            "invalid_count": 0,
            "invalid_examples": [],
            "is_target": self.is_target,
            "is_empty": present == 0,
        }
        kind = self.kind
        if present == 0:
            out["type"] = "text"
        elif kind == "bool":
            out["type"] = "boolean"
            out["top_values"] = [
                TopValue(v, int(n))
                for v, n in sorted((("True", self.trues), ("False", present - self.trues)), key=lambda kv: -kv[1])
                if n
            ]
            out["top_values_approximate"] = False
        elif kind in ("int", "float"):
            self._finish_number(out, self.moments, integer=(kind == "int"))
            out["infinite_count"] = int(self.infinite)
            out["invalid_count"] = int(self.infinite)
            if self.infinite:
                out["invalid_examples"] = ["inf"]
        elif kind in ("date", "timestamp"):
            out["type"] = "datetime"
            out["min"] = _time_text(self.tmin, self.arrow_type)
            out["max"] = _time_text(self.tmax, self.arrow_type)
        else:
            self._finish_string(out, present)
        if out["type"] in ("categorical", "text", "boolean") and kind in ("string", "other"):
            out["mean_length"] = round(self.length_sum / present, 2) if present else None
            out["max_length"] = int(self.length_max)
        if kind in ("string", "other"):
            out["whitespace_count"] = int(self.whitespace)
            out["whitespace_examples"] = [quoted(v) for v in self.whitespace_examples]
            out["case_variants"] = self._case_variants() if out["type"] in ("categorical", "boolean") else []
        out["is_constant"] = bool(present > 0 and distinct == 1)
        out["looks_like_identifier"] = self._looks_like_identifier(out, present)
        return ColumnProfile(**out)

    def _finish_number(self, out: dict, moments: Moments, integer: bool) -> None:
        present_numbers = moments.n
        if (
            self.counts_exact and len(self.counts) == 2
            and set(self.counts) <= {0, 1, 0.0, 1.0, "0", "1"}
            and {float(v) for v in self.counts} == {0.0, 1.0}
        ):
            out["type"] = "boolean"
            out["top_values"] = self._top_values()
            out["top_values_approximate"] = False
            out["mean"] = _float(moments.mean)
            return
        out["type"] = "numeric"
        if integer and self.int_min is not None:
            out["min"], out["max"] = self.int_min, self.int_max
        else:
            out["min"], out["max"] = _float(moments.min), _float(moments.max)
        out["mean"] = _float(moments.mean) if present_numbers else None
        out["std"] = _float(moments.std())
        sample = moments.sample()
        if len(sample):
            qs = np.quantile(sample, list(QUANTILES.values()))
            out["quantiles"] = {k: _float(q) for k, q in zip(QUANTILES, qs)}
        else:
            out["quantiles"] = {k: None for k in QUANTILES}
        out["quantiles_approximate"] = not moments.exact_sample()
        out["histogram"] = self._histogram(moments, integer)
        if self.counts_exact and self.counts and len(self.counts) <= CATEGORICAL_MAX_DISTINCT:
            out["top_values"] = self._top_values()
        out["integer"] = bool(integer)

    def _histogram(self, moments: Moments, integer: bool) -> Histogram:
        if not moments.n:
            return Histogram()
        lo, hi = moments.min, moments.max
        numeric_counts = self.counts_exact and self.counts and all(
            isinstance(v, (int, float)) for v in self.counts
        )
        if integer and hi - lo < HISTOGRAM_BINS and numeric_counts:
            edges = np.arange(lo, hi + 2, dtype=np.float64)
            counts = np.zeros(len(edges) - 1, dtype=np.int64)
            for value, n in self.counts.items():
                counts[int(value - lo)] += n
            return Histogram([_float(e) for e in edges], counts.tolist())
        if lo == hi:
            return Histogram([_float(lo), _float(hi)], [int(moments.n)])
        edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
        edges = np.array([float(f"{e:.12g}") for e in edges])  # 12.357, not 12.357000000000001
        edges[0], edges[-1] = lo, hi
        counts, _ = np.histogram(moments.sample(), bins=edges)
        approximate = not moments.exact_sample()
        if approximate:
            counts = _scale_counts(counts, moments.n)
        return Histogram([_float(e) for e in edges], [int(c) for c in counts], approximate)

    def _finish_string(self, out: dict, present: int) -> None:
        distinct = out["distinct_count"]
        if self.num_alive and self.num_like >= TYPE_SHARE * present and self.num_moments is not None \
                and self.num_moments.n:
            integer = self.counts_exact and all(INTEGER_RE.match(str(v)) for v in self.counts)
            self._finish_number(out, self.num_moments, integer=False)
            if out["type"] == "numeric" and integer:
                out["min"], out["max"] = int(self.num_moments.min), int(self.num_moments.max)
                out["integer"] = True
            out["invalid_count"] = int(present - self.num_like)
            out["invalid_examples"] = [quoted(v) for v in self.num_bad_examples]
            return
        if self.date_alive and self.date_like >= TYPE_SHARE * present:
            out["type"] = "datetime"
            out["min"], out["max"] = self.date_min, self.date_max
            out["invalid_count"] = int(present - self.date_like)
            out["invalid_examples"] = [quoted(v) for v in self.date_bad_examples]
            return
        out["top_values"] = self._top_values()
        out["top_values_approximate"] = not self.counts_exact
        lowered = {str(v).strip().lower() for v in self.counts} if self.counts_exact else set()
        if self.counts_exact and distinct == 2 and any(lowered == pair for pair in _BOOLEAN_PAIRS):
            out["type"] = "boolean"
        elif distinct <= CATEGORICAL_MAX_DISTINCT or distinct <= CATEGORICAL_MAX_SHARE * present:
            out["type"] = "categorical"
        else:
            out["type"] = "text"

    def _case_variants(self) -> list[list[str]]:
        if not self.counts_exact:
            return []
        groups: dict[str, list[str]] = {}
        for value in self.counts:
            groups.setdefault(" ".join(str(value).split()).casefold(), []).append(str(value))
        return [[quoted(v) for v in sorted(g)[:MAX_SHOWN_EXAMPLES]] for g in groups.values() if len(g) > 1][:10]

    def _looks_like_identifier(self, out: dict, present: int) -> bool:
        if self.is_target or present < 10 or out["missing_share"] > 0.05:
            return False
        distinct = out["distinct_count"]
        needed = 0.95
        if distinct < needed * present:
            return False
        if out["type"] == "numeric":
            return bool(out.get("integer"))
        if out["type"] in ("text", "categorical"):
            spaced_share = self.spaced / self.spaced_checked if self.spaced_checked else 0.0
            mean_length = self.length_sum / present if present else 0.0
            return spaced_share < 0.01 and mean_length <= 64
        return False


# --- helpers ----------------------------------------------------------------------------------


def share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _float(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def quoted(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """A cell value as a profile or a finding quotes it: at most `limit` characters, "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value_text(v: Any) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return repr(v)
    return str(v)


def _time_text(v: int | None, arrow_type: pa.DataType) -> str | None:
    if v is None:
        return None
    width = pa.int32() if pa.types.is_date32(arrow_type) else pa.int64()
    value = pa.array([v], type=width).view(arrow_type)[0].as_py()
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _scale_counts(counts: np.ndarray, total: int) -> np.ndarray:
    """Scale sample counts to sum to total (largest-remainder rounding)."""
    s = counts.sum()
    if not s:
        return counts
    exact = counts * (total / s)
    out = np.floor(exact).astype(np.int64)
    short = int(total - out.sum())
    if short > 0:
        out[np.argsort(-(exact - out), kind="stable")[:short]] += 1
    return out

