"""Reading and writing CSV files block by block with Arrow, values typed as pandas types them.

`Source` reads a file as often as an operation needs, with the same column types each pass: the
types Arrow infers from the first block, widened (and the pass restarted) when a later block does
not fit them, text where pandas has no type of its own (dates, times). `Writer` writes batches
with floats as pandas writes them. `Ticker` reports progress over the passes and checks for a stop.
"""

from __future__ import annotations

import codecs
import os
import re
import time
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv


class Cancelled(Exception):
    """should_stop() said so."""


#: Values read as missing: pandas' defaults for ``read_csv``.
NULL_VALUES = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]
#: Bytes of CSV text per block read (a row must fit in one).
BLOCK_BYTES = 8 * 1024 * 1024
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

    def __init__(self, path: str, encoding: str, delimiter: str, block_size: int, ticker: "Ticker"):
        self.path, self.delimiter, self.block_size, self.ticker = path, delimiter, block_size, ticker
        try:
            utf8 = codecs.lookup(encoding or "utf-8").name in ("utf-8", "utf-8-sig", "ascii")
        except LookupError as exc:
            raise ValueError(f"unknown encoding {encoding!r}") from exc
        self.encoding = "utf8" if utf8 else encoding
        self.types: dict[str, pa.DataType] = {}  # widened or read as text
        self._read_schema()

    def _read_schema(self) -> None:
        stream, reader = self._open()
        self.schema = reader.schema
        stream.close()

    def _retype(self, types: dict[str, pa.DataType]) -> None:
        self.types.update(types)
        for name, kind in types.items():
            i = self.schema.get_field_index(name)
            self.schema = self.schema.set(i, self.schema.field(i).with_type(kind))

    def _open(self, columns: list[str] | None = None):
        # Some columns only (after a first pass has typed them all): the others are not converted.
        types = {name: self.schema.field(name).type for name in columns} if columns else self.types
        stream = pa.OSFile(self.path)
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(encoding=self.encoding, block_size=self.block_size),
                parse_options=pacsv.ParseOptions(delimiter=self.delimiter or ",", newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(null_values=NULL_VALUES, strings_can_be_null=True,
                                                     quoted_strings_can_be_null=True, column_types=types,
                                                     include_columns=columns or []),
            )
        except BaseException:
            stream.close()
            raise
        text = {f.name: pa.string() for f in reader.schema if not _pandas_like(f.type)}
        if text:
            stream.close()
            self.types.update(text)
            return self._open()
        return stream, reader

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The file's batches: every column, or (after `scan`) only `columns`."""
        stream, reader = self._open(columns)
        size = max(os.path.getsize(self.path), 1)
        try:
            for batch in reader:
                yield batch
                self.ticker.tick(min(stream.tell() / size, 1.0))
        finally:
            stream.close()

    def scan(self, start: Callable[[], Callable[[pa.RecordBatch], None]]) -> None:
        """A first pass: `start()` gives a fresh visitor of every batch. A block that contradicts the
        types inferred so far restarts the pass with that column wider (int to float, anything to text).
        An integer column with gaps is read as floats after it, as pandas reads it."""
        while True:
            visit, gaps = start(), set()
            try:
                for batch in self.batches():
                    visit(batch)
                    gaps.update(name for name, column in zip(batch.schema.names, batch.columns)
                                if column.type == pa.int64() and column.null_count)
                # pandas reads an integer column with gaps as floats: so do the passes after this one
                self._retype(dict.fromkeys(gaps, pa.float64()))
                return
            except pa.ArrowInvalid as exc:
                match = _CONVERSION.search(str(exc))
                if not match:
                    raise
                name = self.schema.names[int(match[1])]
                after = _WIDER.index(match[2]) + 1 if match[2] in _WIDER else len(_WIDER) - 1
                wider = next(t for t in _WIDER[after:] if _fits(t, match[3]))
                self._retype({name: pa.type_for_alias(wider)})


def text_of_floats(values: pa.Array) -> pa.Array:
    """Floats as pandas writes them: Arrow writes 2.0 as "2", pandas as "2.0"."""
    text = pc.cast(values, pa.string())
    whole = pc.and_(pc.equal(pc.floor(values), values), pc.less(pc.abs(values), 1e16))  # 1e16: "1e+16"
    if not pc.any(whole).as_py():
        return text
    return pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)


class Writer:
    """An output CSV file written batch by batch; the header alone when no row reaches it."""

    def __init__(self, path: str, names: list[str]):
        self.path, self.names, self.rows, self._writer = path, names, 0, None

    def write(self, batch: pa.RecordBatch) -> None:
        columns = [text_of_floats(c) if pa.types.is_floating(c.type) else c for c in batch.columns]
        batch = pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
        if self._writer is None:
            self._writer = pacsv.CSVWriter(self.path, batch.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        if self._writer is None:
            self._writer = pacsv.CSVWriter(self.path, pa.schema([(n, pa.string()) for n in self.names]))
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
