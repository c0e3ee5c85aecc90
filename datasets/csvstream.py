"""Reading and writing CSV files block by block with Arrow, values typed as pandas types them.

`Source` reads a file as often as an operation needs, with the same column types each pass: the
types Arrow infers from the first block, widened (and the pass restarted) when a later block does
not fit them, text where pandas has no type of its own (dates, times). `Writer` writes batches
with floats as pandas writes them. `Ticker` reports progress over the passes and checks for a stop.

A big UTF-8 file is read in parts, one per core, each by a reader of its own in a thread of its
own (Arrow parses, converts and writes without the GIL): `Source.scan` and `Source.write` run a
pass over every part at once. The parts are cut at row boundaries: at a newline with an even
number of quote characters before it (RFC 4180, where a quote inside a field is doubled), so a
quoted field with newlines in it is never cut.
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .profiling import hashing
from .profiling.reader import NULL_VALUES, ThrottledFile, close_reader, memory_pool  # pandas' missing markers


class Cancelled(Exception):
    """should_stop() said so."""


#: Bytes of CSV text per block read (a longer row makes the pass start again with blocks 4 times bigger).
BLOCK_BYTES = 2 * 1024 * 1024
#: Blocks Arrow may read ahead of what a part's reader consumed (measured with bench/big_data.py).
READ_AHEAD_BLOCKS = 4
_BLOCK_LIMIT = 1024 * 1024 * 1024
#: A file this big or bigger is read in parts, one per core (up to `_MAX_PARTS`), at once.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024
_MAX_PARTS = 4
_REPORT_EVERY = 0.5  # seconds between progress reports (and should_stop checks) within a pass
_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", re.S)
_WIDER = ("null", "bool", "int64", "double", "string")  # what a column may widen to, in order


def _fits(type_name: str, value: str) -> bool:
    if type_name == "bool":
        return value in ("True", "TRUE", "true", "False", "FALSE", "false")
    if type_name in ("int64", "double"):
        try:
            (int if type_name == "int64" else float)(value)
            return True
        except ValueError:
            return False
    return type_name == "string"


def _pandas_like(t: pa.DataType) -> bool:
    """Types pandas gives a column too; dates, times and the like are text to pandas."""
    return pa.types.is_null(t) or pa.types.is_boolean(t) or t in (pa.int64(), pa.float64(), pa.string())


def is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_null(t) or t in (pa.int64(), pa.float64())


class Source:
    """The input file, read block by block as often as an operation needs, with the same types each time."""

    def __init__(self, path: str, encoding: str, delimiter: str, block_size: int, ticker: "Ticker",
                 parallel_min_bytes: int = PARALLEL_MIN_BYTES):
        self.path, self.delimiter, self.block_size, self.ticker = path, delimiter, block_size, ticker
        try:
            utf8 = codecs.lookup(encoding or "utf-8").name in ("utf-8", "utf-8-sig", "ascii")
        except LookupError as exc:
            raise ValueError(f"unknown encoding {encoding!r}") from exc
        self.encoding = "utf8" if utf8 else encoding
        self.types: dict[str, pa.DataType] = {}  # widened or read as text
        self._read_schema()
        size = os.path.getsize(path)
        parts = min(os.cpu_count() or 1, _MAX_PARTS) if utf8 and size >= parallel_min_bytes else 1
        #: byte ranges [start, end) of the parts, cut at row boundaries; the first holds the header
        self.parts = row_ranges(path, parts)
        self.part_rows: list[int] | None = None  # rows in each part, once a scan has counted them
        # Columns of integers (or only gaps) in the first block: with gaps or a fraction further down,
        # pandas reads them as floats, and writes 1 as 1.0 in every output, whether it has a gap or
        # not. Every scan reads them, so that their types are settled before anything is written.
        self.integers = [f.name for f in self.schema if f.type == pa.int64() or pa.types.is_null(f.type)]

    def _read_schema(self) -> None:
        """The columns and their types in the first block, which every pass's readers are given."""
        while True:
            try:
                stream, reader = self._open()
                break
            except pa.ArrowInvalid as exc:  # a row longer than a block: blocks four times bigger
                if "straddl" not in str(exc) or self.block_size >= _BLOCK_LIMIT:
                    raise
                self.block_size *= 4
        self.schema = reader.schema
        # Not run to its end (`close_reader`): that would parse the blocks read ahead, a tenth of a
        # second, and the reader goes at once here, while the process has long to live.
        stream.close()

    def _retype(self, types: dict[str, pa.DataType]) -> None:
        self.types.update(types)
        for name, kind in types.items():
            i = self.schema.get_field_index(name)
            self.schema = self.schema.set(i, self.schema.field(i).with_type(kind))

    def _widen(self, exc: pa.ArrowInvalid) -> None:
        """The column a block did not fit, one type wider (int to float, anything to text), or blocks
        four times bigger for a row longer than one; else `exc`."""
        if "straddl" in str(exc) and self.block_size < _BLOCK_LIMIT:
            self.block_size *= 4
            return
        match = _CONVERSION.search(str(exc))
        if not match:
            raise exc
        name = self.schema.names[int(match[1])]
        after = _WIDER.index(match[2]) + 1 if match[2] in _WIDER else len(_WIDER) - 1
        wider = next(t for t in _WIDER[after:] if _fits(t, match[3]))
        self._retype({name: pa.type_for_alias(wider)})

    def _open(self, columns: list[str] | None = None, part: int | None = None, text: frozenset[str] = frozenset()):
        """A reader of the whole file, or of one part of it (with every column's type given, and the
        columns of `text` read as text)."""
        if part is None:  # the first block, for the schema
            types, start, end = self.types, 0, None
        else:
            types = {name: pa.string() if name in text else kind
                     for name, kind in zip(self.schema.names, self.schema.types)}
            start, end = self.parts[part]
        names = self.schema.names if start else None  # a part after the first has no header
        pool = memory_pool()
        # Arrow reads at most a few blocks ahead of what was consumed, into buffers of its own pool
        stream = ThrottledFile(self.path, self.block_size, ahead=READ_AHEAD_BLOCKS, pool=pool, start=start, end=end)
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(encoding=self.encoding, block_size=self.block_size,
                                               column_names=names),
                parse_options=pacsv.ParseOptions(delimiter=self.delimiter or ",", newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(null_values=NULL_VALUES, strings_can_be_null=True,
                                                     quoted_strings_can_be_null=True, column_types=types,
                                                     include_columns=columns or []),
                memory_pool=pool,
            )
        except BaseException:
            stream.close()
            raise
        text = {f.name: pa.string() for f in reader.schema if not _pandas_like(f.type)}
        if text:
            stream.close()  # a first block's reader (part None), which goes at once: see _read_schema
            self.types.update(text)
            return self._open(columns, part, text)
        return stream, reader

    def _each_part(self, work: Callable[[int, Iterator[pa.RecordBatch]], object],
                   columns: list[str] | None = None, text: frozenset[str] = frozenset()) -> list:
        """`work(part, its batches)` for every part at once, a thread each; their results in order.
        This thread reports progress and checks for a stop meanwhile; a failure stops every part."""
        stop = threading.Event()
        read = [0] * len(self.parts)
        size = max(os.path.getsize(self.path), 1)

        def run(part):
            stream, reader = self._open(columns, part, text)

            def batches():
                for batch in reader:
                    if stop.is_set():
                        raise Cancelled()
                    yield batch
                    stream.consumed()
                    read[part] = stream.position

            try:
                return work(part, batches())
            finally:
                close_reader(stream, reader)

        with ThreadPoolExecutor(len(self.parts), thread_name_prefix="csv-part") as pool:
            futures = [pool.submit(run, part) for part in range(len(self.parts))]
            try:
                while True:
                    done, pending = wait(futures, timeout=_REPORT_EVERY / 2, return_when=FIRST_EXCEPTION)
                    if not pending or any(f.exception() for f in done):
                        break
                    self.ticker.tick(min(sum(read) / size, 1.0))
            finally:
                stop.set()  # a failure or a stop here: the other parts end at their next batch
                wait(futures)
            for future in futures:  # the first part's failure first (Cancelled only if nothing else)
                if future.exception() and not isinstance(future.exception(), Cancelled):
                    raise future.exception()
            return [f.result() for f in futures]

    def scan(self, start: Callable[[], Callable[[pa.RecordBatch, int], object]],
             columns: Callable[[], list[str] | None] | None = None) -> list:
        """A first pass: `start()` gives a fresh visitor of every batch, `visit(batch, its part)`, and
        returns what it returned for each, in file order. The parts are read at once, so `visit` runs
        in a thread for each part (a part's batches in order, in one thread).
        `columns()`, asked after `start()`, names the columns to read (None: all, and their types).
        A block that contradicts the types inferred so far restarts the pass with that column wider
        (int to float, anything to text). An integer column with gaps is read as floats after it, as
        pandas reads it."""
        while True:
            visit = start()
            wanted = columns() if columns else None
            if wanted is not None:
                wanted = [*wanted, *(name for name in self.integers if name not in wanted)]
            gaps: set[str] = set()

            def work(part, batches):
                out, rows = [], 0
                for batch in batches:
                    out.append(visit(batch, part))
                    rows += batch.num_rows
                    gaps.update(_int_gaps(batch))
                return out, rows

            try:
                parts = self._each_part(work, (wanted or self.schema.names[:1]) if wanted is not None else None)
            except pa.ArrowInvalid as exc:
                self._widen(exc)
                continue
            self.part_rows = [rows for _, rows in parts]
            # pandas reads an integer column with gaps as floats: so do the passes after this one
            self._retype(dict.fromkeys(gaps, pa.float64()))
            return [result for out, _ in parts for result in out]

    def _first_rows(self) -> list[int]:
        """The number of each part's first row (a scan counted the rows of each)."""
        assert self.part_rows is not None, "a pass after the scan"
        return [sum(self.part_rows[:part]) for part in range(len(self.parts))]

    def read(self, columns: list[str], visit: Callable[[pa.RecordBatch, int], object]) -> list:
        """A pass after the scan over `columns` only, the parts at once: what `visit(batch, its first
        row's number)` returned for each batch, in file order."""
        firsts = self._first_rows()

        def work(part, batches):
            out, offset = [], firsts[part]
            for batch in batches:
                out.append(visit(batch, offset))
                offset += batch.num_rows
            return out

        return [result for out in self._each_part(work, columns) for result in out]

    def write(self, paths: list[str], transform: Callable[[pa.RecordBatch, int], list[pa.RecordBatch]],
              typed: Iterable[str] = ()) -> list[int]:
        """The last pass, after a scan: `transform(batch, its first row's number)` gives a batch for
        each of `paths`; returns the rows written to each. Every part writes files of its own, put
        together at the end.

        Only the columns `typed` (those the transform changes) are read as values. The others are
        written as the file has them, a missing marker written empty and a whole number in a column of
        floats given a ".0" until the part's output has a gap or a fraction in that column (the scan
        settled which columns are floats; each part decides alone, so the files are the same
        whichever part ends first): the same values and types to pandas, without a number's round
        trip through binary and back. A typed column that does not fit its type, or an integer one
        with gaps, restarts the pass with it wider."""
        typed = frozenset(typed)
        firsts = self._first_rows()

        def part_path(path, part):
            return path if part == 0 else f"{path}.part{part}"

        def work(part, batches):
            writers = [Writer(part_path(path, part), self.schema.names, header=part == 0, floats=set(floats))
                       for path in paths]
            offset = firsts[part]
            try:
                for batch in batches:
                    gaps = _int_gaps(batch)
                    if gaps:
                        raise _Gaps(gaps)
                    for writer, out in zip(writers, transform(batch, offset)):
                        if out.num_rows:
                            writer.write(out)
                    offset += batch.num_rows
            finally:
                for writer in writers:
                    writer.close()
            return [writer.rows for writer in writers]

        try:
            while True:
                text = frozenset(self.schema.names) - typed
                floats = [f.name for f in self.schema if f.name in text and f.type == pa.float64()]
                try:
                    parts = self._each_part(work, None, text)
                    break
                except _Gaps as exc:
                    self._retype(dict.fromkeys(exc.names, pa.float64()))
                except pa.ArrowInvalid as exc:
                    self._widen(exc)
            for path in paths:
                with open(path, "r+b", buffering=0) as out:
                    out.seek(0, os.SEEK_END)
                    for part in range(1, len(self.parts)):
                        with open(part_path(path, part), "rb", buffering=0) as piece:
                            _append(piece, out)
            return [sum(rows[i] for rows in parts) for i in range(len(paths))]
        finally:
            for path in paths:
                for part in range(1, len(self.parts)):
                    if os.path.exists(part_path(path, part)):
                        os.remove(part_path(path, part))


def _append(source, target) -> None:
    """The rest of file `source` at `target`'s position (both unbuffered), copied by the kernel where
    it can."""
    try:
        while os.copy_file_range(source.fileno(), target.fileno(), 1 << 30):
            pass
    except (AttributeError, OSError):  # no copy_file_range here, or not between these files
        shutil.copyfileobj(source, target, 16 * 1024 * 1024)


class _Gaps(Exception):
    """A batch has integer columns with gaps, which pandas reads as floats."""

    def __init__(self, names: list[str]):
        super().__init__(", ".join(names))
        self.names = names


def _int_gaps(batch: pa.RecordBatch) -> list[str]:
    return [name for name, column in zip(batch.schema.names, batch.columns)
            if column.type == pa.int64() and column.null_count]


def row_ranges(path: str, parts: int) -> list[tuple[int, int]]:
    """`parts` byte ranges of about the same size, cut after a newline with an even number of quote
    characters before it (so never inside a quoted field, nor in the header); fewer when the file
    has no such newline near a cut."""
    size = os.path.getsize(path)
    cuts = [0]
    if parts > 1:
        with open(path, "rb") as f:
            quotes, pos = 0, 0
            header_end = _row_end(f, 0, 0, size)
            for i in range(1, parts):
                aim = max(size * i // parts, header_end or size, cuts[-1])
                while pos < aim:  # the quotes before `aim`
                    f.seek(pos)
                    chunk = f.read(min(aim - pos, 16 * 1024 * 1024))
                    quotes += chunk.count(b'"')
                    pos += len(chunk)
                cut = _row_end(f, pos, quotes, size)
                if cut is None or cut >= size or cut <= cuts[-1]:
                    break
                cuts.append(cut)
    return list(zip(cuts, cuts[1:] + [size]))


def _row_end(f, pos: int, quotes: int, size: int) -> int | None:
    """The offset just after the first newline at or after `pos` with an even number of quotes before
    it (`quotes` of them before `pos`), or None."""
    while pos < size:
        f.seek(pos)
        chunk = f.read(1024 * 1024)
        if not chunk:
            return None
        at = 0
        while True:
            newline = chunk.find(b"\n", at)
            if newline < 0:
                quotes += chunk.count(b'"', at)
                break
            quotes += chunk.count(b'"', at, newline)
            if quotes % 2 == 0:
                return pos + newline + 1
            at = newline + 1
        pos += len(chunk)
    return None


def text_of_floats(values: pa.Array) -> pa.Array:
    """Floats as pandas writes them: Arrow writes 2.0 as "2", pandas as "2.0"."""
    text = pc.cast(values, pa.string())
    numbers = values.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        whole = (np.floor(numbers) == numbers) & (np.abs(numbers) < 1e16)  # 1e16: "1e+16"; gaps are NaN
    if not whole.any():
        return text
    mended = pc.binary_join_element_wise(text.take(pa.array(np.flatnonzero(whole))), ".0", "")
    return pc.replace_with_mask(text, pa.array(whole), mended)


def floats_for_csv(values: pa.Array) -> pa.Array:
    """Floats as text for an output file, twice as fast as Arrow's cast: the shortest text that
    reads back as the same float, "2.0" for 2 (orjson's formatting, as pandas writes them, but for
    the form of exponents: 1e-06 is 1e-6 here), a gap or NaN empty, infinities as pandas writes them."""
    if not len(values):
        return pa.array([], type=pa.string())
    numbers = values.to_numpy(zero_copy_only=False)
    data = orjson.dumps(numbers, option=orjson.OPT_SERIALIZE_NUMPY)  # "[1.5,2.0,null]" (NaN and inf: null)
    joined = pa.StringArray.from_buffers(1, pa.py_buffer(np.array([0, len(data) - 2], dtype=np.int32)),
                                         pa.py_buffer(data[1:-1]))  # one string, without the brackets
    text = pc.list_flatten(pc.split_pattern(joined, ","))
    finite = np.isfinite(numbers)
    if finite.all():
        return text
    infinite = np.isinf(numbers)
    if infinite.any():
        text = pc.replace_with_mask(text, pa.array(infinite),
                                    pc.cast(values.filter(pa.array(infinite)), pa.string()))
    return pc.if_else(pa.array(finite | infinite), text, pa.scalar(None, pa.string()))


def whole_rows(text: pa.Array) -> np.ndarray:
    """The rows of a float column's text that are whole numbers as the file has them ("7", "-7"),
    which pandas reads back as integers in a column that has nothing else."""
    undotted = np.flatnonzero(pc.fill_null(pc.equal(pc.find_substring(text, "."), -1), False).to_numpy(
        zero_copy_only=False))  # the few candidates, checked closely
    if not len(undotted):
        return undotted
    candidates = text.take(pa.array(undotted))
    whole = pc.fill_null(pc.ascii_is_decimal(pc.ascii_ltrim(candidates, "+-")), False).to_numpy(zero_copy_only=False)
    return undotted[whole]


def _append_to(text: pa.Array, rows: np.ndarray, suffix: bytes) -> pa.Array:
    """`text` with `suffix` after the values of `rows` (sorted), its buffers put together with NumPy:
    Arrow's replace_with_mask copied the values one by one."""
    offsets = data = grown = None
    if not text.offset and pa.types.is_string(text.type):
        offsets, data = hashing.string_bytes(text)
        grown = np.zeros(len(text) + 1, dtype=np.int64)
        grown[rows + 1] = len(suffix)
        np.cumsum(grown, out=grown)
        grown += offsets
    if grown is None or grown[-1] >= 2 ** 31:  # a slice, or past 32-bit offsets: Arrow's kernels
        mask = np.zeros(len(text), dtype=bool)
        mask[rows] = True
        return pc.replace_with_mask(text, pa.array(mask), pc.binary_join_element_wise(
            text.take(pa.array(rows)), suffix.decode(), ""))
    ends = offsets[rows + 1]
    extra = np.frombuffer(suffix, dtype=np.uint8)
    data = np.insert(data, np.repeat(ends, len(extra)), np.tile(extra, len(rows)))
    validity = text.buffers()[0] if text.null_count else None
    return pa.StringArray.from_buffers(len(text), pa.py_buffer(grown.astype(np.int32)), pa.py_buffer(data),
                                       validity, text.null_count)


class Writer:
    """An output CSV file written batch by batch; the header alone when no row reaches it (and
    nothing at all for a part after the first, written with `header=False`)."""

    def __init__(self, path: str, names: list[str], header: bool = True, floats: set[str] | None = None):
        self.path, self.names, self.header, self.rows, self._writer = path, names, header, 0, None
        #: float columns read as text that no row written here has shown to be floats yet (a gap, a
        #: fraction): with whole numbers alone, pandas would read them back as integers
        self.floats = floats if floats is not None else set()

    def _open(self, schema: pa.Schema) -> None:
        self._writer = pacsv.CSVWriter(self.path, schema, write_options=pacsv.WriteOptions(include_header=self.header))

    def write(self, batch: pa.RecordBatch) -> None:
        if self.floats or any(pa.types.is_floating(t) for t in batch.schema.types):
            batch = pa.RecordBatch.from_arrays([self._text(name, c) for name, c in zip(batch.schema.names,
                                                                                       batch.columns)],
                                               names=batch.schema.names)
        if self._writer is None:
            self._open(batch.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def _text(self, name: str, column: pa.Array) -> pa.Array:
        if pa.types.is_floating(column.type):
            return floats_for_csv(column)
        if name not in self.floats or not len(column):
            return column
        rows = whole_rows(column)
        if column.null_count or len(rows) < len(column):  # a gap or a fraction: floats to pandas
            self.floats.discard(name)
            return column
        return _append_to(column, rows, b".0")

    def close(self) -> None:
        if self._writer is None:
            self._open(pa.schema([(n, pa.string()) for n in self.names]))
        self._writer.close()


class Ticker:
    """Progress over the passes of an operation, reported (and should_stop checked) every half second."""

    def __init__(self, report, should_stop, passes: int):
        self.report, self.should_stop, self.passes, self.done, self.step = report, should_stop, passes, 0, ""
        self._last = 0.0

    def start(self, step: str) -> None:
        self.step, self._last = step, 0.0
        self.tick(0.0)

    def end(self) -> None:
        self.done += 1

    def tick(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self._last < _REPORT_EVERY:
            return
        self._last = now
        check(self.should_stop)
        self.report(min((self.done + fraction) / self.passes, 1.0), self.step)


def check(should_stop):
    if should_stop is not None and should_stop():
        raise Cancelled()
