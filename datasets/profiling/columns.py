"""Per-column statistics: one accumulator per column folds in each chunk, then reports a ColumnProfile.

The accumulator keeps exact value counts while a column has few distinct values, the sketches of
``sketches.py`` beyond that, numbers' moments and sample, strings' lengths, padding and the share
that look like numbers or dates; :meth:`ColumnStats.finish` infers the column's type from them.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .hashing import NULL_HASH, U64, contains_sorted, hash_numbers, hash_strings, mix, salt_for, string_bytes
from .schema import ColumnProfile, Histogram, TopValue
from .sketches import DistinctSketch, Moments, RowSampler

TOP_N = 10
STRING_COUNTS_CAP = 10_000
NUMERIC_COUNTS_CAP = 1_000
HEAVY_HITTERS = 1_000
HISTOGRAM_BINS = 20
CATEGORICAL_MAX_DISTINCT = 50
CATEGORICAL_MAX_SHARE = 0.05
TYPE_SHARE = 0.8
QUANTILES = {"p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}
MAX_SHOWN_EXAMPLES = 3
#: Longest cell value quoted in a profile (top values, examples) or a finding, in characters.
MAX_QUOTED_CHARS = 100

_BOOLEAN_PAIRS = [
    {"true", "false"}, {"yes", "no"}, {"y", "n"}, {"t", "f"}, {"on", "off"},
]
_NUMERIC_RE = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"
INTEGER_RE = re.compile(r"^\s*[-+]?\d+\s*$")
FLOAT_RE = re.compile(_NUMERIC_RE)
_DATE_RE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
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


def _as_numpy_bool(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


class ColumnStats:
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

    def _update_string(self, arr: pa.Array, positions: np.ndarray, keys: np.ndarray) -> np.ndarray:
        n = len(arr)
        n_missing = arr.null_count
        self.missing += n_missing
        if self.wide:
            return self._update_wide_string(arr, n_missing)
        if self.counts_exact:
            row_hashes = self._update_known(arr, n_missing, positions, keys)
            if row_hashes is not None:
                return row_hashes
        encoded = arr.dictionary_encode()
        dictionary = encoded.dictionary
        k = len(dictionary)
        indices = encoded.indices
        if n_missing:
            idx = pc.fill_null(indices, k).to_numpy()
        else:
            idx = indices.to_numpy()
        counts = np.bincount(idx, minlength=k + 1)
        dict_hashes = hash_strings(dictionary, self.salt)
        table = np.append(dict_hashes, NULL_HASH)
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
            if len(self.whitespace_examples) < MAX_SHOWN_EXAMPLES:
                for value in dictionary.filter(pa.array(padded)).to_pylist()[:MAX_SHOWN_EXAMPLES]:
                    if len(self.whitespace_examples) < MAX_SHOWN_EXAMPLES and value not in self.whitespace_examples:
                        self.whitespace_examples.append(value)
        if self.spaced_checked < 10_000:
            inner = _as_numpy_bool(pc.match_substring_regex(stripped, r"\s"))
            self.spaced += int(counts[inner].sum())
            self.spaced_checked += n_valid
        if self.num_alive or self.date_alive:
            self._track_candidates(dictionary, stripped, counts, idx, k, positions, keys)
        # Mostly distinct values, beyond exact counts and type candidates: the next chunks skip the
        # dictionary (what it costs is most of the column's time).
        self.wide = not (self.counts_exact or self.num_alive or self.date_alive) and k > n_valid // 2
        self.seen += n_valid
        return row_hashes

    def _update_known(self, arr: pa.Array, n_missing: int, positions: np.ndarray, keys: np.ndarray):
        """A chunk of a column whose values are still counted exactly: each row looked up among the
        values seen so far (Arrow's index_in), the values new in the chunk added to them with what
        the statistics need of each (hash, length, padding, inner spaces, number, date), so that a
        chunk costs a lookup and a few sums over the values, whatever its rows. The same results as
        the dictionary path (_update_string), which takes over, from the chunk on, when the column
        passes STRING_COUNTS_CAP distinct values (then None)."""
        if self.counts:  # settled already: the dictionary path counts from here
            return None
        n_valid = len(arr) - n_missing
        idx = pc.index_in(arr, value_set=self.known) if self.known is not None else None
        if idx is None or idx.null_count > n_missing:  # values not seen before
            new = pc.unique(arr.drop_null() if idx is None else arr.filter(pc.and_(pc.is_null(idx), arr.is_valid())))
            if (0 if self.known is None else len(self.known)) + len(new) > self.counts_cap:
                self._settle_known()
                return None
            self._add_known(new)
            idx = pc.index_in(arr, value_set=self.known)
        k = len(self.known)
        rows = (pc.fill_null(idx, k) if n_missing else idx).to_numpy()
        counts = np.bincount(rows, minlength=k + 1)[:k]
        self.known_counts += counts
        self.length_sum += int(self.known_lengths @ counts)
        self.whitespace += int(counts[self.known_padded].sum())
        if self.spaced_checked < 10_000:
            self.spaced += int(counts[self.known_spaced].sum())
            self.spaced_checked += n_valid
        if self.num_alive or self.date_alive:
            self._track_known(counts, rows, positions, keys)
        self.seen += n_valid
        return self.known_hashes[rows]

    def _add_known(self, new: pa.Array) -> None:
        """The values first seen in a chunk (in the order first seen), with what each chunk needs of them."""
        if not len(new):
            if self.known is None:
                self.known = new  # a first chunk of missing values only
            return
        hashes = hash_strings(new, self.salt)
        lengths = pc.utf8_length(new).to_numpy().astype(np.int64)
        stripped = pc.utf8_trim_whitespace(new)
        padded = _as_numpy_bool(pc.not_equal(stripped, new))
        spaced = _as_numpy_bool(pc.match_substring_regex(stripped, r"\s"))
        self.length_max = max(self.length_max, int(lengths.max()))
        if padded.any() and len(self.whitespace_examples) < MAX_SHOWN_EXAMPLES:
            for value in new.filter(pa.array(padded)).to_pylist()[:MAX_SHOWN_EXAMPLES]:
                if len(self.whitespace_examples) < MAX_SHOWN_EXAMPLES and value not in self.whitespace_examples:
                    self.whitespace_examples.append(value)
        numbers = np.full(len(new), np.nan)
        if self.num_alive:
            is_num = _as_numpy_bool(pc.match_substring_regex(new, _NUMERIC_RE))
            if is_num.any():
                try:
                    numbers[is_num] = pc.cast(stripped.filter(pa.array(is_num)), pa.float64()).to_numpy(
                        zero_copy_only=False)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    self._kill_numeric()
        dates = np.zeros(len(new), dtype=bool)
        if self.date_alive:
            dates = _as_numpy_bool(pc.match_substring_regex(new, _DATE_RE))
            if dates.any():
                mm = pc.min_max(new.filter(pa.array(dates)))
                lo, hi = mm["min"].as_py(), mm["max"].as_py()
                self.date_min = lo if self.date_min is None else min(self.date_min, lo)
                self.date_max = hi if self.date_max is None else max(self.date_max, hi)
        self.known = new if self.known is None else pa.concat_arrays([self.known, new])
        self.known_counts = np.concatenate([self.known_counts, np.zeros(len(new), dtype=np.int64)])
        self.known_hashes = np.concatenate([self.known_hashes[:-1], hashes, [NULL_HASH]])
        self.known_lengths = np.concatenate([self.known_lengths, lengths])
        self.known_padded = np.concatenate([self.known_padded, padded])
        self.known_spaced = np.concatenate([self.known_spaced, spaced])
        self.known_numbers = np.concatenate([self.known_numbers[:-1], numbers, [np.nan]])
        self.known_dates = np.concatenate([self.known_dates, dates])

    def _track_known(self, counts: np.ndarray, rows: np.ndarray, positions: np.ndarray, keys: np.ndarray) -> None:
        """_track_candidates for a chunk of _update_known: the share of values that look like numbers
        and dates, the commonest of those that do not, and the numbers' moments and sample."""
        total = int(counts.sum())
        present = counts > 0
        if self.num_alive:
            is_num = ~np.isnan(self.known_numbers[:-1])
            like = int(counts[is_num].sum())
            self.num_like += like
            if like < total and len(self.num_bad_examples) < MAX_SHOWN_EXAMPLES:
                self._add_examples(self.num_bad_examples, np.flatnonzero(present & ~is_num), counts)
            if like:
                per_row = self.known_numbers[rows]
                self.num_moments.update(per_row[np.isfinite(per_row)], per_row, positions, keys)
            seen = self.seen + total
            if seen >= 1000 and (seen - self.num_like) > (1 - TYPE_SHARE) * seen:
                self._kill_numeric()
        if self.date_alive:
            like = int(counts[self.known_dates].sum())
            self.date_like += like
            if like < total and len(self.date_bad_examples) < MAX_SHOWN_EXAMPLES:
                self._add_examples(self.date_bad_examples, np.flatnonzero(present & ~self.known_dates), counts)
            seen = self.seen + total
            if seen >= 1000 and (seen - self.date_like) > (1 - TYPE_SHARE) * seen:
                self.date_alive = False

    def _add_examples(self, examples: list[str], candidates: np.ndarray, counts: np.ndarray) -> None:
        """The chunk's commonest of ``candidates`` (known values' indices) added to ``examples``."""
        top = candidates[np.argsort(-counts[candidates], kind="stable")][:MAX_SHOWN_EXAMPLES]
        for value in self.known.take(pa.array(top)).to_pylist():
            if len(examples) < MAX_SHOWN_EXAMPLES and value not in examples:
                examples.append(value)

    def _settle_known(self) -> None:
        """The known values' counts as the value counts the other paths keep (and the known values dropped)."""
        if self.known is not None:
            for value, n in zip(self.known.to_pylist(), self.known_counts.tolist()):
                if n:
                    self.counts[value] = self.counts.get(value, 0) + n
        self.known = None

    def _update_wide_string(self, arr: pa.Array, n_missing: int) -> np.ndarray:
        """The same statistics as the dictionary path, from the values' hashes; the chunk's heavy
        hitters are its most repeated hashes (ties broken by first row, as a dictionary would)."""
        n_valid = len(arr) - n_missing
        row_hashes = hash_strings(arr, self.salt)
        if n_missing:
            valid = _as_numpy_bool(arr.is_valid())
            row_hashes[~valid] = NULL_HASH
            valid_rows = np.flatnonzero(valid)
            valid_h = row_hashes[valid_rows]
        else:
            valid_rows = None
            valid_h = row_hashes
        if not n_valid:
            return row_hashes
        ordered = np.sort(valid_h)
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        unique_h = ordered[starts]
        counts = np.diff(np.append(starts, len(ordered)))
        self.distinct.update(unique_h)
        take = min(len(counts), 32)
        top = np.sort(np.argpartition(-counts, take - 1)[:take]) if take < len(counts) else np.arange(len(counts))
        candidates = np.flatnonzero(contains_sorted(unique_h[top], valid_h))
        _, first = np.unique(valid_h[candidates], return_index=True)  # in hash order, like top
        rows = candidates[first]
        order = np.argsort(rows)
        rows, top_counts = rows[order], counts[top][order]
        if valid_rows is not None:
            rows = valid_rows[rows]
        table = self.counts
        for value, c in zip(arr.take(pa.array(rows)).to_pylist(), top_counts.tolist()):
            table[value] = table.get(value, 0) + c
        if len(table) > 2 * HEAVY_HITTERS:
            self._prune_counts(HEAVY_HITTERS)
        self._lengths_and_padding(arr, n_missing)
        if self.spaced_checked < 10_000:
            stripped = pc.utf8_trim_whitespace(arr)
            self.spaced += int(pc.sum(pc.match_substring_regex(stripped, r"\s")).as_py() or 0)
            self.spaced_checked += n_valid
        self.seen += n_valid
        return row_hashes

    def _lengths_and_padding(self, arr: pa.Array, n_missing: int) -> None:
        """The lengths of a chunk's values (in characters), and the values with whitespace around
        them. When the values are all ASCII, read off their bytes: a value can then be padded only
        if its first or last byte is a space or a control character (Arrow's whitespace in ASCII),
        and only those values are trimmed to check. Else Arrow's utf8 functions, on every value."""
        offsets, values = string_bytes(arr)
        if len(values) and int(values.max()) >= 0x80:
            lengths = pc.utf8_length(arr)
            self.length_sum += int(pc.sum(lengths).as_py() or 0)
            self.length_max = max(self.length_max, int(pc.max(lengths).as_py() or 0))
            self._count_padded(arr)
            return
        lengths = np.diff(offsets)
        valid = _as_numpy_bool(arr.is_valid()) if n_missing else None
        if valid is not None:
            lengths[~valid] = 0
        self.length_sum += int(lengths.sum())
        self.length_max = max(self.length_max, int(lengths.max()))
        if not len(values):
            return
        last = len(values) - 1
        edge = values.take(np.minimum(offsets[:-1], last)) <= 0x20
        edge |= values.take(np.maximum(offsets[1:] - 1, 0)) <= 0x20
        edge &= lengths > 0
        if edge.any():
            self._count_padded(arr.filter(pa.array(edge)))

    def _count_padded(self, arr: pa.Array) -> None:
        padded = pc.not_equal(pc.utf8_trim_whitespace(arr), arr)
        n_padded = int(pc.sum(padded).as_py() or 0)
        if not n_padded:
            return
        self.whitespace += n_padded
        if len(self.whitespace_examples) < MAX_SHOWN_EXAMPLES:
            for value in pc.unique(arr.filter(padded)).to_pylist()[:MAX_SHOWN_EXAMPLES]:
                if len(self.whitespace_examples) < MAX_SHOWN_EXAMPLES and value not in self.whitespace_examples:
                    self.whitespace_examples.append(value)

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
                self.distinct.update(hash_strings(pa.array(list(table), type=pa.string()), self.salt))
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
            if like < total and len(self.num_bad_examples) < MAX_SHOWN_EXAMPLES:
                bad = np.flatnonzero(~is_num)
                bad = bad[np.argsort(-counts[bad], kind="stable")][:MAX_SHOWN_EXAMPLES]
                for value in dictionary.take(pa.array(bad)).to_pylist():
                    if len(self.num_bad_examples) < MAX_SHOWN_EXAMPLES and value not in self.num_bad_examples:
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
                if like < total and len(self.date_bad_examples) < MAX_SHOWN_EXAMPLES:
                    bad = np.flatnonzero(~is_date)
                    bad = bad[np.argsort(-counts[bad], kind="stable")][:MAX_SHOWN_EXAMPLES]
                    for value in dictionary.take(pa.array(bad)).to_pylist():
                        if len(self.date_bad_examples) < MAX_SHOWN_EXAMPLES and value not in self.date_bad_examples:
                            self.date_bad_examples.append(value)
            seen = self.seen + total
            if seen >= 1000 and (seen - self.date_like) > (1 - TYPE_SHARE) * seen:
                self.date_alive = False

    def _kill_numeric(self) -> None:
        self.num_alive = False
        if self.num_moments is not None:
            self.num_moments.close()
        self.num_moments = None

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

