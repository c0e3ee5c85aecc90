"""Bounded-memory sketches folded chunk by chunk: distinct values, a row sample, moments, duplicates.

Each is exact while what it has seen fits its cap and an estimate beyond it, and says which
(``approximate``). The caps are module constants, read when a sketch is made.
"""

from __future__ import annotations

import math

import numpy as np

from .hashing import U64, contains_sorted, merge_sorted, mix, unique_sorted

DISTINCT_CAP = 100_000
SAMPLE_SIZE = 100_000
DUPLICATE_HASH_CAP = 4_000_000
_PENDING_ROW_HASHES = 1 << 18
_BUCKETS = 16
_BUCKET_STARTS = (np.arange(1, _BUCKETS, dtype=U64) << U64(60))

class DistinctSketch:
    """Exact distinct count up to ``cap`` hashes, K-minimum-values estimate beyond.

    Incoming hashes are buffered and merged in batches; once the sketch is full, only hashes
    below its current largest one can matter, so most of them are dropped on arrival.
    """

    __slots__ = ("cap", "hashes", "saturated", "pending", "pending_len", "offered", "repetitive")

    def __init__(self, cap: int | None = None):
        self.cap = cap or DISTINCT_CAP
        self.hashes = np.empty(0, dtype=U64)
        self.saturated = False
        self.pending: list[np.ndarray] = []
        self.pending_len = 0
        self.offered = 0
        self.repetitive = False

    def update(self, h: np.ndarray) -> None:
        if self.saturated:
            h = h[h < self.hashes[-1]]
        elif self.repetitive and len(h) > 1024:
            # Many repeats: the chunk's unique hashes, less those already kept, keep the buffer and
            # the merges small (a sort beats Arrow's hash-based unique on hashes).
            h = unique_sorted(h)
            self.offered += len(h)
            h = h[~contains_sorted(self.hashes, h)]
        else:
            self.offered += len(h)
        if not len(h):
            return
        self.pending.append(h)
        self.pending_len += len(h)
        if self.pending_len >= self.cap // 2:
            self._merge()

    def _merge(self) -> None:
        if not self.pending:
            return
        incoming = self.offered
        new = unique_sorted(np.concatenate(self.pending))
        self.pending, self.pending_len, self.offered = [], 0, 0
        if self.saturated:
            new = new[new < self.hashes[-1]]
        merged, added = merge_sorted(self.hashes, new)
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
_SAMPLE_SEED = U64(0x243F6A8885A308D3)


class RowSampler:
    """A uniform sample of row numbers shared by all columns: the rows whose key (a hash of the
    row number) is among the ``size`` smallest. Bottom-k by key is a uniform sample without
    replacement, and computing one key per row (not per column) keeps it cheap. The keys of the
    candidate rows are kept once, here; each column's :class:`Moments` keeps its values on the
    same rows, in the same order (NaN where it has none).
    """

    def __init__(self, size: int | None = None):
        self.size = size or SAMPLE_SIZE
        self.threshold = _NO_THRESHOLD  # rows with key <= threshold are in the sample
        self.keys = np.empty(0, dtype=U64)
        self.pending: list[np.ndarray] = []
        self.pending_len = 0
        self.columns: list[Moments] = []
        self._in_sample: np.ndarray | None = None

    def select(self, offset: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (within the chunk) and keys of the chunk's rows that may be in the sample."""
        self._in_sample = None
        keys = mix(np.arange(offset, offset + n, dtype=U64) ^ _SAMPLE_SEED)
        if self.threshold == _NO_THRESHOLD:
            positions = np.arange(n)
        else:
            positions = np.flatnonzero(keys <= self.threshold)
            keys = keys[positions]
        self.pending.append(keys)
        self.pending_len += len(keys)
        return positions, keys

    def end_chunk(self) -> None:
        """After every column took the chunk: columns that had no values in it get NaN, and once
        the candidates are a quarter more than the sample, those beyond it are dropped."""
        length = len(self.keys) + self.pending_len
        for column in self.columns:
            column.pad(length)
        if length > self.size + self.size // 4:
            merged = np.concatenate([self.keys, *self.pending])
            self.pending, self.pending_len = [], 0
            self.threshold = np.partition(merged, self.size - 1)[self.size - 1]
            keep = np.flatnonzero(merged <= self.threshold)  # positions, found once for every column
            self.keys = merged.take(keep)
            for column in self.columns:
                column.compact(keep)

    def in_sample(self) -> np.ndarray:
        """Which candidate rows are in the sample: those with the ``size`` smallest keys. The
        candidates hold them whatever the chunks were (every threshold so far was the size-th
        smallest key of some of the rows, so no smaller than that of all), so the sample does not
        depend on where compactions happened."""
        if self._in_sample is None:
            keys = np.concatenate([self.keys, *self.pending])
            if len(keys) <= self.size:
                self._in_sample = np.ones(len(keys), dtype=bool)
            else:
                self._in_sample = keys <= np.partition(keys, self.size - 1)[self.size - 1]
        return self._in_sample

    @property
    def complete(self) -> bool:
        """True while every row is in the sample."""
        return self.threshold == _NO_THRESHOLD


class Moments:
    """Exact count/mean/variance/min/max, and the column's values on the sampled rows."""

    def __init__(self, sampler: RowSampler):
        self.sampler = sampler
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min: float | None = None
        self.max: float | None = None
        self.values = np.empty(0, dtype=np.float64)  # on the sampler's candidate rows
        self.pending: list[np.ndarray] = []
        self.length = 0
        sampler.columns.append(self)

    def update(self, values: np.ndarray, full: np.ndarray, positions: np.ndarray, keys: np.ndarray) -> None:
        """values: the chunk's finite values; full: the chunk as float64 (NaN/inf where there is
        no usable value); positions/keys: the chunk's candidate sample rows (from the sampler)."""
        nb = len(values)
        if nb:
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
        if len(positions):
            self.pending.append(full[positions])
            self.length += len(positions)

    def pad(self, length: int) -> None:
        if self.length < length:
            self.pending.append(np.full(length - self.length, np.nan))
            self.length = length

    def compact(self, keep: np.ndarray) -> None:
        """Only the candidate rows at positions ``keep`` (a take: a third of a boolean index's time)."""
        self.values = np.concatenate([self.values, *self.pending]).take(keep)
        self.pending = []
        self.length = len(self.values)

    def close(self) -> None:
        """Stop following the sample (the column is no longer read as numbers)."""
        self.sampler.columns.remove(self)
        self.values, self.pending = np.empty(0, dtype=np.float64), []

    def sample(self) -> np.ndarray:
        values = np.concatenate([self.values, *self.pending])
        keep = np.isfinite(values)
        if not self.sampler.complete:
            keep &= self.sampler.in_sample()
        return values[keep]

    def std(self) -> float | None:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else None

    def exact_sample(self) -> bool:
        return self.sampler.complete


class DuplicateCounter:
    """Counts duplicate rows as rows minus distinct row hashes.

    The distinct 64-bit row hashes are kept sorted, in ``_BUCKETS`` arrays by their top bits (so a
    merge copies one bucket at a time, not all of them): exact (up to hash collisions, negligible
    below billions of rows) while there are at most ``cap`` distinct rows. Beyond that only the
    ``cap`` smallest hashes are kept, the number of distinct rows is the K-minimum-values
    estimate, and the result is flagged approximate.
    """

    def __init__(self, cap: int | None = None):
        self.cap = cap or DUPLICATE_HASH_CAP
        self.buckets = [np.empty(0, dtype=U64) for _ in range(_BUCKETS)]
        self.kept = 0
        self.saturated = False
        self.rows = 0
        self.pending: list[np.ndarray] = []
        self.pending_len = 0

    def _largest(self) -> np.uint64:
        return next(b[-1] for b in reversed(self.buckets) if len(b))

    def add(self, row_hashes: np.ndarray) -> None:
        self.rows += len(row_hashes)
        if self.saturated:
            row_hashes = row_hashes[row_hashes < self._largest()]
        self.pending.append(row_hashes)
        self.pending_len += len(row_hashes)
        if self.pending_len >= _PENDING_ROW_HASHES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        new = unique_sorted(np.concatenate(self.pending))
        self.pending, self.pending_len = [], 0
        if self.saturated:
            new = new[new < self._largest()]
        edges = [0, *np.searchsorted(new, _BUCKET_STARTS).tolist(), len(new)]
        for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
            if hi > lo:
                merged, added = merge_sorted(self.buckets[i], new[lo:hi])
                self.buckets[i] = merged
                self.kept += added
        excess = self.kept - self.cap
        for i in reversed(range(_BUCKETS)):
            if excess <= 0:
                break
            self.saturated = True
            cut = min(excess, len(self.buckets[i]))
            self.buckets[i] = self.buckets[i][: len(self.buckets[i]) - cut].copy()
            self.kept -= cut
            excess -= cut

    def duplicates(self) -> int:
        self.flush()
        if not self.saturated:
            return self.rows - self.kept
        kth = (float(self._largest()) + 1.0) / 2.0**64
        distinct = (self.kept - 1) / kth
        return max(0, int(round(self.rows - distinct)))

    @property
    def approximate(self) -> bool:
        self.flush()
        return self.saturated
