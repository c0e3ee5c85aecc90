"""Validation of uploaded CSV files, before they are profiled.

Pure Python (no Django): ``validate_csv(path)`` streams the file once or twice and returns a
:class:`ValidationResult` whose ``errors`` are human sentences meant to be shown to the person who
uploaded the file. It never raises because of the file's content; every problem becomes an error
message. Only programming errors (wrong argument types and the like) raise.

What is checked, in order:

1. The file exists and is not empty (nor only blank lines).
2. It is text, not a binary file (NUL bytes, a high share of control bytes, or the magic number of
   a well-known binary format such as an Excel workbook, a ZIP/gzip archive or a PDF).
3. Its encoding: UTF-8, UTF-8 with a byte order mark (reported as ``utf-8-sig``), otherwise
   Windows-1252 (``cp1252``, when bytes 0x80-0x9F are present and all defined in it) or Latin-1
   (``latin-1``), but only when the bytes look like Western-European text. UTF-16/UTF-32 files get
   a specific "save it as UTF-8" message.
4. The delimiter, among comma, semicolon, tab and pipe (``csv.Sniffer`` restricted to those,
   checked against the candidate that gives the most consistent number of fields per line).
5. The header: present, not too many columns (2,000 at most), no name longer than 255 characters
   (the length of a target column), no empty or duplicate names, not a line of numbers, and
   containing ``target_column`` if one is given.
6. Every row: the right number of fields (reported with 1-based file line numbers), no runaway
   quoted field or overlong line (10 MiB at most), at least one data row.

Step 6 first lets Arrow's CSV parser count a UTF-8 file's rows (`datasets/rowcount.py`, on every
core, four times as fast): when every row has the header's number of fields and there are as many
rows as the encoding pass counted lines (so no line break inside a quoted value), no blank line and
no lone carriage return, the file has nothing more to report. Anything else is read again record by
record with Python's csv module, which finds and words each problem: the two give the same result
for any file.
"""

from __future__ import annotations

import codecs
import collections
import csv
import difflib
import io
import os
import re
import time
from dataclasses import asdict, dataclass, field
from itertools import islice

from .rowcount import Lines
from .rowcount import count_rows as _arrow_scan

__all__ = [
    "DELIMITERS",
    "FIELD_SIZE_LIMIT",
    "MAX_COLUMNS",
    "MAX_COLUMN_NAME",
    "ValidationResult",
    "validate_csv",
]

#: Delimiters we recognise, in order of preference when the evidence is tied.
DELIMITERS = (",", ";", "\t", "|")
#: Longest single value (and longest physical line) accepted, in characters.
FIELD_SIZE_LIMIT = 10 * 1024 * 1024
#: Most columns a dataset may have (and most column names kept for an invalid file).
MAX_COLUMNS = 2_000
#: Longest column name, in characters: the length of a dataset's or a model's target column.
MAX_COLUMN_NAME = 255
#: Column names longer than MAX_COLUMN_NAME reported one by one; the others are counted.
_LONG_NAMES_SHOWN = 10

_NUL = b"\x00"
_HEAD_BYTES = 64 * 1024
_READ_CHUNK = 1024 * 1024
_SNIFF_CHARS = 64 * 1024
_SNIFF_RECORDS = 200

_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}

# Bytes that never appear in text files (tab, LF, FF and CR are allowed).
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"
_CONTROL_TABLE = bytes(range(256))
# Bytes 0x80-0x9F are control characters in Latin-1; these five are not even defined in cp1252.
_C1_RE = re.compile(rb"[\x80-\x9f]")
_CP1252_UNDEFINED_RE = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
_NUMBER_RE = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")

_MAGIC = (
    (b"PK\x03\x04", "This looks like an Excel workbook (.xlsx) or a ZIP archive, not CSV text. "
                    "Please export or save it as CSV."),
    (b"\xd0\xcf\x11\xe0", "This looks like an old Excel workbook (.xls) or another Office document, "
                          "not CSV text. Please export or save it as CSV."),
    (b"\x1f\x8b", "This looks like a gzip-compressed file, not CSV text. Please decompress it first."),
    (b"%PDF", "This looks like a PDF document, not CSV text."),
    (b"PAR1", "This looks like a Parquet file, not CSV text. Please convert it to CSV."),
    (b"SQLite format 3\x00", "This looks like an SQLite database, not CSV text."),
    (b"\x89PNG", "This looks like an image (PNG), not CSV text."),
    (b"\xff\xd8\xff", "This looks like an image (JPEG), not CSV text."),
)


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of :func:`validate_csv`.

    ``encoding`` and ``delimiter`` are what ``profile_csv`` / ``first_rows`` need; they are ``None``
    when validation stopped before they could be determined. ``column_count`` is the number of
    columns in the header; ``columns`` their names, all of them for a valid file, but for an invalid
    one only the first ``MAX_COLUMNS``, each cut to ``MAX_COLUMN_NAME`` characters. ``rows`` counts data rows (the header
    and blank lines excluded) seen before validation stopped. ``warnings`` never block the upload.
    """

    ok: bool
    errors: list[str]
    encoding: str | None
    delimiter: str | None
    columns: list[str]
    rows: int
    file_size: int
    validation_time: float
    warnings: list[str] = field(default_factory=list)
    column_count: int = 0

    def to_dict(self) -> dict:
        """A JSON-serialisable copy (for a Celery result or a JSONField)."""
        return asdict(self)


class _LineTooLong(Exception):
    pass


class _Problem(Exception):
    """Raised internally to stop validation with one user-facing message."""


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _human_list(items: list[str], limit: int = 10) -> str:
    shown = items[:limit]
    text = ", ".join(shown)
    if len(items) > limit:
        text += f", … ({_fmt_int(len(items) - limit)} more)"
    return text


def _and_list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _quote_name(name: str, max_len: int = 60) -> str:
    if len(name) > max_len:
        name = name[: max_len - 1] + "…"
    return repr(name) if ("'" not in name) else '"' + name + '"'


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _elapsed(start: float) -> float:
    return round(time.perf_counter() - start, 6)


# --- binary and encoding detection ------------------------------------------------------------


def _binary_problem(head: bytes) -> str | None:
    """A message if the first bytes of the file show it is not text, else None."""
    for magic, message in _MAGIC:
        if head.startswith(magic):
            return message
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return ("The file is encoded as UTF-32. Please save it as UTF-8 CSV "
                "(in Excel: 'CSV UTF-8 (Comma delimited)').")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ("The file is encoded as UTF-16. Please save it as UTF-8 CSV "
                "(in Excel: 'CSV UTF-8 (Comma delimited)').")
    nul = head.count(b"\x00")
    if nul:
        # UTF-16 without a byte order mark: ASCII characters leave every other byte zero.
        even, odd = head[0::2], head[1::2]
        if len(head) >= 4 and (odd.count(0) >= 0.4 * len(odd) or even.count(0) >= 0.4 * len(even)) \
                and nul <= 0.6 * len(head):
            return ("The file seems to be encoded as UTF-16. Please save it as UTF-8 CSV "
                    "(in Excel: 'CSV UTF-8 (Comma delimited)').")
        return "This looks like a binary file, not CSV text (it contains NUL bytes)."
    controls = len(head) - len(head.translate(_CONTROL_TABLE, _CONTROL_BYTES))
    if controls and controls >= max(3, 0.02 * len(head)):
        return "This looks like a binary file, not CSV text (it contains many control characters)."
    return None


def _detect_encoding(path: str, head: bytes, lines: Lines | None = None) -> str:
    """Return the encoding of the whole file, or raise _Problem with a user-facing message.

    Streams the file: one pass to check it is valid UTF-8 and has no NUL bytes (and to count its
    lines into `lines`), and only when it is not UTF-8 a second pass to choose between cp1252 and
    Latin-1.
    """
    lines = lines or Lines()
    bom = head.startswith(codecs.BOM_UTF8)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    bad_offset = None
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_READ_CHUNK)
            if not chunk:
                try:
                    decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    bad_offset = offset
                break
            if b"\x00" in chunk:
                raise _Problem(
                    "This looks like a binary file, not CSV text "
                    f"(it contains a NUL byte near byte {_fmt_int(offset + chunk.index(_NUL))})."
                )
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad_offset = offset + exc.start
                break
            lines.feed(chunk)
            offset += len(chunk)
    if bad_offset is None:
        return "utf-8-sig" if bom else "utf-8"
    if bom:
        raise _Problem(
            "The file starts like UTF-8 text but contains bytes that are not valid UTF-8 "
            f"(near byte {_fmt_int(bad_offset)}). Please save it again as UTF-8 CSV."
        )
    # Not UTF-8: accept it as a single-byte Western encoding if it looks like text.
    high = sum(1 for b in head if b >= 0x80)
    if high > 0.3 * max(1, len(head)):
        raise _Problem(
            "The file is not UTF-8 text and does not look like Latin-1 / Windows-1252 text either "
            "(too many non-ASCII bytes). Please save it as UTF-8 CSV."
        )
    c1_seen = False
    offset = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_READ_CHUNK)
            if not chunk:
                break
            if b"\x00" in chunk:
                raise _Problem(
                    "This looks like a binary file, not CSV text "
                    f"(it contains a NUL byte near byte {_fmt_int(offset + chunk.index(_NUL))})."
                )
            if not c1_seen and _C1_RE.search(chunk):
                c1_seen = True
            undefined = _CP1252_UNDEFINED_RE.search(chunk)
            if undefined:
                raise _Problem(
                    "The file is not valid UTF-8 text and contains bytes that are not text in "
                    f"Latin-1 / Windows-1252 either (near byte {_fmt_int(offset + undefined.start())}). "
                    "Please save it as UTF-8 CSV."
                )
            offset += len(chunk)
    return "cp1252" if c1_seen else "latin-1"


def _decode_head(head: bytes, encoding: str) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    return decoder.decode(head, final=False)


# --- delimiter sniffing -----------------------------------------------------------------------


def _field_count_score(sample: str, delimiter: str) -> tuple[float, int]:
    """(share of records having the most common field count, that count) for a delimiter."""
    counts = []
    try:
        reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, quotechar='"')
        for record in islice(reader, _SNIFF_RECORDS):
            if record:
                counts.append(len(record))
    except csv.Error:
        pass
    if not counts:
        return 0.0, 0
    mode, freq = collections.Counter(counts).most_common(1)[0]
    return freq / len(counts), mode


def _sniff_delimiter(sample: str, truncated: bool) -> str:
    if truncated and "\n" in sample:
        # Drop the last, probably incomplete, line.
        sample = sample[: sample.rindex("\n") + 1]
    try:
        sniffed = csv.Sniffer().sniff(sample[:20_000], delimiters="".join(DELIMITERS)).delimiter
    except Exception:  # csv.Error, or anything odd from the heuristics
        sniffed = None
    best, best_key = ",", None
    for preference, delimiter in enumerate(DELIMITERS):
        share, mode = _field_count_score(sample, delimiter)
        key = (mode > 1, share if mode > 1 else 0.0, delimiter == sniffed, mode, -preference)
        if best_key is None or key > best_key:
            best, best_key = delimiter, key
    return best


# --- the full scan ----------------------------------------------------------------------------


def _physical_lines(f: io.TextIOBase, state: dict):
    """Yield the file's lines, refusing any longer than FIELD_SIZE_LIMIT characters."""
    readline = f.readline
    limit = FIELD_SIZE_LIMIT
    while True:
        line = readline(limit + 1)
        if not line:
            return
        state["last"] = line
        if len(line) > limit:
            raise _LineTooLong
        yield line


def _header_problems(header: list[str], target_column: str | None) -> list[str]:
    problems = []
    if len(header) > MAX_COLUMNS:
        problems.append(
            f"The file has {_fmt_int(len(header))} columns; at most {_fmt_int(MAX_COLUMNS)} are "
            "supported. Please remove the columns you do not need."
        )
        return problems
    long_names = [(i + 1, len(name)) for i, name in enumerate(header) if len(name) > MAX_COLUMN_NAME]
    if long_names:
        for position, length in long_names[:_LONG_NAMES_SHOWN]:
            problems.append(f"Column {_fmt_int(position)}'s name is {_fmt_int(length)} characters long; "
                            f"at most {MAX_COLUMN_NAME} are allowed.")
        if len(long_names) > _LONG_NAMES_SHOWN:
            more = len(long_names) - _LONG_NAMES_SHOWN
            problems.append(f"…and {_fmt_int(more)} more column{'s' if more != 1 else ''} with a name longer "
                            f"than {MAX_COLUMN_NAME} characters.")
        return problems  # the other checks would only quote these names again
    empty = [str(i + 1) for i, name in enumerate(header) if not name.strip()]
    if empty:
        if len(header) == len(empty):
            problems.append("The first line has no column names. The file must start with a header row.")
            return problems
        if len(empty) == 1:
            problems.append(f"Column {empty[0]} has no name. Every column needs a name in the header row.")
        else:
            shown = empty if len(empty) <= 10 else empty[:10] + [f"… ({len(empty) - 10} more)"]
            problems.append(
                f"Columns {_and_list(shown)} have no name. Every column needs a name in the header row."
            )
    counts = collections.Counter(name for name in header if name.strip())
    duplicated = [(name, n) for name, n in counts.items() if n > 1]
    if duplicated:
        parts = [f"{_quote_name(name)} appears {n} times" for name, n in duplicated[:10]]
        if len(duplicated) > 10:
            parts.append(f"… ({len(duplicated) - 10} more)")
        problems.append(f"Column names must be unique: {_and_list(parts)}.")
    if header and all(_NUMBER_RE.match(name) for name in header if name.strip()) and not empty:
        problems.append(
            "The first line looks like data, not column names (it contains only numbers: "
            f"{_human_list([name.strip() for name in header], 5)}). "
            "Please add a header row with a name for each column."
        )
    if target_column is not None and target_column not in header:
        message = (
            f"The target column {_quote_name(target_column)} is not one of the columns: "
            f"{_human_list([_quote_name(name, 40) for name in header], 10)}."
        )
        close = difflib.get_close_matches(target_column, header, n=1, cutoff=0.6)
        if not close:
            close = [name for name in header if name.strip().lower() == target_column.strip().lower()]
        if close:
            message += f" Did you mean {_quote_name(close[0])}?"
        problems.append(message)
    return problems


def _scan(path: str, encoding: str, delimiter: str, target_column: str | None,
          max_error_lines: int, errors: list[str], warnings: list[str],
          lines: int | None = None) -> tuple[list[str], int]:
    """Read every record; append problems to errors. Returns (header, data rows). `lines`: the
    file's number of lines, when each is plainly one row (Arrow may then count the rows)."""
    fast = _arrow_scan(path, encoding, delimiter, lines)
    if fast is not None:
        problems = _header_problems(fast[0], target_column)
        errors.extend(problems)
        return fast
    header: list[str] | None = None
    ncols = 0
    rows = 0
    blank = 0
    bad_rows = 0
    shown = 0
    swallowed = 0
    prev_end = 0
    start = 1
    state: dict = {"last": ""}
    limit_mib = FIELD_SIZE_LIMIT // (1024 * 1024)
    if csv.field_size_limit() < FIELD_SIZE_LIMIT:
        csv.field_size_limit(FIELD_SIZE_LIMIT)
    record: list[str] = []
    with open(path, encoding=encoding, newline="", errors="strict") as f:
        reader = csv.reader(_physical_lines(f, state), delimiter=delimiter, quotechar='"',
                            doublequote=True, strict=False)
        try:
            for record in reader:
                start = prev_end + 1
                prev_end = reader.line_num
                if not record:
                    blank += 1
                    continue
                if header is None:
                    header = record
                    if header[0].startswith("\ufeff"):
                        header[0] = header[0][1:]
                    ncols = len(header)
                    problems = _header_problems(header, target_column)
                    if problems:
                        errors.extend(problems)
                    continue
                rows += 1
                if len(record) != ncols:
                    bad_rows += 1
                    if shown < max_error_lines:
                        shown += 1
                        errors.append(_field_count_message(start, prev_end, ncols, record))
                elif prev_end > start and swallowed < 3 and _swallows_rows(record, delimiter, ncols):
                    swallowed += 1
                    warnings.append(
                        f"Lines {_fmt_int(start)}–{_fmt_int(prev_end)} were read as one row because a "
                        "quoted value spans them; check that its quote characters (\") are balanced."
                    )
        except _LineTooLong:
            line_no = reader.line_num + 1
            errors.append(
                f"Line {_fmt_int(line_no)} is longer than {limit_mib} MiB "
                f"({_fmt_int(FIELD_SIZE_LIMIT)} characters); validation stopped there. "
                "Is this really a CSV file with one row per line?"
            )
        except csv.Error as exc:
            line_no = reader.line_num
            text = str(exc)
            if "field larger than field limit" in text:
                errors.append(
                    f"Line {_fmt_int(prev_end + 1)}: a value is longer than {limit_mib} MiB "
                    f"(reading stopped at line {_fmt_int(line_no)}). This usually means a quote "
                    "character (\") was opened and never closed."
                )
            elif "NUL" in text:
                errors.append(
                    f"Line {_fmt_int(line_no)} contains a NUL byte. This looks like a binary file, not CSV text."
                )
            else:
                errors.append(f"Line {_fmt_int(line_no)} could not be read as CSV: {text}.")
        except UnicodeDecodeError as exc:  # pragma: no cover - the encoding was checked beforehand
            errors.append(f"The file could not be decoded as {encoding}: {exc.reason}.")
    if header is not None and record and start > 0 and prev_end > start and rows \
            and len(record) == ncols and _unclosed_quote_at_eof(record, state["last"]):
        errors.append(
            f"Line {_fmt_int(start)}: a quote character (\") is opened and never closed, so "
            f"lines {_fmt_int(start)}–{_fmt_int(prev_end)} were read as a single value."
        )
    elif (header is not None and record and rows and prev_end == start and not state["last"].endswith(("\n", "\r"))
          and state["last"].count('"') % 2 == 1):
        # The last line opens a quoted value that the file ends inside: a truncated file.
        errors.append(
            f"Line {_fmt_int(start)}: a quote character (\") is opened and never closed before the file "
            "ends. Was the file cut off?"
        )
    if bad_rows > shown:
        more = bad_rows - shown
        errors.append(
            f"…and {_fmt_int(more)} more row{'s' if more != 1 else ''} with the wrong number of fields "
            f"({_fmt_int(bad_rows)} in total)."
        )
    if blank:
        warnings.append(f"{_fmt_int(blank)} blank line{'s were' if blank != 1 else ' was'} ignored.")
    return header or [], rows


def _swallows_rows(record: list[str], delimiter: str, ncols: int) -> bool:
    """True if a multi-line value contains at least two lines that look like whole rows."""
    if ncols < 3:
        return False
    for value in record:
        if "\n" not in value and "\r" not in value:
            continue
        lines = value.splitlines()
        if sum(1 for line in lines if line.count(delimiter) == ncols - 1) >= 2:
            return True
    return False


def _unclosed_quote_at_eof(record: list[str], last_line: str) -> bool:
    last = record[-1]
    return ("\n" in last or "\r" in last) and not last_line.rstrip("\r\n").endswith('"')


def _field_count_message(start: int, end: int, expected: int, record: list[str]) -> str:
    found = len(record)
    where = f"Line {_fmt_int(start)}" if end == start else f"Lines {_fmt_int(start)}–{_fmt_int(end)} (one row)"
    message = (
        f"{where}: expected {_fmt_int(expected)} field{'s' if expected != 1 else ''} "
        f"(one per column) but found {_fmt_int(found)}."
    )
    if end > start:
        message += " A quote character (\") is probably not closed."
    elif found > expected:
        message += " A value may contain the delimiter without being quoted."
    return message


# --- entry point ------------------------------------------------------------------------------


def validate_csv(path, *, target_column: str | None = None, max_error_lines: int = 10) -> ValidationResult:
    """Check that ``path`` is a well-formed CSV file with a header and at least one data row.

    Never raises because of the file's content: problems are returned in ``result.errors``
    (user-facing sentences), and ``result.ok`` is True only when there are none.
    """
    if target_column is not None and not isinstance(target_column, str):
        raise TypeError("target_column must be a string or None")
    if not isinstance(max_error_lines, int) or max_error_lines < 1:
        raise ValueError("max_error_lines must be a positive integer")
    started = time.perf_counter()
    path = os.fspath(path)
    errors: list[str] = []
    warnings: list[str] = []
    encoding = delimiter = None
    columns: list[str] = []
    rows = 0
    file_size = 0

    def result() -> ValidationResult:
        kept = columns
        if errors:  # an invalid file's header is whatever was uploaded: keep a bounded part of it
            kept = [_clip(name, MAX_COLUMN_NAME) for name in columns[:MAX_COLUMNS]]
        return ValidationResult(
            ok=not errors, errors=errors, encoding=encoding, delimiter=delimiter, columns=kept,
            rows=rows, file_size=file_size, validation_time=_elapsed(started), warnings=warnings,
            column_count=len(columns),
        )

    try:
        file_size = os.path.getsize(path)
        if not os.path.isfile(path):
            errors.append("The upload is not a regular file.")
            return result()
        if file_size == 0:
            errors.append("The file is empty.")
            return result()
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
        problem = _binary_problem(head)
        if problem:
            errors.append(problem)
            return result()
        lines = Lines()
        encoding = _detect_encoding(path, head, lines)
        sample = _decode_head(head, encoding)
        if file_size <= len(head) and not sample.strip():
            errors.append("The file is empty (it contains only blank lines).")
            return result()
        delimiter = _sniff_delimiter(sample[:_SNIFF_CHARS], truncated=file_size > len(head))
        columns, rows = _scan(path, encoding, delimiter, target_column, max_error_lines, errors, warnings,
                              lines.count())
        if not columns and not errors:
            errors.append("The file is empty (it contains only blank lines).")
        elif rows == 0 and not errors:
            errors.append("The file has a header but no data rows.")
        if len(columns) == 1 and rows and not errors:
            warnings.append(
                "Only one column was found. If the file uses a delimiter other than comma, "
                "semicolon, tab or pipe, please convert it."
            )
    except _Problem as exc:
        errors.append(str(exc))
    except FileNotFoundError:
        errors.append("The file could not be found.")
    except PermissionError:
        errors.append("The file could not be read (permission denied).")
    except IsADirectoryError:
        errors.append("The upload is not a regular file.")
    return result()
