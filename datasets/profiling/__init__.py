"""Streaming profile of a CSV file: column types, statistics and a data quality score.

Pure Python (no Django). The public functions are

* :func:`profile_csv` -- one streaming pass over the file with bounded memory, returning a
  :class:`DatasetProfile`;
* :func:`quality` -- a 0-100 quality score and human findings computed from a profile, returned as
  a :class:`QualityReport`;
* :func:`first_rows` -- the header and the first rows as strings, for a preview.

The profile and the report are typed (``schema.py``); ``to_json()`` gives what ``Dataset.profile``
and ``Dataset.quality`` store (str, int, float, bool, None, list, dict; NaN and infinities become
None) and ``from_json()`` reads a stored one back.

The package, in the order a profile is made:

* ``reader.py`` -- Arrow's streaming CSV reader behind a throttle, and the preview;
* ``hashing.py`` -- 64-bit hashes of values and rows;
* ``sketches.py`` -- distinct counts, the row sample, moments and duplicate rows in bounded memory;
* ``columns.py`` -- the per-column statistics and type inference;
* ``profiler.py`` -- the pass over the file (restarted when a type must widen) and the dataset totals;
* ``assessment.py`` -- the quality score;
* ``schema.py`` -- the dataclasses and their JSON.

How it works (see also docs/quality.md)
---------------------------------------
The file is read with ``pyarrow.csv.open_csv`` (a streaming reader that parses in C++ on
background threads), fed through a small throttle so that Arrow never reads more than a few
blocks ahead of the profiler: Arrow's own read-ahead is otherwise unbounded and would pull a large
file into memory. Blocks are about 1 MiB of CSV text (fewer rows if ``chunk_rows`` asks for it);
each becomes a record batch that is folded into per-column accumulators, then dropped. Arrow
infers column types from the first block (and the pass's reader is given them: it converts faster
than one that infers); if a later block contradicts them (an integer column
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
  A column of mostly distinct strings then skips Arrow's dictionary: its chunks' most repeated
  values are found by sorting their hashes (ties, values seen once, go by first row).
* numbers: count, min, max, mean and standard deviation (sample, ddof=1, like pandas) are exact,
  merged across chunks with Chan's parallel formula. Infinite values are counted apart and left out
  of the statistics. Quantiles and the histogram come from a uniform sample of ``SAMPLE_SIZE``
  rows (bottom-k of a hash of the row number, shared by all columns, so it does not depend on the
  chunking); they are exact when the file has no more rows than that, otherwise approximate
  (``quantiles_approximate``) with a rank error around 0.3 %. The histogram has 20 equal-width
  bins from the exact min to the exact max (integer columns with a range below 20 get one bin per
  integer and exact counts); sample counts are scaled to the column's size.
* duplicate rows: rows minus distinct rows, the distinct rows being counted on 64-bit row hashes
  kept sorted (in 16 buckets by their top bits). Exact up to ``DUPLICATE_HASH_CAP`` distinct
  rows; beyond that only the smallest hashes are kept, the number of distinct rows is a
  K-minimum-values estimate and ``duplicate_rows_approximate`` is true.

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

from .assessment import QUALITY_WEIGHTS, quality
from .columns import QUANTILES
from .profiler import ProfilingError, profile_csv
from .reader import NULL_VALUES, first_rows
from .schema import ColumnProfile, DatasetProfile, Histogram, QualityReport, TargetSummary, TopValue

__all__ = [
    "NULL_VALUES",
    "QUALITY_WEIGHTS",
    "QUANTILES",
    "ColumnProfile",
    "DatasetProfile",
    "Histogram",
    "ProfilingError",
    "QualityReport",
    "TargetSummary",
    "TopValue",
    "first_rows",
    "profile_csv",
    "quality",
]
