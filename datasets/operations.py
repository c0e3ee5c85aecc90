"""Processing operations over a CSV file: clean, split, scale. Pure Arrow and NumPy, no Django.

Each operation streams its input in blocks (Arrow's streaming CSV reader) and writes its outputs
block by block (Arrow's CSV writer), so memory holds a few blocks plus what a statistic needs (a
64-bit hash per row to drop duplicates, the values of a column with gaps for a median or a mode,
the target column to stratify), never the whole file. A statistic over the whole file (a mean, a
fill value, which rows are duplicates or go to the test side) is a first pass; writing is the last.

Values are read as pandas reads them (its missing markers; integers, floats and booleans, anything
else text) and the results are the ones pandas gave over the whole file: the same rows kept, the
same split for a seed, the same fill values and scaling (reading and writing: `csvstream`).

Each operation reports progress through `progress(fraction, step)`, checks `should_stop()` between
blocks, and writes one or more output CSV files. Options are checked up front by
`clean_options()` so that a bad request fails at the edge, before any work is queued.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import csvstream
from .csvstream import Cancelled  # noqa: F401 (the callers' name for it)
from .profiling import hashing

OPERATIONS = ("clean", "split", "scale")
MISSING_STRATEGIES = ("none", "drop_rows", "fill_mean", "fill_median", "fill_mode", "fill_constant")
SCALE_METHODS = ("standard", "minmax")


class OptionsError(ValueError):
    """Bad options for an operation: `errors` maps option names to messages."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


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
    block_size: int = csvstream.BLOCK_BYTES,
    parallel_min_bytes: int = csvstream.PARALLEL_MIN_BYTES,
) -> tuple[list[Output], dict]:
    """Run one operation; returns its output files and a summary of what it did."""
    report = progress or (lambda fraction, step: None)
    # clean: maybe a pass more for a median or a mode (and a mean of a column that is not numeric)
    passes = 3 if operation == "clean" and options["missing"] not in ("none", "drop_rows", "fill_constant") else 2
    ticker = csvstream.Ticker(report, should_stop, passes)
    ticker.start("reading the file")
    source = csvstream.Source(path, encoding, delimiter, block_size, ticker, parallel_min_bytes)
    handler = {"clean": _clean, "split": _split, "scale": _scale}[operation]
    labels, transform, typed, summary = handler(source, options, target_column, ticker)
    ticker.passes = ticker.done + 1  # the last: it may take fewer passes or more than first thought
    ticker.start(f"writing the {' and '.join(labels)} file{'s' if len(labels) > 1 else ''}")
    paths = [output_path(label) for label in labels]
    written = source.write(paths, transform, typed)
    report(1.0, "done")
    outputs = [Output(label=label, path=path, rows=rows) for label, path, rows in zip(labels, paths, written)]
    return outputs, {"rows_in": sum(source.part_rows), **summary}


@dataclass
class Sample:
    path: str
    rows: int  # rows written
    rows_total: int  # rows in the file
    stratified: bool


def sample(
    *,
    path: str,
    encoding: str,
    delimiter: str,
    rows: int,
    target_column: str,
    stratify: Callable[[pd.Series], bool],
    output_path: str,
    random_state: int = 42,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    block_size: int = csvstream.BLOCK_BYTES,
    parallel_min_bytes: int = csvstream.PARALLEL_MIN_BYTES,
) -> Sample:
    """About `rows` rows of the file drawn at random (seeded), in file order, written to `output_path`.
    When `stratify(target)` says so (given the whole target column), each value of the target keeps
    its share of the rows; else every row has the same chance."""
    ticker = csvstream.Ticker(progress or (lambda fraction, step: None), should_stop, 2)
    ticker.start("reading the target column")
    source = csvstream.Source(path, encoding, delimiter, block_size, ticker, parallel_min_bytes)
    has_target = target_column in source.schema.names

    def start():
        return lambda batch, part: batch.column(target_column) if has_target else None

    # the target only (or the first column, to count the rows)
    target = [c for c in source.scan(start, lambda: [target_column] if has_target else []) if c is not None]
    ticker.end()
    total = sum(source.part_rows)
    rng = np.random.default_rng(random_state)
    keep = np.zeros(total, dtype=bool)
    stratified = bool(target) and stratify(pa.chunked_array(target).to_pandas())
    if stratified:
        share = rows / total
        for idx in _groups([_keys(c) for c in target], rng):
            keep[idx[:int(round(len(idx) * share))]] = True
    else:
        keep[rng.choice(total, min(rows, total), replace=False)] = True
    del target
    ticker.start(f"writing a sample of {int(keep.sum()):,} of {total:,} rows")
    [written] = source.write([output_path], lambda batch, offset: [batch.filter(
        pa.array(keep[offset:offset + batch.num_rows]))])  # every column as the file has it
    return Sample(path=output_path, rows=written, rows_total=total, stratified=stratified)


# --- clean ------------------------------------------------------------------------------------------


def _row_hashes(batch: pa.RecordBatch) -> np.ndarray:
    """A 64-bit hash of each row: equal rows (missing equal to missing) get equal hashes in any block."""
    rows = np.zeros(batch.num_rows, dtype=hashing.U64)
    for i, column in enumerate(batch.columns):
        salt = hashing.salt_for(i)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            h = hashing.hash_strings(column, salt)
        elif pa.types.is_null(column.type):
            h = np.zeros(batch.num_rows, dtype=hashing.U64)
        else:
            values = column.cast(pa.int64() if pa.types.is_boolean(column.type) else column.type)
            h = hashing.hash_numbers(values.fill_null(0).to_numpy(), salt)
        if column.null_count:
            h[column.is_null().to_numpy(zero_copy_only=False)] = hashing.NULL_HASH ^ salt
        rows *= hashing.ROW_PRIME
        rows ^= h
        hashing.mix(rows)
    return rows


def _filter(batch: pa.RecordBatch, mask: np.ndarray) -> pa.RecordBatch:
    """The rows of `mask` (the batch itself when it keeps them all)."""
    return batch if mask.all() else batch.filter(pa.array(mask))


def _negated(tally: pa.StructArray) -> pa.StructArray:
    return pa.StructArray.from_arrays([tally.field("values"), pc.negate(tally.field("counts"))], ["values", "counts"])


def _mode_of_tallies(tallies: list[pa.StructArray], kind: pa.DataType):
    """`_mode` of the values tallied (value_counts) batch by batch, as values of type `kind` (an
    integer column with gaps was tallied as integers, and read again as floats)."""
    tallies = [t for t in tallies if len(t)]
    if not tallies:
        return None
    table = pa.Table.from_batches([pa.RecordBatch.from_arrays(
        [t.field("values").cast(kind), t.field("counts")], ["values", "counts"]) for t in tallies])
    totals = table.group_by("values").aggregate([("counts", "sum")])
    totals = totals.filter(pc.greater(totals["counts_sum"], 0))
    if not totals.num_rows:
        return None
    top = pc.equal(totals["counts_sum"], pc.max(totals["counts_sum"]))
    return pc.min(pc.filter(totals["values"], top)).as_py()


def _mode(values: pa.ChunkedArray):
    """The most frequent value, the smallest of them on a tie (pandas' `mode().iloc[0]`)."""
    if not len(values):
        return None
    counts = pc.value_counts(values.combine_chunks())
    top = pc.equal(counts.field("counts"), pc.max(counts.field("counts")))
    return pc.min(pc.filter(counts.field("values"), top)).as_py()


def _valid(batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
    valid = np.ones(batch.num_rows, dtype=bool)
    for name in columns:
        column = batch.column(name)
        if column.null_count:
            valid &= column.is_valid().to_numpy(zero_copy_only=False)
    return valid


def _clean(source: csvstream.Source, options, target, ticker):
    columns = options.get("columns") or source.schema.names
    strategy = options["missing"]

    def counts(batch) -> tuple[np.ndarray, np.ndarray, int]:
        """Gaps and sums (for a mean) of each column, and rows with a gap."""
        missing = np.array([batch.column(name).null_count for name in columns], dtype=np.int64)
        sums = np.array([pc.sum(batch.column(name).cast(pa.float64())).as_py() or 0.0
                         if strategy == "fill_mean" and batch.column(name).type in (pa.int64(), pa.float64()) else 0.0
                         for name in columns])
        return missing, sums, batch.num_rows - int(_valid(batch, columns).sum())

    # The values of a column that a mode may fill are tallied in this pass, in every part that has a
    # gap in it in its first batch (most columns with gaps): a column tallied in every part from its
    # start needs no pass of its own for its mode.
    def mode_may_fill(column: pa.Array) -> bool:
        numeric = column.type in (pa.int64(), pa.float64())
        return strategy == "fill_mode" or (strategy in ("fill_mean", "fill_median") and not numeric)

    tallied: dict[int, list[str]] = {}  # part: the columns it tallies

    def tallies(batch, names) -> dict[str, pa.StructArray]:
        return {name: pc.value_counts(batch.column(name).drop_null()) for name in names}

    def start():
        tallied.clear()

        def visit(batch, part):
            if part not in tallied:  # the part's first batch (each part runs in a thread of its own)
                tallied[part] = [name for name in columns
                                 if batch.column(name).null_count and mode_may_fill(batch.column(name))]
            hashes = _row_hashes(batch) if options["drop_duplicates"] else None
            return hashes, *counts(batch), tallies(batch, tallied[part])
        return visit

    ticker.start("finding duplicate rows and missing values")
    visits = source.scan(start)
    ticker.end()
    total = sum(source.part_rows)
    # counted over every row, in file order (the same sums whatever part ended first)
    missing, sums, incomplete = _totals([v[1:4] for v in visits], len(columns))
    everywhere = set(columns).intersection(*tallied.values()) if tallied else set()
    counted = {name: [v[4][name] for v in visits] for name in everywhere}
    types = dict(zip(source.schema.names, source.schema.types))
    keep = None
    if options["drop_duplicates"]:  # the first of equal rows, in file order
        hashes = np.concatenate([v[0] for v in visits]) if visits else np.empty(0, dtype=hashing.U64)
        keep = ~pd.Series(hashes).duplicated(keep="first").to_numpy()
    del visits
    rows = int(keep.sum()) if keep is not None else total
    if rows < total:  # what the dropped copies counted, read again (only those rows): not counted
        ticker.passes += 1
        ticker.start("counting what the duplicate rows held")

        def dropped_counts(batch, offset):
            batch = batch.filter(pa.array(~keep[offset:offset + batch.num_rows]))
            return *counts(batch), tallies(batch, everywhere)

        dropped = source.read(columns, dropped_counts)
        ticker.end()
        less = _totals([d[:3] for d in dropped], len(columns))
        missing, sums, incomplete = missing - less[0], sums - less[1], incomplete - less[2]
        for name in everywhere:
            counted[name] += [_negated(d[3][name]) for d in dropped]
    state = {"missing": dict(zip(columns, missing.tolist())), "sums": dict(zip(columns, sums.tolist())),
             "incomplete": incomplete}
    summary = {}
    if options["drop_duplicates"]:
        summary["duplicates_dropped"] = total - rows
    gaps = [c for c in columns if state["missing"][c]]
    if strategy == "fill_constant":
        values = dict.fromkeys(gaps, options["fill_value"])
    elif strategy == "fill_mean":
        values = {c: state["sums"][c] / (rows - state["missing"][c]) if rows > state["missing"][c] else None
                  for c in gaps if types[c] in (pa.int64(), pa.float64())}
    else:
        values = {}
    wanted = [c for c in gaps if c not in values] if strategy.startswith("fill_") else []
    for name in [c for c in wanted if c in counted and mode_may_fill(pa.nulls(0, types[c]))]:
        values[name] = _mode_of_tallies(counted[name], types[name])
        wanted.remove(name)
    if wanted:
        values.update(_fill_values(source, wanted, strategy, keep, ticker))
    fills = {c: _filler(types[c], v) for c, v in values.items()
             if v is not None and not (isinstance(v, float) and math.isnan(v))}

    def transform(batch, offset):
        if keep is not None:
            batch = _filter(batch, keep[offset:offset + batch.num_rows])
        if strategy == "drop_rows":
            batch = _filter(batch, _valid(batch, columns))
        elif fills:
            names = batch.schema.names
            batch = pa.RecordBatch.from_arrays(
                [fills[n](batch.column(n)) if n in fills else batch.column(n) for n in names], names=names)
        return [batch]

    if strategy == "drop_rows":
        summary["rows_dropped_for_missing"] = state["incomplete"]
        rows -= state["incomplete"]
    summary["missing_before"] = sum(state["missing"].values())
    summary["missing_after"] = 0 if strategy == "drop_rows" else sum(
        state["missing"][c] for c in columns if c not in fills)
    summary["rows_out"] = rows
    return ["cleaned"], transform, fills.keys(), summary


def _totals(counts: list[tuple], width: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The sum of `counts` (gaps, sums, rows with a gap), in order."""
    if not counts:
        return np.zeros(width, dtype=np.int64), np.zeros(width), 0
    return (np.sum([c[0] for c in counts], axis=0), np.sum([c[1] for c in counts], axis=0),
            sum(c[2] for c in counts))


def _fill_values(source: csvstream.Source, columns: list[str], strategy: str, keep, ticker) -> dict:
    """A pass more for a median or a mode: the kept values of the columns with gaps."""

    def visit(batch, offset):
        if keep is not None:
            batch = batch.filter(pa.array(keep[offset:offset + batch.num_rows]))
        return [batch.column(name).drop_null() for name in columns]

    ticker.start("computing fill values")
    visits = source.read(columns, visit)
    ticker.end()
    out = {}
    for i, name in enumerate(columns):
        chunks = [v[i] for v in visits]
        column = pa.chunked_array(chunks, type=source.schema.field(name).type)
        numeric = column.type in (pa.int64(), pa.float64())
        if strategy == "fill_median" and numeric:
            out[name] = float(np.median(column.to_numpy())) if len(column) else None
        else:  # a mode, and a mean or median of a column that is not numeric
            out[name] = _mode(column)
    return out


def _filler(column_type: pa.DataType, value) -> Callable[[pa.Array], pa.Array]:
    """Fill a column's gaps with `value` as pandas' fillna does: an integer column filled with a
    fraction becomes floats; a value of another kind makes the column text."""
    if isinstance(value, bool):
        kind = pa.bool_() if pa.types.is_boolean(column_type) else None
    elif isinstance(value, int):
        kind = column_type if column_type in (pa.int64(), pa.float64()) else None
    elif isinstance(value, float):
        kind = pa.float64() if csvstream.is_numeric(column_type) else None
    else:
        kind = pa.string() if pa.types.is_string(column_type) else None
    if pa.types.is_null(column_type) and kind is None:
        kind = pa.string()
    if kind is None:  # mixed: pandas writes the column's values and the fill as text
        text = str(value)

        def to_text(array):
            array = csvstream.text_of_floats(array) if pa.types.is_floating(array.type) else array.cast(pa.string())
            return pc.fill_null(array, text)
        return to_text
    scalar = pa.scalar(value, type=kind)
    return lambda array: pc.fill_null(array.cast(kind), scalar)


# --- split ------------------------------------------------------------------------------------------


def _keys(column: pa.Array) -> pa.Array:
    """The target as text, as pandas' `astype("string").fillna("<missing>")` gives it (the groups' order)."""
    text = csvstream.text_of_floats(column) if pa.types.is_floating(column.type) else column.cast(pa.string())
    if pa.types.is_boolean(column.type):
        text = pc.utf8_capitalize(text)
    return pc.fill_null(text, "<missing>")


def _groups(keys: list[pa.Array], rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The row numbers of each group of equal keys, the groups in the keys' order, each group's rows
    shuffled (as pandas' sorted groupby, then a shuffle of each group's index, gave them)."""
    encoded = pa.chunked_array(keys, type=pa.string()).combine_chunks().dictionary_encode()
    rank = np.empty(len(encoded.dictionary), dtype=np.int64)
    rank[pc.sort_indices(encoded.dictionary).to_numpy()] = np.arange(len(encoded.dictionary))
    codes = rank[encoded.indices.to_numpy()]
    order = np.argsort(codes, kind="stable")  # each group's rows in file order
    bounds = np.searchsorted(codes[order], np.arange(len(rank) + 1))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        idx = order[lo:hi].copy()
        rng.shuffle(idx)
        yield idx


def _split(source: csvstream.Source, options, target, ticker):
    stratify = options["stratify"]
    if stratify and target not in source.schema.names:
        raise ValueError(f"target column {target!r} is not in the file")

    def start():
        return lambda batch, part: _keys(batch.column(target)) if stratify else None

    ticker.start("reading the rows to split")
    keys = source.scan(start, lambda: [target] if stratify else [])  # the target only (or one column, to count)
    ticker.end()
    rows = sum(source.part_rows)
    rng = np.random.default_rng(options["random_state"])
    ratio = options["test_ratio"]
    test_mask = np.zeros(rows, dtype=bool)
    if stratify:
        for idx in _groups(keys, rng):
            test_mask[idx[:int(round(len(idx) * ratio))]] = True
    else:
        order = np.arange(rows)
        if options["shuffle"]:
            rng.shuffle(order)
        cut = int(round(rows * ratio))
        test_mask[order[:cut] if options["shuffle"] else order[rows - cut:]] = True
    test_rows = int(test_mask.sum())
    if test_rows in (0, rows):
        raise ValueError(f"a {ratio:g} split of {rows} rows leaves one side empty")

    def transform(batch, offset):
        mask = test_mask[offset:offset + batch.num_rows]
        return [batch.filter(pa.array(~mask)), batch.filter(pa.array(mask))]

    return ["train", "test"], transform, (), {"train_rows": rows - test_rows, "test_rows": test_rows}


# --- scale ------------------------------------------------------------------------------------------


def _scale(source: csvstream.Source, options, target, ticker):
    state: dict = {}

    def start():
        numeric = [f.name for f in source.schema if csvstream.is_numeric(f.type) and f.name != target]
        state.update(numeric=numeric, columns=[c for c in (options.get("columns") or numeric) if c in numeric])

        def visit(batch, part):  # each column's n, mean, M2, min and max in this batch
            out = {}
            for name in state["columns"]:
                values = batch.column(name).drop_null().cast(pa.float64()).to_numpy()
                if len(values):
                    mean = float(values.mean())
                    out[name] = (len(values), mean, float(((values - mean) ** 2).sum()),
                                 float(values.min()), float(values.max()))
            return out
        return visit

    ticker.start("computing the columns' statistics")
    # the numeric columns only (any other column is text, and stays text)
    visits = source.scan(start, lambda: [f.name for f in source.schema if csvstream.is_numeric(f.type)])
    ticker.end()
    columns = state["columns"]
    state["stats"] = {c: [0, 0.0, 0.0, math.inf, -math.inf] for c in columns}  # n, mean, M2, min, max
    for batch_stats in visits:  # in file order, as one reader gave them
        for name, (n, mean, m2, low, high) in batch_stats.items():
            acc = state["stats"][name]
            total = acc[0] + n
            delta = mean - acc[1]  # Chan et al.'s merge of two partial variances
            acc[2] += m2 + delta * delta * acc[0] * n / total
            acc[1] += delta * n / total
            acc[0] = total
            acc[3], acc[4] = min(acc[3], low), max(acc[4], high)
    skipped = [c for c in (options.get("columns") or []) if c not in state["numeric"]]
    parameters = {}
    for name in columns:
        n, mean, m2, low, high = state["stats"][name]
        if not n:
            center, spread = math.nan, math.nan
        elif options["method"] == "standard":
            center, spread = mean, math.sqrt(m2 / n)
        else:
            center, spread = low, high - low
        spread = spread if spread and not math.isnan(spread) else 1.0
        parameters[name] = (center, spread)

    def transform(batch, offset):
        names = batch.schema.names
        arrays = [pc.divide(pc.subtract(batch.column(n).cast(pa.float64()), parameters[n][0]), parameters[n][1])
                  if n in parameters else batch.column(n) for n in names]
        return [pa.RecordBatch.from_arrays(arrays, names=names)]

    stats = {c: {"center": None if math.isnan(center) else float(center), "scale": float(spread)}
             for c, (center, spread) in parameters.items()}
    return ["scaled"], transform, parameters.keys(), {"scaled_columns": columns, "skipped_columns": skipped, "parameters": stats}
