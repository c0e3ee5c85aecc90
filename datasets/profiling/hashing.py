"""64-bit hashes of column values and rows (vectorised splitmix64), and sorted sets of hashes.

Equal values get equal hashes whatever chunk or array they come from, so sketches and duplicate
counts built on them do not depend on how the file was chunked.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

U64 = np.uint64
_M1 = U64(0xBF58476D1CE4E5B9)
_M2 = U64(0x94D049BB133111EB)
GOLDEN = U64(0x9E3779B97F4A7C15)
ROW_PRIME = U64(0x100000001B3)
_S27, _S30, _S31 = U64(27), U64(30), U64(31)
NULL_HASH = U64(0x6A09E667F3BCC909)
_SHORT_STRING_WORDS = 8
_ORDINAL_SALT = np.arange(_SHORT_STRING_WORDS + 1, dtype=U64) * _M1  # word j adds j * M1 (wrapping)
_WORD_MASKS = np.array([(1 << (8 * k)) - 1 if k < 8 else (1 << 64) - 1 for k in range(9)], dtype=U64)


def mix(x: np.ndarray) -> np.ndarray:
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


def salt_for(index: int) -> np.uint64:
    return mix(np.array([index + 1], dtype=U64) * GOLDEN)[0]


def string_bytes(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The offsets (int64, from 0, one more than the values) and the bytes (uint8, not copied) of a
    non-empty string or binary array's values. A null's bytes are whatever its slot spans."""
    n = len(arr)
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    odtype = np.int64 if large else np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=odtype, count=n + 1, offset=arr.offset * odtype().itemsize)
    offsets = offsets.astype(np.int64)
    base = int(offsets[0])
    offsets -= base
    total = int(offsets[-1])
    values = np.frombuffer(bufs[2], dtype=np.uint8, count=total, offset=base) if total else np.empty(0, np.uint8)
    return offsets, values


def hash_strings(arr: pa.Array, salt: np.uint64) -> np.ndarray:
    """A 64-bit hash of each value of a string or binary array (nulls are hashed as empty).

    Vectorised over 8-byte words: word j of a string contributes mix(word + j * M1) and the sum is
    mixed with the length. Equal strings get equal hashes whatever array they are in.
    """
    n = len(arr)
    if n == 0:
        return np.empty(0, dtype=U64)
    offsets, values = string_bytes(arr)
    total = len(values)
    lengths = np.diff(offsets)
    h = lengths.astype(U64) * GOLDEN + salt
    if total:
        data = np.zeros(total + 8, dtype=np.uint8)
        data[:total] = values
        words = np.ndarray((total,), dtype="<u8", buffer=data, strides=(1,))
        nwords = (lengths + 7) >> 3
        max_words = int(nwords.max())
        starts = offsets[:-1]
        if max_words <= _SHORT_STRING_WORDS:
            # Short strings: one pass per word position over the strings that are that long; a
            # last, partial word keeps its bytes only (a mask looked up by the bytes left: ten
            # times faster than masking the partial words picked out by a boolean index).
            for j in range(max_words):
                remaining = lengths - 8 * j
                if remaining.min() > 0:
                    w = words[starts + 8 * j]
                    w &= _WORD_MASKS.take(np.minimum(remaining, 8))
                    w += _ORDINAL_SALT[j]
                    h += mix(w)
                else:
                    ai = np.flatnonzero(remaining > 0)
                    w = words[starts[ai] + 8 * j]
                    w &= _WORD_MASKS.take(np.minimum(remaining[ai], 8))
                    w += _ORDINAL_SALT[j]
                    h[ai] += mix(w)
        else:
            has_words = nwords > 0
            first = np.cumsum(nwords) - nwords
            owner = np.repeat(np.arange(n), nwords)
            ordinal = np.arange(len(owner)) - first[owner]
            w = words[starts[owner] + 8 * ordinal]
            remaining = np.minimum(lengths[owner] - 8 * ordinal, 8)
            w &= _WORD_MASKS[remaining]
            w += ordinal.astype(U64) * _M1
            mix(w)
            h[has_words] += np.add.reduceat(w, first[has_words])
    return mix(h)


def unique_sorted(x: np.ndarray) -> np.ndarray:
    """np.unique for uint64 (sort-based: much faster than NumPy's hash-based unique here)."""
    if len(x) < 2:
        return np.sort(x)
    a = np.sort(x)
    keep = np.empty(len(a), dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def contains_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Which values of ``b`` are in the sorted array ``a``."""
    if not len(a):
        return np.zeros(len(b), dtype=bool)
    pos = np.searchsorted(a, b)
    pos[pos == len(a)] = 0
    return a[pos] == b


def merge_sorted(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    """Union of two sorted, duplicate-free uint64 arrays, and the number of values of ``b`` that
    were not in ``a``. A stable sort of the two joined is a merge (timsort finds the two runs):
    linear and sequential, where inserting ``b`` into ``a`` searched ``a`` for each of its values."""
    if not len(a):
        return b, len(b)
    if not len(b):
        return a, 0
    joined = np.concatenate((a, b))
    joined.sort(kind="stable")
    keep = np.empty(len(joined), dtype=bool)
    keep[0] = True
    np.not_equal(joined[1:], joined[:-1], out=keep[1:])
    added = int(np.count_nonzero(keep)) - len(a)
    if not added:
        return a, 0
    return joined[keep], added


def hash_numbers(values: np.ndarray, salt: np.uint64) -> np.ndarray:
    """Hash of int64/float64 values (floats: -0.0 is 0.0)."""
    if values.dtype.kind == "f":
        values = values + 0.0
        bits = values.view(U64)
    else:
        bits = values.astype(np.int64, copy=False).view(U64)
    return mix(bits ^ salt)

