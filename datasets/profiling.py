"""Streaming profile of a CSV file: column types, statistics and a data quality score.

Pure Python (no Django). The public functions are

* :func:`profile_csv` -- one streaming pass over the file with bounded memory;
* :func:`quality` -- a 0-100 quality score and human findings computed from a profile;
* :func:`first_rows` -- the header and the first rows as strings, for a preview.

Everything returned is JSON-serialisable (str, int, float, bool, None, list, dict; NaN and
infinities become None).

How it works (see also docs/quality.md)
---------------------------------------
The file is read with ``pyarrow.csv.open_csv`` (a streaming reader that parses in C++ on
background threads), fed through a small throttle so that Arrow never reads more than a few
blocks ahead of the profiler: Arrow's own read-ahead is otherwise unbounded and would pull a large
file into memory. Blocks are about 4 MiB of CSV text (fewer rows if ``chunk_rows`` asks for it);
each becomes a record batch that is folded into per-column accumulators, then dropped. Arrow
infers column types from the first block; if a later block contradicts them (an integer column
with a decimal further down, an empty column that fills up later, ...) the pass is restarted with
that column's type widened (int64 -> float64 -> string), so results never depend on the first
block alone (``restarts`` in the result counts these).

Per column, with bounded memory:

* missing values: exact. The missing markers are pandas' defaults (empty, NA, N/A, null, NaN, ...).
* distinct values: exact value counts while a column has few distinct values; beyond that every
  value is hashed to 64 bits and a sketch keeps the smallest ``DISTINCT_CAP`` distinct hashes.
  Below the cap the count is exact (up to 64-bit hash collisions); above it, it is the
  K-minimum-values estimate (relative error about 1/sqrt(100,000) = 0.3 %) and
  ``distinct_approximate`` is true.
* value counts (top values): exact while a column has at most ``STRING_COUNTS_CAP`` (strings) or
  ``NUMERIC_COUNTS_CAP`` (numbers) distinct values; beyond that strings keep the heaviest
  candidates of each chunk (at most ``2 * HEAVY_HITTERS``) and ``top_values_approximate`` is true.
* numbers: count, min, max, mean and standard deviation (sample, ddof=1, like pandas) are exact,
  merged across chunks with Chan's parallel formula. Infinite values are counted apart and left out
  of the statistics. Quantiles and the histogram come from a uniform sample of ``SAMPLE_SIZE``
  rows (bottom-k of a hash of the row number, shared by all columns, so it does not depend on the
  chunking); they are exact when the file has no more rows than that, otherwise approximate
  (``quantiles_approximate``) with a rank error around 0.3 %. The histogram has 20 equal-width
  bins from the exact min to the exact max (integer columns with a range below 20 get one bin per
  integer and exact counts); sample counts are scaled to the column's size.
* duplicate rows: rows minus distinct rows, the distinct rows being counted on 64-bit row hashes
  kept in a sorted array. Exact up to ``DUPLICATE_HASH_CAP`` distinct rows; beyond that only the
  smallest hashes are kept, the number of distinct rows is a K-minimum-values estimate and
  ``duplicate_rows_approximate`` is true.

Type inference (``type``), in order:

* all values missing: ``text`` (and ``is_empty``).
* Arrow booleans (true/false, True/False, TRUE/FALSE): ``boolean``.
* numbers whose only two values are 0 and 1: ``boolean`` (so titanic's ``survived`` is boolean,
  with top values "0" and "1"); other numbers: ``numeric``. Integer codes such as ``pclass``
  stay numeric.
* ISO dates and timestamps: ``datetime``.
* strings of which at least 80 % look like numbers / ISO dates: ``numeric`` / ``datetime`` (the
  rest are reported as invalid values).
* strings whose two values are a yes/no pair (yes/no, y/n, true/false, t/f, on/off, any case):
  ``boolean`` (titanic's ``alive``).
* other strings: ``categorical`` when there are at most 50 distinct values or at most 5 % as many
  distinct values as non-missing values, else ``text``.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

__all__ = [
    "NULL_VALUES",
    "ProfilingError",
    "first_rows",
    "profile_csv",
    "quality",
]

#: Values read as missing: pandas' defaults for ``read_csv``.
NULL_VALUES = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]

TOP_N = 10
DISTINCT_CAP = 100_000
STRING_COUNTS_CAP = 10_000
NUMERIC_COUNTS_CAP = 1_000
HEAVY_HITTERS = 1_000
SAMPLE_SIZE = 100_000
HISTOGRAM_BINS = 20
DUPLICATE_HASH_CAP = 4_000_000
CATEGORICAL_MAX_DISTINCT = 50
CATEGORICAL_MAX_SHARE = 0.05
TYPE_SHARE = 0.8
QUANTILES = {"p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}

_MIN_BLOCK = 1024
_MAX_BLOCK = 4 * 1024 * 1024
_BLOCK_LIMIT = 1024 * 1024 * 1024
_READ_AHEAD_BLOCKS = 4
_PENDING_ROW_HASHES = 1 << 18
_MAX_SHOWN_EXAMPLES = 3

_BOOLEAN_PAIRS = [
    {"true", "false"}, {"yes", "no"}, {"y", "n"}, {"t", "f"}, {"on", "off"},
]
_NUMERIC_RE = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"
_INTEGER_RE = re.compile(r"^\s*[-+]?\d+\s*$")
_FLOAT_RE = re.compile(_NUMERIC_RE)
_DATE_RE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
_DATE_ONLY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_NAIVE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$")
_CONVERSION_RE = re.compile(r"In CSV column #(\d+): CSV conversion error to ([^:]+): invalid value '(.*)'", re.S)


class ProfilingError(ValueError):
    """The file could not be profiled; the message is meant for the user."""


# --- hashing ----------------------------------------------------------------------------------

_U64 = np.uint64
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_ROW_PRIME = _U64(0x100000001B3)
_S27, _S30, _S31 = _U64(27), _U64(30), _U64(31)
_NULL_HASH = _U64(0x6A09E667F3BCC909)
_SHORT_STRING_WORDS = 8
_ORDINAL_SALT = np.arange(_SHORT_STRING_WORDS + 1, dtype=_U64) * _M1  # word j adds j * M1 (wrapping)
_WORD_MASKS = np.array([(1 << (8 * k)) - 1 if k < 8 else (1 << 64) - 1 for k in range(9)], dtype=_U64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place on a uint64 array (which it returns)."""
    t = x >> _S30
    x ^= t
    x *= _M1
    np.right_shift(x, _S27, out=t)
    x ^= t
    x *= _M2
    np.right_shift(x, _S31, out=t)
    x ^= t
    return x


def _salt(index: int) -> np.uint64:
    return _mix(np.array([index + 1], dtype=_U64) * _GOLDEN)[0]


def _hash_strings(arr: pa.Array, salt: np.uint64) -> np.ndarray:
    """A 64-bit hash of each value of a string or binary array (nulls are hashed as empty).

    Vectorised over 8-byte words: word j of a string contributes mix(word + j * M1) and the sum is
    mixed with the length. Equal strings get equal hashes whatever array they are in.
    """
    n = len(arr)
    if n == 0:
        return np.empty(0, dtype=_U64)
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    odtype = np.int64 if large else np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=odtype, count=n + 1, offset=arr.offset * odtype().itemsize)
    offsets = offsets.astype(np.int64)
    base = int(offsets[0])
    offsets -= base
    total = int(offsets[-1])
    lengths = np.diff(offsets)
    h = lengths.astype(_U64) * _GOLDEN + salt
    if total:
        data = np.zeros(total + 8, dtype=np.uint8)
        data[:total] = np.frombuffer(bufs[2], dtype=np.uint8, count=total, offset=base)
        words = np.ndarray((total,), dtype="<u8", buffer=data, strides=(1,))
        nwords = (lengths + 7) >> 3
        max_words = int(nwords.max())
        starts = offsets[:-1]
        if max_words <= _SHORT_STRING_WORDS:
            # Short strings: one pass per word position over the strings that are that long.
            for j in range(max_words):
                remaining = lengths - 8 * j
                active = remaining > 0
                if active.all():
                    w = words[starts + 8 * j]
                    partial = remaining < 8
                    if partial.any():
                        w[partial] &= _WORD_MASKS[remaining[partial]]
                    w += _ORDINAL_SALT[j]
                    h += _mix(w)
                else:
                    ai = np.flatnonzero(active)
                    w = words[starts[ai] + 8 * j]
                    rem = remaining[ai]
                    partial = rem < 8
                    if partial.any():
                        w[partial] &= _WORD_MASKS[rem[partial]]
                    w += _ORDINAL_SALT[j]
                    h[ai] += _mix(w)
        else:
            has_words = nwords > 0
            first = np.cumsum(nwords) - nwords
            owner = np.repeat(np.arange(n), nwords)
            ordinal = np.arange(len(owner)) - first[owner]
            w = words[starts[owner] + 8 * ordinal]
            remaining = np.minimum(lengths[owner] - 8 * ordinal, 8)
            w &= _WORD_MASKS[remaining]
            w += ordinal.astype(_U64) * _M1
            _mix(w)
            h[has_words] += np.add.reduceat(w, first[has_words])
    return _mix(h)


def _unique_sorted(x: np.ndarray) -> np.ndarray:
    """np.unique for uint64 (sort-based: much faster than NumPy's hash-based unique here)."""
    if len(x) < 2:
        return np.sort(x)
    a = np.sort(x)
    keep = np.empty(len(a), dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _merge_sorted(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    """Union of two sorted, duplicate-free uint64 arrays (without re-sorting ``a``), and the
    number of values of ``b`` that were not in ``a``."""
    if not len(a):
        return b, len(b)
    if not len(b):
        return a, 0
    pos = np.searchsorted(a, b)
    inside = pos < len(a)
    fresh = np.ones(len(b), dtype=bool)
    fresh[inside] = a[pos[inside]] != b[inside]
    added = int(fresh.sum())
    if not added:
        return a, 0
    return np.insert(a, pos[fresh], b[fresh]), added


def _hash_numbers(values: np.ndarray, salt: np.uint64) -> np.ndarray:
    """Hash of int64/float64 values (floats: -0.0 is 0.0)."""
    if values.dtype.kind == "f":
        values = values + 0.0
        bits = values.view(_U64)
    else:
        bits = values.astype(np.int64, copy=False).view(_U64)
    return _mix(bits ^ salt)


# --- sketches ---------------------------------------------------------------------------------


class _DistinctSketch:
    """Exact distinct count up to ``cap`` hashes, K-minimum-values estimate beyond.

    Incoming hashes are buffered and merged in batches; once the sketch is full, only hashes
    below its current largest one can matter, so most of them are dropped on arrival.
    """

    __slots__ = ("cap", "hashes", "saturated", "pending", "pending_len", "repetitive")

    def __init__(self, cap: int | None = None):
        self.cap = cap or DISTINCT_CAP
        self.hashes = np.empty(0, dtype=_U64)
        self.saturated = False
        self.pending: list[np.ndarray] = []
        self.pending_len = 0
        self.repetitive = False

    def update(self, h: np.ndarray) -> None:
        if self.saturated:
            h = h[h < self.hashes[-1]]
        elif self.repetitive and len(h) > 1024:
            # Many repeats: a hash-based unique per chunk keeps the buffer (and the sorts) small.
            h = pc.unique(pa.array(h, type=pa.uint64())).to_numpy()
        if not len(h):
            return
        self.pending.append(h)
        self.pending_len += len(h)
        if self.pending_len >= self.cap // 2:
            self._merge()

    def _merge(self) -> None:
        if not self.pending:
            return
        incoming = self.pending_len
        new = _unique_sorted(np.concatenate(self.pending))
        self.pending, self.pending_len = [], 0
        if self.saturated:
            new = new[new < self.hashes[-1]]
        merged, added = _merge_sorted(self.hashes, new)
        self.repetitive = added < incoming // 2
        if len(merged) > self.cap:
            merged = merged[: self.cap].copy()
            self.saturated = True
        self.hashes = merged

    def count(self) -> int:
        self._merge()
        k = len(self.hashes)
        if not self.saturated:
            return k
        kth = (float(self.hashes[-1]) + 1.0) / 2.0**64
        return int(round((k - 1) / kth))

    @property
    def approximate(self) -> bool:
        self._merge()
        return self.saturated


_NO_THRESHOLD = np.iinfo(np.uint64).max
_SAMPLE_SEED = _U64(0x243F6A8885A308D3)


class _RowSampler:
    """A uniform sample of row numbers shared by all columns: the rows whose key (a hash of the
    row number) is among the ``size`` smallest. Bottom-k by key is a uniform sample without
    replacement, it does not depend on the chunking, and computing one key per row (not per
    column) keeps it cheap. Each column keeps its values for the sampled rows where it has one.
    """

    def __init__(self, size: int | None = None):
        self.size = size or SAMPLE_SIZE
        self.threshold = _NO_THRESHOLD  # rows with key <= threshold are in the sample
        self.keys = np.empty(0, dtype=_U64)
        self.pending: list[np.ndarray] = []
        self.pending_len = 0

    def select(self, offset: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (within the chunk) and keys of the chunk's rows that may be in the sample."""
        keys = _mix(np.arange(offset, offset + n, dtype=_U64) ^ _SAMPLE_SEED)
        if self.threshold == _NO_THRESHOLD:
            positions = np.arange(n)
        else:
            positions = np.flatnonzero(keys <= self.threshold)
            keys = keys[positions]
        self.pending.append(keys)
        self.pending_len += len(keys)
        if len(self.keys) + self.pending_len > self.size + self.size // 4:
            merged = np.concatenate([self.keys, *self.pending])
            self.pending, self.pending_len = [], 0
            self.threshold = np.partition(merged, self.size - 1)[self.size - 1]
            self.keys = merged[merged <= self.threshold]
        return positions, keys

    @property
    def complete(self) -> bool:
        """True while every row is in the sample."""
        return self.threshold == _NO_THRESHOLD


class _Moments:
    """Exact count/mean/variance/min/max, and the column's values on the sampled rows."""

    def __init__(self, sampler: _RowSampler):
        self.sampler = sampler
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min: float | None = None
        self.max: float | None = None
        self.keys = np.empty(0, dtype=_U64)
        self.values = np.empty(0, dtype=np.float64)
        self.pending_keys: list[np.ndarray] = []
        self.pending_values: list[np.ndarray] = []
        self.pending_len = 0

    def update(self, values: np.ndarray, full: np.ndarray, positions: np.ndarray, keys: np.ndarray) -> None:
        """values: the chunk's finite values; full: the chunk as float64 (NaN/inf where there is
        no usable value); positions/keys: the chunk's candidate sample rows (from the sampler)."""
        nb = len(values)
        if not nb:
            return
        mean_b = float(values.mean())
        d = values - mean_b
        d *= d
        m2_b = float(d.sum())  # not np.dot: BLAS threads would spin on big chunks
        vmin, vmax = float(values.min()), float(values.max())
        if self.n == 0:
            self.n, self.mean, self.m2, self.min, self.max = nb, mean_b, m2_b, vmin, vmax
        else:
            n = self.n + nb
            delta = mean_b - self.mean
            self.mean += delta * nb / n
            self.m2 += m2_b + delta * delta * self.n * nb / n
            self.n = n
            self.min = min(self.min, vmin)
            self.max = max(self.max, vmax)
        if not len(positions):
            return
        sampled = full[positions]
        ok = np.isfinite(sampled)
        if not ok.all():
            sampled, keys = sampled[ok], keys[ok]
        self.pending_keys.append(keys)
        self.pending_values.append(sampled)
        self.pending_len += len(keys)
        if self.pending_len >= self.sampler.size // 4:
            self._merge()

    def _merge(self) -> None:
        if not self.pending_keys:
            return
        keys = np.concatenate([self.keys, *self.pending_keys])
        values = np.concatenate([self.values, *self.pending_values])
        self.pending_keys, self.pending_values, self.pending_len = [], [], 0
        threshold = self.sampler.threshold
        if threshold != _NO_THRESHOLD:
            keep = keys <= threshold
            keys, values = keys[keep], values[keep]
        self.keys, self.values = keys, values

    def sample(self) -> np.ndarray:
        self._merge()
        return self.values

    def std(self) -> float | None:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else None

    def exact_sample(self) -> bool:
        return self.sampler.complete


class _DuplicateCounter:
    """Counts duplicate rows as rows minus distinct row hashes.

    The distinct 64-bit row hashes are kept in a sorted array: exact (up to hash collisions,
    negligible below billions of rows) while there are at most ``cap`` distinct rows. Beyond that
    only the ``cap`` smallest hashes are kept, the number of distinct rows is the K-minimum-values
    estimate, and the result is flagged approximate.
    """

    def __init__(self, cap: int | None = None):
        self.cap = cap or DUPLICATE_HASH_CAP
        self.hashes = np.empty(0, dtype=_U64)
        self.saturated = False
        self.rows = 0
        self.pending: list[np.ndarray] = []
        self.pending_len = 0

    def add(self, row_hashes: np.ndarray) -> None:
        self.rows += len(row_hashes)
        if self.saturated:
            row_hashes = row_hashes[row_hashes < self.hashes[-1]]
        self.pending.append(row_hashes)
        self.pending_len += len(row_hashes)
        if self.pending_len >= _PENDING_ROW_HASHES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        new = _unique_sorted(np.concatenate(self.pending))
        self.pending, self.pending_len = [], 0
        if self.saturated:
            new = new[new < self.hashes[-1]]
        self.hashes, _ = _merge_sorted(self.hashes, new)
        if len(self.hashes) > self.cap:
            self.hashes = self.hashes[: self.cap].copy()
            self.saturated = True

    def duplicates(self) -> int:
        self.flush()
        if not self.saturated:
            return self.rows - len(self.hashes)
        kth = (float(self.hashes[-1]) + 1.0) / 2.0**64
        distinct = (len(self.hashes) - 1) / kth
        return max(0, int(round(self.rows - distinct)))

    @property
    def approximate(self) -> bool:
        self.flush()
        return self.saturated


# --- columns ----------------------------------------------------------------------------------


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


def _as_numpy_bool(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


class _Column:
    def __init__(self, index: int, name: str, arrow_type: pa.DataType, is_target: bool, sampler: _RowSampler):
        self.index = index
        self.name = name
        self.arrow_type = arrow_type
        self.kind = _kind(arrow_type)
        self.is_target = is_target
        self.salt = _salt(index)
        self.rows = 0
        self.missing = 0
        self.memory = 0
        self.distinct = _DistinctSketch()
        self.counts: dict[Any, int] = {}
        self.counts_exact = True
        self.counts_cap = STRING_COUNTS_CAP if self.kind in ("string", "other") else NUMERIC_COUNTS_CAP
        self.moments = _Moments(sampler) if self.kind in ("int", "float") else None
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
        self.num_moments = _Moments(sampler) if self.num_alive else None
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

    # -- per chunk --

    def update(self, arr: pa.Array, positions: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Fold one chunk of the column in; return the 64-bit hash of each of its rows.

        positions/keys: the chunk's rows that may belong to the sample (see _RowSampler).
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
            return np.full(len(arr), _NULL_HASH, dtype=_U64)
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
                h = _hash_numbers(np.where(missing, 0.0, full), self.salt)
                h[missing] = _NULL_HASH
                valid_h = h[~missing]
            else:
                h = valid_h = _hash_numbers(full, self.salt)
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
            h = _hash_numbers(ints, self.salt)
            h[~valid] = _NULL_HASH
            good_ints = ints[valid]
            valid_h = h[valid]
            full = ints.astype(np.float64)
            full[~valid] = np.nan
            good = full[valid]
        else:
            good_ints = arr.to_numpy().astype(np.int64, copy=False)
            h = valid_h = _hash_numbers(good_ints, self.salt)
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
            self.distinct.update(_hash_numbers(np.array(list(table), dtype=dtype), self.salt))
        self.distinct.update(valid_h)
        self.counts = {}

    def _update_bool(self, arr: pa.Array) -> np.ndarray:
        n_missing = arr.null_count
        self.missing += n_missing
        self.trues += int(pc.sum(arr).as_py() or 0)
        vals = _as_numpy_bool(arr.fill_null(False) if n_missing else arr).astype(_U64)
        h = _mix(vals ^ self.salt)
        if n_missing:
            h[~_as_numpy_bool(arr.is_valid())] = _NULL_HASH
        return h

    def _update_time(self, arr: pa.Array) -> np.ndarray:
        n_missing = arr.null_count
        self.missing += n_missing
        width = pa.int32() if pa.types.is_date32(arr.type) else pa.int64()
        ints = arr.view(width)
        if n_missing:
            valid = _as_numpy_bool(arr.is_valid())
            h = _hash_numbers(ints.fill_null(0).to_numpy(), self.salt)
            h[~valid] = _NULL_HASH
            valid_h = h[valid]
        else:
            h = _hash_numbers(ints.to_numpy(), self.salt)
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

    def _update_string(self, arr: pa.Array, positions: np.ndarray, keys: np.ndarray) -> np.ndarray:
        n = len(arr)
        n_missing = arr.null_count
        self.missing += n_missing
        encoded = arr.dictionary_encode()
        dictionary = encoded.dictionary
        k = len(dictionary)
        indices = encoded.indices
        if n_missing:
            idx = pc.fill_null(indices, k).to_numpy()
        else:
            idx = indices.to_numpy()
        counts = np.bincount(idx, minlength=k + 1)
        dict_hashes = _hash_strings(dictionary, self.salt)
        table = np.append(dict_hashes, _NULL_HASH)
        row_hashes = table[idx]
        counts = counts[:k]
        n_valid = n - n_missing
        if not k:
            return row_hashes
        self._count_strings(dictionary, counts, dict_hashes)
        lengths = pc.utf8_length(dictionary).to_numpy()
        self.length_sum += int((lengths * counts).sum())
        self.length_max = max(self.length_max, int(lengths.max()))
        stripped = pc.utf8_trim_whitespace(dictionary)
        padded = _as_numpy_bool(pc.not_equal(stripped, dictionary))
        if padded.any():
            self.whitespace += int(counts[padded].sum())
            if len(self.whitespace_examples) < _MAX_SHOWN_EXAMPLES:
                for value in dictionary.filter(pa.array(padded)).to_pylist()[:_MAX_SHOWN_EXAMPLES]:
                    if len(self.whitespace_examples) < _MAX_SHOWN_EXAMPLES:
                        self.whitespace_examples.append(value)
        if self.spaced_checked < 10_000:
            inner = _as_numpy_bool(pc.match_substring_regex(stripped, r"\s"))
            self.spaced += int(counts[inner].sum())
            self.spaced_checked += n_valid
        if self.num_alive or self.date_alive:
            self._track_candidates(dictionary, stripped, counts, idx, k, positions, keys)
        self.seen += n_valid
        return row_hashes

    def _count_strings(self, dictionary: pa.Array, counts: np.ndarray, dict_hashes: np.ndarray) -> None:
        """Exact value counts while there are few distinct values, then heavy hitters only (the
        distinct sketch takes over, seeded with the values counted so far)."""
        table = self.counts
        if self.counts_exact:
            if len(dictionary) <= self.counts_cap:
                for value, n in zip(dictionary.to_pylist(), counts.tolist()):
                    table[value] = table.get(value, 0) + n
                if len(table) <= self.counts_cap:
                    return
            self.counts_exact = False
            if table:
                self.distinct.update(_hash_strings(pa.array(list(table), type=pa.string()), self.salt))
            self.distinct.update(dict_hashes)
            if len(table) > HEAVY_HITTERS:
                self._prune_counts(HEAVY_HITTERS)
            if len(dictionary) <= self.counts_cap:
                return
        else:
            self.distinct.update(dict_hashes)
        table = self.counts
        take = min(len(counts), 32)
        top = np.argpartition(-counts, take - 1)[:take] if take < len(counts) else np.arange(len(counts))
        values = dictionary.take(pa.array(top)).to_pylist()
        for value, n in zip(values, counts[top].tolist()):
            table[value] = table.get(value, 0) + n
        if len(table) > 2 * HEAVY_HITTERS:
            self._prune_counts(HEAVY_HITTERS)

    def _prune_counts(self, keep: int) -> None:
        items = sorted(self.counts.items(), key=lambda kv: -kv[1])[:keep]
        self.counts = dict(items)

    def _track_candidates(self, dictionary, stripped, counts, idx, k, positions, keys) -> None:
        total = int(counts.sum())
        if self.num_alive:
            is_num = _as_numpy_bool(pc.match_substring_regex(dictionary, _NUMERIC_RE))
            like = int(counts[is_num].sum())
            self.num_like += like
            if like < total and len(self.num_bad_examples) < _MAX_SHOWN_EXAMPLES:
                bad = np.flatnonzero(~is_num)
                bad = bad[np.argsort(-counts[bad], kind="stable")][:_MAX_SHOWN_EXAMPLES]
                for value in dictionary.take(pa.array(bad)).to_pylist():
                    if len(self.num_bad_examples) < _MAX_SHOWN_EXAMPLES and value not in self.num_bad_examples:
                        self.num_bad_examples.append(value)
            if like:
                try:
                    numbers = pc.cast(stripped.filter(pa.array(is_num)), pa.float64()).to_numpy(zero_copy_only=False)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    self._kill_numeric()
                else:
                    table = np.full(k + 1, np.nan)
                    table[:k][is_num] = numbers
                    per_row = table[idx]
                    finite = np.isfinite(per_row)
                    self.num_moments.update(per_row[finite], per_row, positions, keys)
            seen = self.seen + total
            if seen >= 1000 and (seen - self.num_like) > (1 - TYPE_SHARE) * seen:
                self._kill_numeric()
        if self.date_alive:
            is_date = _as_numpy_bool(pc.match_substring_regex(dictionary, _DATE_RE))
            like = int(counts[is_date].sum())
            self.date_like += like
            if like:
                dates = dictionary.filter(pa.array(is_date))
                mm = pc.min_max(dates)
                lo, hi = mm["min"].as_py(), mm["max"].as_py()
                self.date_min = lo if self.date_min is None else min(self.date_min, lo)
                self.date_max = hi if self.date_max is None else max(self.date_max, hi)
                if like < total and len(self.date_bad_examples) < _MAX_SHOWN_EXAMPLES:
                    bad = np.flatnonzero(~is_date)
                    bad = bad[np.argsort(-counts[bad], kind="stable")][:_MAX_SHOWN_EXAMPLES]
                    for value in dictionary.take(pa.array(bad)).to_pylist():
                        if len(self.date_bad_examples) < _MAX_SHOWN_EXAMPLES and value not in self.date_bad_examples:
                            self.date_bad_examples.append(value)
            seen = self.seen + total
            if seen >= 1000 and (seen - self.date_like) > (1 - TYPE_SHARE) * seen:
                self.date_alive = False

    def _kill_numeric(self) -> None:
        self.num_alive = False
        self.num_moments = None

    # -- result --

    def _top_values(self) -> list[dict]:
        items = sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:TOP_N]
        return [{"value": _value_text(v), "count": int(n)} for v, n in items]

    def finish(self, total_rows: int) -> dict:
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
            "missing_share": _share(self.missing, self.rows),
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
                {"value": v, "count": int(n)}
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
            out["whitespace_examples"] = list(self.whitespace_examples)
            out["case_variants"] = self._case_variants() if out["type"] in ("categorical", "boolean") else []
        out["is_constant"] = bool(present > 0 and distinct == 1)
        out["looks_like_identifier"] = self._looks_like_identifier(out, present)
        return out

    def _finish_number(self, out: dict, moments: _Moments, integer: bool) -> None:
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

    def _histogram(self, moments: _Moments, integer: bool) -> dict:
        if not moments.n:
            return {"bins": [], "counts": [], "approximate": False}
        lo, hi = moments.min, moments.max
        numeric_counts = self.counts_exact and self.counts and all(
            isinstance(v, (int, float)) for v in self.counts
        )
        if integer and hi - lo < HISTOGRAM_BINS and numeric_counts:
            edges = np.arange(lo, hi + 2, dtype=np.float64)
            counts = np.zeros(len(edges) - 1, dtype=np.int64)
            for value, n in self.counts.items():
                counts[int(value - lo)] += n
            return {"bins": [_float(e) for e in edges], "counts": counts.tolist(), "approximate": False}
        if lo == hi:
            return {"bins": [_float(lo), _float(hi)], "counts": [int(moments.n)], "approximate": False}
        edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
        edges = np.array([float(f"{e:.12g}") for e in edges])  # 12.357, not 12.357000000000001
        edges[0], edges[-1] = lo, hi
        counts, _ = np.histogram(moments.sample(), bins=edges)
        approximate = not moments.exact_sample()
        if approximate:
            counts = _scale_counts(counts, moments.n)
        return {"bins": [_float(e) for e in edges], "counts": [int(c) for c in counts], "approximate": approximate}

    def _finish_string(self, out: dict, present: int) -> None:
        distinct = out["distinct_count"]
        if self.num_alive and self.num_like >= TYPE_SHARE * present and self.num_moments is not None \
                and self.num_moments.n:
            integer = self.counts_exact and all(_INTEGER_RE.match(str(v)) for v in self.counts)
            self._finish_number(out, self.num_moments, integer=False)
            if out["type"] == "numeric" and integer:
                out["min"], out["max"] = int(self.num_moments.min), int(self.num_moments.max)
                out["integer"] = True
            out["invalid_count"] = int(present - self.num_like)
            out["invalid_examples"] = list(self.num_bad_examples)
            return
        if self.date_alive and self.date_like >= TYPE_SHARE * present:
            out["type"] = "datetime"
            out["min"], out["max"] = self.date_min, self.date_max
            out["invalid_count"] = int(present - self.date_like)
            out["invalid_examples"] = list(self.date_bad_examples)
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
        return [sorted(g)[:_MAX_SHOWN_EXAMPLES] for g in groups.values() if len(g) > 1][:10]

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


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _float(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


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


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _float(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def _arrow_encoding(encoding: str) -> str:
    """Arrow reads UTF-8 natively (and skips a BOM); other encodings go through Python's codecs."""
    try:
        normal = codecs.lookup(encoding).name
    except LookupError as exc:
        raise ValueError(f"unknown encoding {encoding!r}") from exc
    return "utf8" if normal in ("utf-8", "utf-8-sig", "ascii") else encoding


def _average_row_bytes(path: str) -> float:
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    lines = head.count(b"\n")
    if not lines:
        return float(max(len(head), 1))
    return max(len(head) / lines, 1.0)


class _ThrottledFile(io.RawIOBase):
    """A file Arrow may read at most ``ahead`` blocks beyond what the profiler has consumed.

    Arrow's streaming CSV reader reads ahead without bound (on a fast disk it pulls the whole
    file into memory while the consumer is busy); ``read`` blocks in Arrow's I/O thread until
    :meth:`consumed` lets it go on.
    """

    def __init__(self, path: str, block_size: int, ahead: int = _READ_AHEAD_BLOCKS, pool=None):
        super().__init__()
        self._pool = pool
        self._f = open(path, "rb", buffering=0)
        self._block = block_size
        self._ahead = ahead
        self._done = 0
        self._cond = threading.Condition()
        self._stopped = False
        self.position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def read(self, n: int = -1) -> pa.Buffer | bytes:
        with self._cond:
            while not self._stopped and self.position >= (self._done + self._ahead) * self._block:
                self._cond.wait(1.0)
            if self._stopped:
                return b""
        size = n if n is not None and n >= 0 else self._block
        # An Arrow buffer from the (jemalloc) pool rather than a bytes object: Arrow wraps it
        # without copying, and freeing it returns the memory to the OS instead of fragmenting
        # the C heap with multi-megabyte blocks.
        buf = pa.allocate_buffer(size, memory_pool=self._pool, resizable=True)
        view = memoryview(buf)
        got = 0
        while got < size:
            with view[got:] as rest:
                k = self._f.readinto(rest)
            if not k:
                break
            got += k
        view.release()
        if got < size:
            buf.resize(got)
        self.position += got
        return buf

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def consumed(self) -> None:
        with self._cond:
            self._done += 1
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def close(self) -> None:
        self.stop()
        try:
            self._f.close()
        finally:
            super().close()


def _memory_pool() -> pa.MemoryPool:
    """jemalloc with immediate purging when available: freed blocks go back to the OS."""
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
        return pool
    except (NotImplementedError, pa.ArrowNotImplementedError, AttributeError):
        return pa.default_memory_pool()


# --- profile ----------------------------------------------------------------------------------


def _widen(current: str, value: str) -> pa.DataType:
    """The type to retry a column with after Arrow failed converting ``value`` to ``current``."""
    value = value.strip()
    if current == "null":
        if _INTEGER_RE.match(value):
            return pa.int64()
        if _FLOAT_RE.match(value):
            return pa.float64()
        if _DATE_ONLY_RE.match(value):
            return pa.date32()
        if _DATETIME_NAIVE_RE.match(value):
            return pa.timestamp("us")
        return pa.string()
    if current == "int64" and _FLOAT_RE.match(value):
        return pa.float64()
    if current.startswith("date32") and _DATETIME_NAIVE_RE.match(value):
        return pa.timestamp("us")
    return pa.string()


def profile_csv(
    path,
    *,
    encoding: str,
    delimiter: str,
    target_column: str | None = None,
    chunk_rows: int = 200_000,
    progress: Callable[[float, str], None] | None = None,
) -> dict:
    """Profile a CSV file (already checked by ``validate_csv``) in one streaming pass.

    ``encoding`` and ``delimiter`` are those found by validation. ``chunk_rows`` bounds the rows
    per chunk (chunks are also capped at about 4 MiB of CSV text, to bound memory).
    ``progress(fraction_done, step)`` is called at the start, at most once per chunk (when at least
    1 % more of the file was read) and at the end with 1.0. Raises ProfilingError (a ValueError
    with a user-facing message) if the file cannot be parsed as CSV.

    Returns a JSON-serialisable dict::

        rows, columns, duplicate_rows, duplicate_rows_approximate, duplicate_share,
        memory_bytes, missing_cells, missing_share,
        column_types: {numeric, categorical, boolean, datetime, text: count},
        target: None | {name, found, type, missing_count, task, classes, class_counts, minority_share},
        column_profiles: [per column, in file order:
            name, type, arrow_type, missing_count, missing_share, distinct_count,
            distinct_approximate, memory_bytes, invalid_count, invalid_examples, is_target,
            is_empty, is_constant, looks_like_identifier,
            numeric:  min, max, mean, std, quantiles {p5, p25, p50, p75, p95},
                      quantiles_approximate, histogram {bins (edges), counts, approximate},
                      integer, infinite_count (float columns), top_values (<= 50 distinct)
            boolean:  top_values [{value, count}], top_values_approximate (and mean for 0/1)
            categorical / text: top_values, top_values_approximate, mean_length, max_length,
                      whitespace_count, whitespace_examples, case_variants
            datetime: min, max (ISO 8601)],
        encoding, delimiter, file_size, profile_time, restarts
    """
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError("chunk_rows must be a positive integer")
    if len(delimiter) != 1:
        raise ValueError("delimiter must be a single character")
    started = time.perf_counter()
    path = os.fspath(path)
    file_size = os.path.getsize(path)
    arrow_encoding = _arrow_encoding(encoding)
    row_bytes = _average_row_bytes(path)
    block_size = int(min(max(chunk_rows * row_bytes * 1.05, _MIN_BLOCK), _MAX_BLOCK))
    overrides: dict[str, pa.DataType] = {}
    restarts = 0
    max_restarts = 64
    state: dict[str, Any] = {}
    while True:
        try:
            result = _profile_pass(
                path, state=state, file_size=file_size, encoding=arrow_encoding, delimiter=delimiter,
                target_column=target_column, chunk_rows=chunk_rows, block_size=block_size,
                overrides=overrides, progress=progress,
            )
            break
        except pa.ArrowInvalid as exc:
            message = str(exc)
            restarts += 1
            if restarts > max_restarts:
                raise ProfilingError(f"The file could not be profiled: {message}") from exc
            if "straddl" in message:
                block_size *= 4
                if block_size > _BLOCK_LIMIT:
                    raise ProfilingError("A row of the file is too long to be profiled.") from exc
                continue
            match = _CONVERSION_RE.search(message)
            if not match:
                raise ProfilingError(f"The file could not be parsed as CSV: {message}") from exc
            index, current, value = int(match.group(1)), match.group(2).strip(), match.group(3)
            names = state.get("names") or first_rows(path, encoding=encoding, delimiter=delimiter, n=0)["columns"]
            if index >= len(names):
                raise ProfilingError(f"The file could not be parsed as CSV: {message}") from exc
            overrides[names[index]] = _widen(current, value)
    result["encoding"] = encoding
    result["delimiter"] = delimiter
    result["file_size"] = file_size
    result["profile_time"] = round(time.perf_counter() - started, 4)
    result["restarts"] = restarts
    if progress is not None:
        progress(1.0, "done")
    return _jsonable(result)


def _batches(reader):
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return


def _profile_pass(path, *, state, file_size, encoding, delimiter, target_column, chunk_rows, block_size,
                  overrides, progress) -> dict:
    pool = _memory_pool()
    source = _ThrottledFile(path, block_size, pool=pool)
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(encoding=encoding, block_size=block_size, use_threads=True),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char='"', double_quote=True, escape_char=False,
                newlines_in_values=True, ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                null_values=NULL_VALUES, strings_can_be_null=True, quoted_strings_can_be_null=True,
                column_types=dict(overrides),
            ),
            memory_pool=pool,
        )
        schema = reader.schema
        state["names"] = schema.names
        sampler = _RowSampler()
        columns = [
            _Column(i, name, schema.field(i).type, is_target=(name == target_column), sampler=sampler)
            for i, name in enumerate(schema.names)
        ]
        duplicates = _DuplicateCounter()
        rows = 0
        last_report = -1.0
        if progress is not None:
            progress(0.0, "reading")
        for batch in _batches(reader):
            for start in range(0, batch.num_rows, chunk_rows):
                chunk = batch.slice(start, chunk_rows) if batch.num_rows > chunk_rows else batch
                row_hash = np.full(chunk.num_rows, _GOLDEN, dtype=_U64)
                positions, keys = sampler.select(rows, chunk.num_rows)
                for column, arr in zip(columns, chunk.columns):
                    h = column.update(arr, positions, keys)
                    row_hash *= _ROW_PRIME
                    row_hash += h
                duplicates.add(_mix(row_hash))
                rows += chunk.num_rows
            source.consumed()
            if progress is not None and file_size:
                fraction = min(source.position / file_size, 0.99)
                if fraction - last_report >= 0.01:
                    last_report = fraction
                    progress(fraction, f"profiled {rows:,} rows")
    finally:
        source.close()
    if progress is not None:
        progress(0.99, "summarising")
    return _summarise(columns, rows, duplicates, target_column)


def _summarise(columns: list[_Column], rows: int, duplicates: _DuplicateCounter,
               target_column: str | None) -> dict:
    col_profiles = [c.finish(rows) for c in columns]
    ncols = len(columns)
    missing = sum(c["missing_count"] for c in col_profiles)
    dup = duplicates.duplicates() if rows else 0
    profile: dict[str, Any] = {
        "rows": rows,
        "columns": ncols,
        "duplicate_rows": dup,
        "duplicate_rows_approximate": duplicates.approximate,
        "duplicate_share": _share(dup, rows),
        "memory_bytes": int(sum(c["memory_bytes"] for c in col_profiles)),
        "missing_cells": int(missing),
        "missing_share": _share(missing, rows * ncols),
        "column_types": _type_counts(col_profiles),
        "target": _target_summary(col_profiles, target_column),
        "column_profiles": col_profiles,
    }
    return profile


def _type_counts(col_profiles: list[dict]) -> dict:
    counts = {t: 0 for t in ("numeric", "categorical", "boolean", "datetime", "text")}
    for c in col_profiles:
        counts[c["type"]] += 1
    return counts


def _target_summary(col_profiles: list[dict], target_column: str | None) -> dict | None:
    if target_column is None:
        return None
    col = next((c for c in col_profiles if c["name"] == target_column), None)
    if col is None:
        return {"name": target_column, "found": False}
    summary = {"name": target_column, "found": True, "type": col["type"], "missing_count": col["missing_count"]}
    if col["type"] in ("boolean", "categorical") and col.get("top_values"):
        present = sum(v["count"] for v in col["top_values"])
        summary["task"] = "classification"
        summary["classes"] = col["distinct_count"]
        summary["class_counts"] = col["top_values"]
        rarest = min(v["count"] for v in col["top_values"])
        summary["minority_share"] = _share(rarest, present) if not col.get("top_values_approximate") else None
    elif col["type"] == "numeric":
        summary["task"] = "regression"
    else:
        summary["task"] = None
    return summary


# --- quality ----------------------------------------------------------------------------------

QUALITY_WEIGHTS = {"completeness": 0.40, "validity": 0.25, "uniqueness": 0.20, "consistency": 0.15}


def _pct(share: float) -> str:
    text = f"{100 * share:.1f}"
    if text == "0.0" and share > 0:
        return "<0.1%"
    if text == "100.0" and share < 1:
        return ">99.9%"
    return text + "%"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _example_list(values: list) -> str:
    return ", ".join(repr(v) for v in values[:_MAX_SHOWN_EXAMPLES])


def quality(profile: dict) -> dict:
    """A data quality score (0-100, one decimal) and its parts, with human findings.

    See docs/quality.md. ``profile`` is a result of :func:`profile_csv`.
    """
    rows = int(profile.get("rows") or 0)
    cols = profile.get("column_profiles") or []
    ncols = len(cols)
    cells = rows * ncols
    missing = int(profile.get("missing_cells") or 0)
    present_cells = cells - missing
    duplicates = int(profile.get("duplicate_rows") or 0)
    invalid = sum(int(c.get("invalid_count") or 0) for c in cols)

    completeness = 100.0 * (1 - missing / cells) if cells else 100.0
    uniqueness = 100.0 * (1 - duplicates / rows) if rows else 100.0
    validity = 100.0 * (1 - invalid / present_cells) if present_cells else 100.0

    findings: list[str] = []
    issue_columns = 0
    for c in cols:
        name = c["name"]
        issue = False
        share = c.get("missing_share") or 0.0
        if c.get("is_empty") and rows:
            findings.append(f"{name} is empty (every value is missing)")
            issue = True
        elif share >= 0.05:
            findings.append(f"{name} is {_pct(share)} missing")
        elif c.get("is_target") and c.get("missing_count"):
            findings.append(f"the target {name} has {_plural(c['missing_count'], 'missing value')}")
        if c.get("is_constant") and not c.get("is_empty"):
            only = (c.get("top_values") or [{}])[0].get("value") if c.get("top_values") else None
            findings.append(f"{name} is constant" + (f" (always {only!r})" if only is not None else ""))
            issue = True
        if c.get("looks_like_identifier"):
            findings.append(f"{name} looks like an identifier (a different value on almost every row)")
        if c.get("invalid_count"):
            n = int(c["invalid_count"])
            what = {"numeric": "not numbers", "datetime": "not dates"}.get(c["type"], "invalid")
            if c.get("infinite_count"):
                findings.append(f"{name} has {_plural(n, 'infinite value')}")
            else:
                present = rows - int(c.get("missing_count") or 0)
                text = f"{name} has {_plural(n, 'value')} ({_pct(n / present if present else 0)}) that are {what}"
                if c.get("invalid_examples"):
                    text += f", e.g. {_example_list(c['invalid_examples'])}"
                findings.append(text)
        if c.get("whitespace_count"):
            n = int(c["whitespace_count"])
            findings.append(
                f"{name} has {_plural(n, 'value')} with leading or trailing spaces"
                + (f", e.g. {_example_list(c['whitespace_examples'])}" if c.get("whitespace_examples") else "")
            )
            issue = True
        if c.get("case_variants"):
            group = c["case_variants"][0]
            findings.append(
                f"{name} has values that differ only in case or spacing: " + " / ".join(repr(v) for v in group)
            )
            issue = True
        if issue:
            issue_columns += 1
    consistency = 100.0 * (1 - issue_columns / ncols) if ncols else 100.0

    if duplicates:
        approx = "about " if profile.get("duplicate_rows_approximate") else ""
        findings.insert(0, f"{approx}{_plural(duplicates, 'duplicate row')} ({_pct(duplicates / rows)} of rows)")
    target = profile.get("target")
    if target and target.get("found") and target.get("minority_share") is not None \
            and target.get("classes", 0) >= 2 and target["minority_share"] < 0.1:
        findings.append(
            f"the target {target['name']} is imbalanced: its rarest class is {_pct(target['minority_share'])} of rows"
        )

    parts = {
        "completeness": round(completeness, 1),
        "uniqueness": round(uniqueness, 1),
        "validity": round(validity, 1),
        "consistency": round(consistency, 1),
    }
    score = sum(QUALITY_WEIGHTS[k] * v for k, v in
                {"completeness": completeness, "uniqueness": uniqueness,
                 "validity": validity, "consistency": consistency}.items())
    return {
        "quality_score": round(max(0.0, min(100.0, score)), 1),
        **parts,
        "weights": dict(QUALITY_WEIGHTS),
        "findings": findings,
    }


# --- preview ----------------------------------------------------------------------------------


def first_rows(path, *, encoding: str, delimiter: str, n: int = 50) -> dict:
    """The header and up to ``n`` data rows, as strings (empty values are None).

    Rows shorter than the header are padded with None; blank lines are skipped.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    limit = 10 * 1024 * 1024
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)
    columns: list[str] | None = None
    rows: list[list[str | None]] = []
    with open(os.fspath(path), encoding=encoding, newline="", errors="replace") as f:
        for record in csv.reader(f, delimiter=delimiter, quotechar='"', doublequote=True):
            if not record:
                continue
            if columns is None:
                columns = [c.lstrip("\ufeff") if i == 0 else c for i, c in enumerate(record)]
                continue
            if len(rows) >= n:
                break
            values = [v if v != "" else None for v in record]
            if len(values) < len(columns):
                values += [None] * (len(columns) - len(values))
            rows.append(values)
    return {"columns": columns or [], "rows": rows}
