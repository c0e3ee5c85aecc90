"""Reading a CSV file: Arrow's streaming reader held a few blocks ahead of the profiler, and a preview.

Blocks are about 1 MiB of CSV text (fewer rows if ``chunk_rows`` asks for it); Arrow parses them
in C++ on background threads into record batches.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import threading
import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv

#: Values read as missing: pandas' defaults for ``read_csv``.
NULL_VALUES = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]

BLOCK_LIMIT = 1024 * 1024 * 1024
_MIN_BLOCK = 1024
# Blocks of 1 MiB: Arrow's memory while it parses grows with its blocks, and since the reader is told
# every column's type (profiler._first_block_types) and the profiler's work per chunk shrank, smaller
# blocks cost little time. Measured by bench/profile_dataset.py on 1M x 20 rows: 2 MiB blocks took
# 1.14-1.17 s at a peak of 0.57x the file, 1 MiB blocks 1.10-1.34 s at 0.48-0.50x.
_MAX_BLOCK = 1024 * 1024
# Blocks Arrow parses ahead of the profiler, on its own threads. With 1 MiB blocks: 3 took 1.23-1.35 s
# at a peak of 0.45-0.46x the file, 4 as long at 0.48-0.50x, 2 half a second longer. (With 2 MiB
# blocks, before the types were given: 2 took 2.24 s at 0.50x, 3 1.77 s at 0.58x, 4 1.64 s at 0.63x;
# 5 or more were slower again.)
_READ_AHEAD_BLOCKS = 3


def arrow_encoding(encoding: str) -> str:
    """Arrow reads UTF-8 natively (and skips a BOM); other encodings go through Python's codecs."""
    try:
        normal = codecs.lookup(encoding).name
    except LookupError as exc:
        raise ValueError(f"unknown encoding {encoding!r}") from exc
    return "utf8" if normal in ("utf-8", "utf-8-sig", "ascii") else encoding


def block_size_for(path: str, chunk_rows: int) -> int:
    """Bytes per block: about ``chunk_rows`` rows of the file's head, within 1 KiB and 1 MiB."""
    return int(min(max(chunk_rows * _average_row_bytes(path) * 1.05, _MIN_BLOCK), _MAX_BLOCK))


def _average_row_bytes(path: str) -> float:
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    lines = head.count(b"\n")
    if not lines:
        return float(max(len(head), 1))
    return max(len(head) / lines, 1.0)


#: Seconds a read waits at the throttle before the first batch is consumed, then goes on: a reader
#: whose open failed waited for it for ever (a first row longer than a block, 1 run in 100 or so).
_OPENING_PATIENCE = 1.0


class ThrottledFile(io.RawIOBase):
    """A file Arrow may read at most ``ahead`` blocks beyond what the profiler has consumed.

    Arrow's streaming CSV reader reads ahead without bound (on a fast disk it pulls the whole
    file into memory while the consumer is busy); ``read`` blocks in Arrow's I/O thread until
    :meth:`consumed` lets it go on. ``start`` and ``end``: the bytes [start, end) of the file only.
    """

    def __init__(self, path: str, block_size: int, ahead: int = _READ_AHEAD_BLOCKS, pool=None,
                 start: int = 0, end: int | None = None):
        super().__init__()
        self._pool = pool
        self._f = open(path, "rb", buffering=0)
        if start:
            self._f.seek(start)
        self._left = (os.path.getsize(path) if end is None else end) - start
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
            opening = time.monotonic() + _OPENING_PATIENCE
            while not self._stopped and self.position >= (self._done + self._ahead) * self._block:
                # Nothing consumed yet: the reader may still be opening. One whose open fails (a
                # first row longer than a block) waits for this read to end before it says so.
                if not self._done and time.monotonic() >= opening:
                    break
                self._cond.wait(0.25)
            if self._stopped:
                return b""
        size = min(n if n is not None and n >= 0 else self._block, self._left)
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
        self._left -= got
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


def close_reader(stream: ThrottledFile, reader) -> None:
    """Close `stream` once `reader` (an Arrow streaming reader of it) has come to its end. A reader
    left part-read goes on reading in Arrow's I/O thread, which calls `stream.read` in Python: a
    process that exits meanwhile aborts ("Fatal Python error: PyGILState_Release", in 17 of 30
    runs of a process that read one batch of a file; none once the reader is run to its end). With
    the stream stopped, the reader meets the end of the file at once and only parses the few
    blocks it had read ahead; their errors are of no interest to anyone."""
    stream.stop()
    try:
        for _ in reader:
            pass
    except (pa.ArrowException, OSError):
        pass
    finally:
        stream.close()


def memory_pool() -> pa.MemoryPool:
    """jemalloc when available, as mlops_dashboard/__init__.py configures it (freed blocks go back
    to the OS about 10 ms after their last use: at once, every block's pages would be faulted in
    afresh, a third more CPU for the reading)."""
    try:
        return pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowNotImplementedError, AttributeError):
        return pa.default_memory_pool()


class CsvStream:
    """The record batches of a CSV file, Arrow reading at most a few blocks ahead of the consumer.

    Iterating yields batches; asking for the next one tells the throttle the last one is done.
    Raises ``pyarrow.ArrowInvalid`` when the file does not parse with the given column types.
    """

    def __init__(self, path: str, *, encoding: str, delimiter: str, block_size: int,
                 column_types: dict[str, pa.DataType]):
        pool = memory_pool()
        self._source = ThrottledFile(path, block_size, pool=pool)
        try:
            self._reader = pacsv.open_csv(
                self._source,
                read_options=pacsv.ReadOptions(encoding=encoding, block_size=block_size, use_threads=True),
                parse_options=pacsv.ParseOptions(
                    delimiter=delimiter, quote_char='"', double_quote=True, escape_char=False,
                    newlines_in_values=True, ignore_empty_lines=True,
                ),
                convert_options=pacsv.ConvertOptions(
                    null_values=NULL_VALUES, strings_can_be_null=True, quoted_strings_can_be_null=True,
                    column_types=dict(column_types),
                ),
                memory_pool=pool,
            )
        except BaseException:
            self._source.close()
            raise
        self.schema: pa.Schema = self._reader.schema

    @property
    def position(self) -> int:
        """Bytes of the file read so far."""
        return self._source.position

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            try:
                batch = self._reader.read_next_batch()
            except StopIteration:
                return
            yield batch
            self._source.consumed()

    def close(self) -> None:
        close_reader(self._source, self._reader)

    def close_now(self) -> None:
        """Close the file without running the reader to its end (see `close_reader`): for a reader
        about to go, in a process that goes on."""
        self._source.close()

    def __enter__(self) -> CsvStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- preview ----------------------------------------------------------------------------------


#: Longest preview cell, in characters (a longer one is cut and ends with "…").
MAX_PREVIEW_CHARS = 200


def _cell(value: str) -> str | None:
    if value == "":
        return None
    return value if len(value) <= MAX_PREVIEW_CHARS else value[: MAX_PREVIEW_CHARS - 1] + "…"


def first_rows(path, *, encoding: str, delimiter: str, n: int = 50) -> dict:
    """The header and up to ``n`` data rows, as strings (empty values are None).

    Rows shorter than the header are padded with None; blank lines are skipped. Cells longer than
    MAX_PREVIEW_CHARS are cut (column names are already at most 255 characters: validation).
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
            values = [_cell(v) for v in record]
            if len(values) < len(columns):
                values += [None] * (len(columns) - len(values))
            rows.append(values)
    return {"columns": columns or [], "rows": rows}
