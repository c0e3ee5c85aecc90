"""A string column's statistics, chunk by chunk: the string half of columns.ColumnStats.

While a column's values are counted exactly, each chunk is looked up among the values already seen
(what the statistics need of a value is worked out once, when it is first seen); past
STRING_COUNTS_CAP distinct values, Arrow's dictionary of each chunk; for a column of mostly distinct
values, their hashes. Alongside: the values' lengths and padding, and the share that look like
numbers or ISO dates (the column's type is inferred from them in ColumnStats.finish).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .hashing import NULL_HASH, contains_sorted, hash_strings, string_bytes

HEAVY_HITTERS = 1_000
TYPE_SHARE = 0.8
MAX_SHOWN_EXAMPLES = 3
_NUMERIC_RE = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"
_DATE_RE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"


def _as_numpy_bool(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _add_unique(examples: list[str], values: list[str]) -> None:
    """``values`` not among ``examples`` yet added to them, up to MAX_SHOWN_EXAMPLES in all."""
    for value in values:
        if len(examples) < MAX_SHOWN_EXAMPLES and value not in examples:
            examples.append(value)


class StringStats:
    """The per-chunk methods of a string column's ColumnStats (whose __init__ sets their state)."""

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
                padded_values = dictionary.filter(pa.array(padded)).to_pylist()
                _add_unique(self.whitespace_examples, padded_values[:MAX_SHOWN_EXAMPLES])
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
            _add_unique(self.whitespace_examples, new.filter(pa.array(padded)).to_pylist()[:MAX_SHOWN_EXAMPLES])
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
                self._widen_dates(new.filter(pa.array(dates)))
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
            if like < total:
                self._add_commonest(self.num_bad_examples, self.known, np.flatnonzero(present & ~is_num), counts)
            if like:
                per_row = self.known_numbers[rows]
                self.num_moments.update(per_row[np.isfinite(per_row)], per_row, positions, keys)
        if self.date_alive:
            like = int(counts[self.known_dates].sum())
            self.date_like += like
            if like and like < total:
                self._add_commonest(self.date_bad_examples, self.known, np.flatnonzero(present & ~self.known_dates),
                                    counts)
        self._drop_unlikely_types(total)

    @staticmethod
    def _add_commonest(examples: list[str], values: pa.Array, candidates: np.ndarray, counts: np.ndarray) -> None:
        """The chunk's commonest of ``values`` at ``candidates`` (by ``counts``, ties in order) added
        to ``examples``, up to MAX_SHOWN_EXAMPLES of them."""
        if len(examples) < MAX_SHOWN_EXAMPLES:
            top = candidates[np.argsort(-counts[candidates], kind="stable")][:MAX_SHOWN_EXAMPLES]
            _add_unique(examples, values.take(pa.array(top)).to_pylist())

    def _widen_dates(self, dates: pa.Array) -> None:
        """The range of the ISO dates seen so far, widened by ``dates`` (compared as text)."""
        mm = pc.min_max(dates)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        self.date_min = lo if self.date_min is None else min(self.date_min, lo)
        self.date_max = hi if self.date_max is None else max(self.date_max, hi)

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
            _add_unique(self.whitespace_examples, pc.unique(arr.filter(padded)).to_pylist()[:MAX_SHOWN_EXAMPLES])

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
            if like < total:
                self._add_commonest(self.num_bad_examples, dictionary, np.flatnonzero(~is_num), counts)
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
        if self.date_alive:
            is_date = _as_numpy_bool(pc.match_substring_regex(dictionary, _DATE_RE))
            like = int(counts[is_date].sum())
            self.date_like += like
            if like:
                self._widen_dates(dictionary.filter(pa.array(is_date)))
                if like < total:
                    self._add_commonest(self.date_bad_examples, dictionary, np.flatnonzero(~is_date), counts)
        self._drop_unlikely_types(total)

    def _drop_unlikely_types(self, total: int) -> None:
        """Once 1,000 values are in, stop reading the column as numbers, or as dates, when fewer
        than TYPE_SHARE of its values so far (``total`` of them in this chunk) look like them."""
        seen = self.seen + total
        if seen < 1000:
            return
        if self.num_alive and (seen - self.num_like) > (1 - TYPE_SHARE) * seen:
            self._kill_numeric()
        if self.date_alive and (seen - self.date_like) > (1 - TYPE_SHARE) * seen:
            self.date_alive = False

    def _kill_numeric(self) -> None:
        self.num_alive = False
        if self.num_moments is not None:
            self.num_moments.close()
        self.num_moments = None
