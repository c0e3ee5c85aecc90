"""validate_csv on the real datasets and on many malformed files (plain pytest, no Django)."""

from __future__ import annotations

import codecs
import json
import os
import tracemalloc

import pytest

from datasets.validation import FIELD_SIZE_LIMIT, MAX_COLUMNS, ValidationResult, validate_csv

DATA = os.environ.get("MLOPS_SHARED_DATA", "/work/shared/data")
TITANIC = os.path.join(DATA, "titanic.csv")
PENGUINS = os.path.join(DATA, "penguins.csv")

TITANIC_COLUMNS = [
    "survived", "pclass", "sex", "age", "sibsp", "parch", "fare", "embarked", "class", "who",
    "adult_male", "deck", "embark_town", "alive", "alone",
]


def write(tmp_path, content, name="data.csv"):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def only_error(result: ValidationResult) -> str:
    assert not result.ok
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


# --- the real datasets ------------------------------------------------------------------------


def test_titanic_is_valid():
    result = validate_csv(TITANIC, target_column="survived")
    assert result.ok, result.errors
    assert result.errors == []
    assert result.encoding == "utf-8"
    assert result.delimiter == ","
    assert result.columns == TITANIC_COLUMNS
    assert result.rows == 891
    assert result.file_size == os.path.getsize(TITANIC)
    assert 0 <= result.validation_time < 10


def test_penguins_is_valid():
    result = validate_csv(PENGUINS, target_column="species")
    assert result.ok, result.errors
    assert result.columns == [
        "species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex",
    ]
    assert result.rows == 344


def test_result_is_frozen_and_serialisable():
    result = validate_csv(PENGUINS)
    with pytest.raises(Exception):
        result.ok = False  # type: ignore[misc]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["rows"] == 344 and data["ok"] is True and data["delimiter"] == ","


# --- empty and header-only --------------------------------------------------------------------


def test_empty_file(tmp_path):
    assert only_error(validate_csv(write(tmp_path, b""))) == "The file is empty."


def test_blank_lines_only(tmp_path):
    assert "The file is empty" in only_error(validate_csv(write(tmp_path, "\n\n  \r\n")))


def test_header_only(tmp_path):
    result = validate_csv(write(tmp_path, "a,b,c\n"))
    assert only_error(result) == "The file has a header but no data rows."
    assert result.columns == ["a", "b", "c"]
    assert result.rows == 0


def test_header_without_newline_and_blank_lines_are_skipped(tmp_path):
    result = validate_csv(write(tmp_path, "a,b\n\n1,2\n\n3,4"))
    assert result.ok, result.errors
    assert result.rows == 2
    assert result.warnings == ["2 blank lines were ignored."]


def test_missing_file(tmp_path):
    assert "could not be found" in only_error(validate_csv(tmp_path / "nope.csv"))


def test_directory(tmp_path):
    assert "not a regular file" in only_error(validate_csv(tmp_path))


# --- binary and encodings ---------------------------------------------------------------------


def test_binary_bytes(tmp_path):
    blob = bytes(range(256)) * 64
    message = only_error(validate_csv(write(tmp_path, blob, "blob.csv")))
    assert message.startswith("This looks like a binary file, not CSV text")


def test_control_characters_without_nul(tmp_path):
    blob = bytes([1, 2, 3, 4, 5, 6, 7, 8, 14, 15, 16, 17, 65, 66]) * 500
    assert "binary file" in only_error(validate_csv(write(tmp_path, blob)))


def test_nul_far_into_the_file(tmp_path):
    content = b"a,b\n" + b"1,2\n" * 100_000 + b"3,\x00\n"
    message = only_error(validate_csv(write(tmp_path, content)))
    assert "binary file" in message and "NUL" in message


def test_excel_workbook(tmp_path):
    content = b"PK\x03\x04" + b"\x14\x00\x06\x00" + os.urandom(2000)
    message = only_error(validate_csv(write(tmp_path, content, "book.xlsx")))
    assert "Excel" in message and "CSV" in message


def test_gzip(tmp_path):
    import gzip

    path = tmp_path / "data.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n" * 100))
    assert "gzip" in only_error(validate_csv(path))


def test_latin1_text_is_accepted(tmp_path):
    content = "name,city\nJosé,Málaga\nZoë,Zürich\n".encode("latin-1")
    result = validate_csv(write(tmp_path, content))
    assert result.ok, result.errors
    assert result.encoding == "latin-1"
    assert result.rows == 2


def test_cp1252_text_is_accepted(tmp_path):
    content = "item;price\n“quoted” thing;5 €\nother – thing;6 €\n".encode("cp1252")
    result = validate_csv(write(tmp_path, content))
    assert result.ok, result.errors
    assert result.encoding == "cp1252"
    assert result.delimiter == ";"
    with open(tmp_path / "data.csv", encoding=result.encoding) as f:
        assert "€" in f.read()


def test_latin1_bytes_outside_cp1252_are_rejected(tmp_path):
    content = b"a,b\n1,caf\xe9\n2,x\x81y\n"
    message = only_error(validate_csv(write(tmp_path, content)))
    assert "not valid UTF-8" in message and "UTF-8" in message


def test_mostly_high_bytes_is_not_latin1(tmp_path):
    content = "а,б\n" + "привет,мир\n" * 50  # Cyrillic in a single-byte Cyrillic code page
    message = only_error(validate_csv(write(tmp_path, content.encode("cp1251"))))
    assert "not UTF-8" in message


def test_utf8_bom(tmp_path):
    result = validate_csv(write(tmp_path, codecs.BOM_UTF8 + "id,name\n1,Åsa\n".encode()))
    assert result.ok, result.errors
    assert result.encoding == "utf-8-sig"
    assert result.columns == ["id", "name"]


def test_utf8_multibyte_split_across_read_chunks(tmp_path):
    # 1 MiB read chunks must not split a multi-byte character into an error.
    content = ("a,b\n" + "é,ü\n" * 400_000).encode("utf-8")
    result = validate_csv(write(tmp_path, content))
    assert result.ok, result.errors
    assert result.encoding == "utf-8" and result.rows == 400_000


def test_truncated_utf8_at_end_of_file_falls_back(tmp_path):
    content = "a,b\n1,é\n".encode("utf-8") + b"2,\xc3"
    result = validate_csv(write(tmp_path, content))
    # \xc3 alone is valid cp1252/latin-1 text ("Ã"), so the file is read as such.
    assert result.ok, result.errors
    assert result.encoding in ("latin-1", "cp1252")


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_gets_a_clear_message(tmp_path, codec):
    message = only_error(validate_csv(write(tmp_path, "a,b\n1,2\n3,4\n".encode(codec))))
    assert "UTF-16" in message and "UTF-8" in message


def test_utf32_gets_a_clear_message(tmp_path):
    message = only_error(validate_csv(write(tmp_path, "a,b\n1,2\n".encode("utf-32"))))
    assert "UTF-32" in message


# --- delimiters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "delimiter, content",
    [
        (",", "a,b,c\n1,2,3\n4,5,6\n"),
        (";", "name;price;note\nA;1,5;x, y\nB;2,25;z\nC;3;w, v, u\n"),
        ("\t", "a\tb\tc\n1,0\t2\t3\n4\t5,5\t6\n"),
        ("|", "a|b|c\n1|2|3\n4|5|6\n"),
    ],
)
def test_delimiter_detection(tmp_path, delimiter, content):
    result = validate_csv(write(tmp_path, content))
    assert result.ok, result.errors
    assert result.delimiter == delimiter
    assert len(result.columns) == 3


def test_quoted_delimiters_do_not_confuse_the_sniffer(tmp_path):
    content = 'id,comment\n1,"a; b; c"\n2,"d; e; f"\n3,"g; h"\n'
    result = validate_csv(write(tmp_path, content))
    assert result.ok, result.errors
    assert result.delimiter == "," and result.columns == ["id", "comment"]


def test_single_column_file_is_valid_with_a_warning(tmp_path):
    result = validate_csv(write(tmp_path, "value\n1\n2\n3\n"))
    assert result.ok, result.errors
    assert result.columns == ["value"]
    assert any("Only one column" in w for w in result.warnings)


def test_quoted_newlines_are_one_row(tmp_path):
    content = 'id,text\n1,"line one\nline two"\n2,plain\n'
    result = validate_csv(write(tmp_path, content))
    assert result.ok, result.errors
    assert result.rows == 2


# --- header problems --------------------------------------------------------------------------


def test_duplicate_column_names(tmp_path):
    message = only_error(validate_csv(write(tmp_path, "id,age,name,age,name,name\n1,2,3,4,5,6\n")))
    assert message == "Column names must be unique: 'age' appears 2 times and 'name' appears 3 times."


def test_empty_column_names(tmp_path):
    message = only_error(validate_csv(write(tmp_path, "id,,name, \n1,2,3,4\n")))
    assert message == "Columns 2 and 4 have no name. Every column needs a name in the header row."


def test_single_empty_column_name(tmp_path):
    message = only_error(validate_csv(write(tmp_path, "id,name,\n1,2,3\n")))
    assert message.startswith("Column 3 has no name.")


def test_numeric_header_looks_like_data(tmp_path):
    message = only_error(validate_csv(write(tmp_path, "1,2.5,3\n4,5,6\n")))
    assert "looks like data" in message


def test_too_many_columns(tmp_path):
    n = 10_000
    header = ",".join(f"c{i}" for i in range(n))
    row = ",".join("1" for _ in range(n))
    result = validate_csv(write(tmp_path, f"{header}\n{row}\n{row}\n"))
    message = only_error(result)
    assert message.startswith(f"The file has 10,000 columns; at most {MAX_COLUMNS:,} are supported")
    assert result.rows == 2


def test_exactly_the_maximum_number_of_columns_is_fine(tmp_path):
    header = ",".join(f"c{i}" for i in range(MAX_COLUMNS))
    row = ",".join("1" for _ in range(MAX_COLUMNS))
    result = validate_csv(write(tmp_path, f"{header}\n{row}\n"))
    assert result.ok, result.errors


def test_bad_target_column_lists_the_columns(tmp_path):
    message = only_error(validate_csv(write(tmp_path, "a,b,c\n1,2,3\n"), target_column="x"))
    assert message == "The target column 'x' is not one of the columns: 'a', 'b', 'c'."


def test_bad_target_column_suggests_and_truncates(tmp_path):
    names = [f"feature_{i}" for i in range(30)] + ["Survived"]
    content = ",".join(names) + "\n" + ",".join("1" for _ in names) + "\n"
    message = only_error(validate_csv(write(tmp_path, content), target_column="survived"))
    assert message.startswith("The target column 'survived' is not one of the columns: 'feature_0', ")
    assert "… (21 more)" in message
    assert "'feature_10'" not in message
    assert message.endswith("Did you mean 'Survived'?")


def test_good_target_column(tmp_path):
    assert validate_csv(write(tmp_path, "a,b\n1,2\n"), target_column="b").ok


# --- row problems -----------------------------------------------------------------------------


def test_wrong_field_counts_report_line_numbers(tmp_path):
    content = "a,b,c\n1,2,3\n4,5\n6,7,8\n\n9,10,11,12\n"
    result = validate_csv(write(tmp_path, content))
    assert not result.ok
    assert result.errors == [
        "Line 3: expected 3 fields (one per column) but found 2.",
        "Line 6: expected 3 fields (one per column) but found 4. A value may contain the delimiter "
        "without being quoted.",
    ]
    assert result.rows == 4


def test_wrong_field_counts_are_capped(tmp_path):
    rows = ["1,2"] * 5 + ["1"] * 25
    result = validate_csv(write(tmp_path, "a,b\n" + "\n".join(rows) + "\n"), max_error_lines=3)
    assert result.errors == [
        "Line 7: expected 2 fields (one per column) but found 1.",
        "Line 8: expected 2 fields (one per column) but found 1.",
        "Line 9: expected 2 fields (one per column) but found 1.",
        "…and 22 more rows with the wrong number of fields (25 in total).",
    ]


def test_crlf_line_numbers(tmp_path):
    result = validate_csv(write(tmp_path, "a,b\r\n1,2\r\n3\r\n"))
    assert result.errors == ["Line 3: expected 2 fields (one per column) but found 1."]


def test_unbalanced_quote_in_the_middle(tmp_path):
    content = 'a,b,c\n1,2,3\n4,5,"oops\n7,8,9\n10,11,12\n"13",14,15\n'
    result = validate_csv(write(tmp_path, content))
    assert result.errors == [
        "Lines 3–6 (one row): expected 3 fields (one per column) but found 5. "
        "A quote character (\") is probably not closed."
    ]


def test_unbalanced_quote_that_keeps_the_field_count_is_a_warning(tmp_path):
    content = 'a,b,c\n1,2,3\n4,"oops,6\n7,8,9\n10,11,12\n13,"14",15\n'
    result = validate_csv(write(tmp_path, content))
    assert result.ok
    assert result.rows == 2
    assert result.warnings == [
        "Lines 3–6 were read as one row because a quoted value spans them; "
        "check that its quote characters (\") are balanced."
    ]


def test_legit_multiline_value_has_no_warning(tmp_path):
    content = 'id,address,zip\n1,"12 Main St,\nSpringfield, IL\nUSA, Earth",62701\n2,"x",1\n'
    result = validate_csv(write(tmp_path, content))
    assert result.ok and result.warnings == [] and result.rows == 2


def test_unbalanced_quote_at_the_end(tmp_path):
    content = 'a,b\n1,2\n3,"never closed\n5,6\n7,8\n'
    result = validate_csv(write(tmp_path, content))
    message = only_error(result)
    assert message.startswith("Line 3: a quote character (\") is opened and never closed")
    assert "lines 3–5" in message


def test_runaway_quote_hits_the_field_limit(tmp_path):
    line = "x" * (1024 * 1024) + "\n"
    content = 'a,b\n1,"start\n' + line * 11 + "2,3\n"
    message = only_error(validate_csv(write(tmp_path, content)))
    assert message.startswith("Line 2: a value is longer than 10 MiB")
    assert "never closed" in message


def test_twenty_megabyte_single_line(tmp_path):
    content = "a,b\n1," + "y" * (20 * 1024 * 1024) + "\n3,4\n"
    result = validate_csv(write(tmp_path, content))
    message = only_error(result)
    assert message.startswith(f"Line 2 is longer than 10 MiB ({FIELD_SIZE_LIMIT:,} characters)")


def test_twenty_megabyte_line_without_any_newline(tmp_path):
    content = "z" * (20 * 1024 * 1024)
    message = only_error(validate_csv(write(tmp_path, content)))
    assert message.startswith("Line 1 is longer than 10 MiB")


# --- streaming --------------------------------------------------------------------------------


def test_validation_streams_the_file(tmp_path):
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("id,name,value,comment\n")
        for i in range(300_000):
            f.write(f'{i},name_{i},{i * 0.5},"some, quoted text"\n')
    size = os.path.getsize(path)
    assert size > 12_000_000
    tracemalloc.start()
    try:
        result = validate_csv(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.ok, result.errors
    assert result.rows == 300_000
    assert peak < 8 * 1024 * 1024, f"validation used {peak:,} bytes for a {size:,} byte file"


def test_never_raises_on_garbage(tmp_path):
    samples = [
        b'"', b'""""', b"\r\r\r", b",,,\n,,,\n", b'a,b\n"1""2",3\n', b"a\n\xff\xfe\xfd\n",
        b"\xef\xbb\xbf", b"a,b\n1,2\n\x1a", b"\xef\xbb\xbf\n\n", b'a,"b\n', b"\x00",
    ]
    for i, content in enumerate(samples):
        result = validate_csv(write(tmp_path, content, f"g{i}.csv"))
        assert isinstance(result, ValidationResult)
        assert result.ok == (not result.errors)


def test_programming_errors_raise(tmp_path):
    path = write(tmp_path, "a\n1\n")
    with pytest.raises(ValueError):
        validate_csv(path, max_error_lines=0)
    with pytest.raises(TypeError):
        validate_csv(path, target_column=3)  # type: ignore[arg-type]


# --- bounds on what a header may carry ---------------------------------------------------------


def hostile_header(columns=100, length=100_000) -> str:
    return ",".join(f"{i}" + "n" * (length - len(str(i))) for i in range(columns)) + "\n" + \
        ",".join("1" for _ in range(columns)) + "\n"


def test_a_column_name_over_255_characters_makes_the_file_invalid_naming_the_column(tmp_path):
    result = validate_csv(write(tmp_path, "id,ok," + "x" * 256 + "\n1,2,3\n"))
    assert only_error(result) == "Column 3's name is 256 characters long; at most 255 are allowed."
    assert len(result.columns[2]) == 255 and result.columns[2].endswith("…") and result.column_count == 3
    assert validate_csv(write(tmp_path, "id," + "x" * 255 + "\n1,2\n")).ok  # 255 is the limit


def test_a_hundred_names_of_100000_characters_are_reported_briefly_and_not_kept(tmp_path):
    result = validate_csv(write(tmp_path, hostile_header()))
    assert not result.ok
    assert result.errors[0] == "Column 1's name is 100,000 characters long; at most 255 are allowed."
    assert result.errors[10] == "…and 90 more columns with a name longer than 255 characters."
    assert len(result.errors) == 11 and sum(map(len, result.errors)) < 2_000
    assert result.column_count == 100 and max(map(len, result.columns)) == 255
    assert len(json.dumps(result.to_dict())) < 100 * 256 + 5_000


def test_an_invalid_file_keeps_at_most_2000_column_names(tmp_path):
    n = MAX_COLUMNS + 3_000
    result = validate_csv(write(tmp_path, ",".join(f"c{i}" for i in range(n)) + "\n" + ",".join("1" * n) + "\n"))
    assert not result.ok and "5,000 columns" in result.errors[0]
    assert result.columns == [f"c{i}" for i in range(MAX_COLUMNS)] and result.column_count == n


# --- the Arrow scan and the record-by-record scan -----------------------------------------------

_PIECES = ["a", "1", "2.5", "", " ", "é", "NA", '"q"', '"x,y"', '"he said ""hi"""', '"l1\nl2"', 'x"y']


def _random_csv(rng) -> str:
    """A small CSV file with now and then a row of other fields, a blank line, a line break in a
    quoted value, a stray quote, CRLF or CR line ends, a byte order mark, no last line break."""
    ncols = rng.randint(1, 4)
    delimiter = rng.choice([",", ",", ";", "\t"])
    newline = rng.choice(["\n", "\r\n"])
    lines = [delimiter.join(f"{rng.choice(['id', 'x', 'y'])}{i}" for i in range(ncols))]
    for _ in range(rng.randint(0, 30)):
        fields = ncols if rng.random() > 0.02 else rng.randint(1, 6)
        lines.append(delimiter.join(rng.choice(_PIECES).replace(",", delimiter) for _ in range(fields)))
        if rng.random() < 0.03:
            lines.append("")
    text = newline.join(lines) + (newline if rng.random() < 0.7 else "")
    if rng.random() < 0.05:
        text = "\ufeff" + text
    if rng.random() < 0.03:
        text = text.replace("\n", "\r")
    return text


def test_the_arrow_scan_gives_what_the_record_by_record_scan_gives(tmp_path, monkeypatch):
    """A file every line of which is one row is counted by Arrow; whatever it finds, each file gets
    the same result as when Python's csv module reads it record by record."""
    import dataclasses
    import random

    from datasets import validation

    rng = random.Random(11)
    arrow_scan = validation._arrow_scan
    counted = 0
    for i in range(1500):
        path = write(tmp_path, _random_csv(rng), name=f"{i % 5}.csv")
        used = []
        monkeypatch.setattr(validation, "_arrow_scan", lambda *args: used.append(arrow_scan(*args)) or used[-1])
        fast = dataclasses.asdict(validate_csv(path))
        monkeypatch.setattr(validation, "_arrow_scan", lambda *args: None)
        slow = dataclasses.asdict(validate_csv(path))
        fast.pop("validation_time"), slow.pop("validation_time")
        assert fast == slow, path.read_bytes()
        counted += bool(used and used[0] is not None)
    assert counted > 100  # the Arrow scan answered for many files (about one in eight), and fell back for the rest
