"""Counting a CSV file's rows with Arrow's parser, for validation's fast path (`datasets/validation.py`).

The encoding pass feeds every chunk of the file to `Lines`, which counts the lines and spots a
carriage return outside a CRLF. `count_rows` then lets Arrow parse every row, on every core: when
each has the header's number of fields, there are as many rows as lines (no line break inside a
quoted value) and no line is blank, the file has nothing more to report, and validation need not
read it record by record. Otherwise it says None, and the record-by-record scan finds and words
each problem.
"""

from __future__ import annotations

import csv
import os

import pyarrow as pa
import pyarrow.csv as pacsv

#: Bytes of text Arrow parses at a time (a longer row is left to the record-by-record scan).
ARROW_BLOCK = 1024 * 1024
_READ_CHUNK = 1024 * 1024


class Lines:
    """What the encoding pass sees of a file's line breaks: how many lines it has, and whether any
    carriage return is not part of a CRLF (Python's csv module ends a line there; Arrow too)."""

    def __init__(self):
        self.breaks = 0
        self.plain = True
        self.last = b""  # the last byte seen

    def feed(self, chunk: bytes) -> None:
        if not self.plain or not chunk:
            return
        self.breaks += chunk.count(b"\n")
        if self.last == b"\r" and not chunk.startswith(b"\n"):
            self.plain = False
        elif b"\r" in chunk and chunk.count(b"\r") - chunk.count(b"\r\n") - chunk.endswith(b"\r"):
            self.plain = False
        self.last = chunk[-1:]

    def count(self) -> int | None:
        """The number of lines (a last one without a line break counted), or None if some carriage
        return is not part of a CRLF."""
        if not self.plain or self.last == b"\r":
            return None
        return self.breaks + (1 if self.last and self.last != b"\n" else 0)


def count_rows(path: str, encoding: str, delimiter: str, lines: int | None) -> tuple[list[str], int] | None:
    """(header, data rows) of a UTF-8 file of `lines` lines, each plainly one row, when Arrow reads
    as many rows, each with the header's number of fields; else None."""
    if lines is None or encoding not in ("utf-8", "utf-8-sig"):
        return None
    with open(path, encoding=encoding, newline="", errors="strict") as f:
        first = f.readline(ARROW_BLOCK)
    if len(first) >= ARROW_BLOCK:  # a header line longer than a block
        return None
    with open(path, "rb") as f:  # a last line without a line break and an odd number of quotes: cut off?
        f.seek(max(0, os.path.getsize(path) - ARROW_BLOCK))
        tail = f.read()
    if not tail.endswith(b"\n") and tail[tail.rfind(b"\n") + 1:].count(b'"') % 2:
        return None
    try:
        header = next(csv.reader([first], delimiter=delimiter, quotechar='"', doublequote=True, strict=False))
    except (csv.Error, StopIteration):
        return None
    if not header:
        return None
    if header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    read = pacsv.ReadOptions(autogenerate_column_names=True, block_size=ARROW_BLOCK)
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char='"', double_quote=True, escape_char=False,
                               newlines_in_values=True, ignore_empty_lines=False)
    # Every row parsed, only the first column kept (as bytes), to count the rows (a blank line is a
    # row of empty fields). The file is Arrow's own (no Python file object that Arrow's threads would
    # call back into): its reader reads a bounded number of blocks ahead (about 64 MiB of them).
    rows = 0
    try:
        if pacsv.read_csv(pa.BufferReader(first.encode()), read_options=read,
                          parse_options=parse).num_columns != len(header):
            return None  # a header Arrow splits otherwise
        with pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=pacsv.ConvertOptions(
                include_columns=["f0"], column_types={"f0": pa.binary()}, strings_can_be_null=True,
                null_values=[""], quoted_strings_can_be_null=False)) as reader:
            empty_first = False
            for batch in reader:
                empty_first = empty_first or bool(batch.column(0).null_count)
                rows += batch.num_rows
    except (pa.ArrowException, OSError, ValueError):  # a row with other fields, a row too long, ...
        return None
    if rows != lines:  # a line break inside a quoted value
        return None
    if empty_first and has_blank_line(path):  # Arrow read it as a row of empty fields
        return None
    return header, lines - 1


def has_blank_line(path: str) -> bool:
    """Whether a line of the file is empty."""
    last = b"\n"  # as if a line ended just before the file
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            joint = last + chunk[:2]
            if b"\n\n" in chunk or b"\n\r\n" in chunk or b"\n\n" in joint or b"\n\r\n" in joint:
                return True
            last = chunk[-2:]
    return False
