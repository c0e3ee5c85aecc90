"""Processing operations stream their input: the same results as pandas over the whole file, whatever
the block size (a block of a few rows here, megabytes in production)."""

import io
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from datasets import csvstream, operations
DATA = os.environ.get("MLOPS_SHARED_DATA", "/work/shared/data")
TITANIC = os.path.join(DATA, "titanic.csv")
PENGUINS = os.path.join(DATA, "penguins.csv")

TARGETS = {TITANIC: "survived", PENGUINS: "species"}


def run(path, operation, options, tmp_path, block_size=csvstream.BLOCK_BYTES, parallel=False):
    """The operation's outputs read back by pandas. `parallel`: the file is read in parts at once, as a
    big file is (however small it is)."""
    target = TARGETS.get(path, "")
    options = operations.clean_options(operation, options, columns=list(pd.read_csv(path, nrows=0).columns),
                                       target_column=target)
    outputs, summary = operations.run(
        operation, path=str(path), encoding="utf-8", delimiter=",", options=options, target_column=target,
        output_path=lambda label: str(tmp_path / f"{label}-{block_size}-{parallel}.csv"), block_size=block_size,
        parallel_min_bytes=1 if parallel else csvstream.PARALLEL_MIN_BYTES,
    )
    return {o.label: pd.read_csv(o.path) for o in outputs}, summary, outputs


# What the operations gave when they read the whole file into pandas.

def cleaned(frame, options):
    frame = frame.drop_duplicates() if options.get("drop_duplicates", True) else frame
    columns = options.get("columns") or list(frame.columns)
    strategy = options.get("missing", "none")
    if strategy == "drop_rows":
        return frame.dropna(subset=columns)
    for column in columns if strategy != "none" else []:
        series = frame[column]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        if strategy == "fill_mean" and numeric:
            value = series.mean()
        elif strategy == "fill_median" and numeric:
            value = series.median()
        elif strategy == "fill_constant":
            value = options["fill_value"]
        else:
            modes = series.mode(dropna=True)
            value = modes.iloc[0] if len(modes) else None
        if value is not None and series.isna().any():
            frame[column] = series.fillna(value)
    return frame


def split(frame, options, target):
    rng = np.random.default_rng(options.get("random_state", 42))
    ratio = options.get("test_ratio", 0.2)
    if options.get("stratify"):
        test_idx = []
        for _, group in frame.groupby(frame[target].astype("string").fillna("<missing>"), sort=True):
            idx = group.index.to_numpy().copy()
            rng.shuffle(idx)
            test_idx.extend(idx[:int(round(len(idx) * ratio))].tolist())
        mask = frame.index.isin(test_idx)
    else:
        order = np.arange(len(frame))
        rng.shuffle(order)
        mask = np.zeros(len(frame), dtype=bool)
        mask[order[:int(round(len(frame) * ratio))]] = True
    return frame[~mask], frame[mask]


def scaled(frame, options, target):
    for column in frame.columns:
        series = frame[column]
        if column == target or not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        series = frame[column].astype(float)
        if options.get("method", "standard") == "standard":
            center, spread = series.mean(), series.std(ddof=0)
        else:
            center, spread = series.min(), series.max() - series.min()
        frame[column] = (series - center) / (spread or 1.0)
    return frame


def same(actual, expected):
    """The file read back is the file pandas wrote, read back."""
    expected = pd.read_csv(io.StringIO(expected.to_csv(index=False)))
    pd.testing.assert_frame_equal(actual, expected, rtol=1e-9)


CASES = [
    ("clean", {"missing": "fill_mean"}),
    ("clean", {"missing": "fill_median"}),
    ("clean", {"missing": "fill_mode"}),
    ("clean", {"missing": "drop_rows"}),
    ("clean", {"missing": "fill_constant", "fill_value": 0}),
    ("clean", {"missing": "none", "drop_duplicates": True}),
    ("split", {"test_ratio": 0.25, "random_state": 7}),
    ("split", {"stratify": True}),
    ("scale", {"method": "standard"}),
    ("scale", {"method": "minmax"}),
]


@pytest.mark.parametrize("path", [TITANIC, PENGUINS], ids=["titanic", "penguins"])
@pytest.mark.parametrize("operation,options", CASES, ids=[f"{o}-{sorted(p.items())}" for o, p in CASES])
def test_streamed_operations_give_what_pandas_gave_over_the_whole_file(path, operation, options, tmp_path):
    frame = pd.read_csv(path, low_memory=False)
    target = TARGETS[path]
    expected = {
        "clean": lambda: {"cleaned": cleaned(frame.copy(), options)},
        "split": lambda: dict(zip(("train", "test"), split(frame, options, target))),
        "scale": lambda: {"scaled": scaled(frame.copy(), options, target)},
    }[operation]()
    whole, summary, outputs = run(path, operation, options, tmp_path)
    assert whole.keys() == expected.keys()
    for label in expected:
        same(whole[label], expected[label])
    assert summary["rows_in"] == len(frame)
    assert [o.rows for o in outputs] == [len(expected[label]) for label in expected]
    # a block of a few rows: many blocks, the same files and summary
    blocks, block_summary, _ = run(path, operation, options, tmp_path, block_size=1024)
    for label in expected:
        same(blocks[label], whole[label])
    # read in parts at once (two or more, in threads), a few rows per block: the same again
    parts, parts_summary, parts_outputs = run(path, operation, options, tmp_path, block_size=1024, parallel=True)
    for label in expected:
        same(parts[label], whole[label])
    if operation == "scale":  # sums taken block by block: the same to the last few bits
        whole_parameters = summary.pop("parameters")
        for streamed in (block_summary.pop("parameters"), parts_summary.pop("parameters")):
            assert streamed.keys() == whole_parameters.keys()
            for column, parameters in whole_parameters.items():
                assert streamed[column] == pytest.approx(parameters, rel=1e-12)
    assert block_summary == summary
    assert parts_summary == summary
    assert [o.rows for o in parts_outputs] == [o.rows for o in outputs]
    assert not [name for name in os.listdir(tmp_path) if ".part" in name]


def test_a_later_block_that_does_not_fit_the_first_ones_types_widens_the_column(tmp_path):
    """Arrow infers types from the first block: an integer column with a fraction, then a word, further
    down, and dates (text to pandas), come out as pandas read them."""
    lines = ["n,code,day,flag"] + [f"{i},{i % 3},2020-01-0{i % 9 + 1},{i % 2 == 0}" for i in range(400)]
    lines += ["2.5,x,,", "7,,2020-02-01,True", "7,,2020-02-01,True"]
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")
    frame = pd.read_csv(path)
    for operation, options, expected in [
        ("clean", {"missing": "fill_mode"}, lambda: cleaned(frame.copy(), {"missing": "fill_mode"})),
        ("scale", {}, lambda: scaled(frame.copy(), {}, "")),
    ]:
        for block_size, parallel in [(1024, False), (csvstream.BLOCK_BYTES, False), (1024, True)]:
            outputs, _, _ = run(str(path), operation, options, tmp_path, block_size=block_size, parallel=parallel)
            same(next(iter(outputs.values())), expected())
    # a split reads only the target (here: one column, to count the rows) before it writes: the columns
    # it did not read are widened as they are written
    for block_size, parallel in [(1024, False), (csvstream.BLOCK_BYTES, False), (1024, True)]:
        outputs, _, _ = run(str(path), "split", {"random_state": 3}, tmp_path, block_size=block_size,
                            parallel=parallel)
        train, test = split(frame, {"random_state": 3}, "")
        same(outputs["train"], train)
        same(outputs["test"], test)


def test_a_first_row_longer_than_a_block_is_read_with_bigger_blocks(tmp_path):
    """The first block gives the columns' types: a row longer than it (a long quoted text with
    newlines) makes the blocks bigger there too, as it does in a pass (it failed the job before)."""
    long_note = '"' + "words and\nmore words " * 300 + '"'  # 6 KB: more than a 1 KB block
    lines = ["id,note,x", f"0,{long_note},0.5"] + [f"{i},short {i},{i * 0.25}" for i in range(1, 300)]
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    frame = pd.read_csv(path)
    for parallel in (False, True):
        outputs, summary, _ = run(str(path), "clean", {"missing": "fill_mode"}, tmp_path, block_size=1024,
                                  parallel=parallel)
        same(outputs["cleaned"], cleaned(frame.copy(), {"missing": "fill_mode"}))
        assert summary["rows_in"] == 300


@pytest.mark.parametrize("parts", [2, 3, 4])
def test_a_big_file_is_read_in_parts_cut_at_row_boundaries(parts, tmp_path):
    """Parts are cut after a newline outside quotes: a quoted field with newlines (and doubled quotes)
    is never cut, and the parts read at once give the rows one reader gives."""
    rows = []
    for i in range(3000):
        note = f'"line one\nline ""two"" of {i}\n"' if i % 7 == 0 else f"plain {i}"
        rows.append(f"{i},{note},{i * 0.5}")
    path = tmp_path / "quoted.csv"
    path.write_text("id,note,half\n" + "\n".join(rows) + "\n")
    ranges = csvstream.row_ranges(str(path), parts)
    assert len(ranges) == parts and ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    data = path.read_bytes()
    for start, _ in ranges[1:]:
        assert data[start - 1:start] == b"\n" and data[:start].count(b'"') % 2 == 0
    frame = pd.read_csv(path)
    for operation, options in [("clean", {"missing": "fill_mode"}), ("split", {"random_state": 5})]:
        outputs, summary, _ = run(str(path), operation, options, tmp_path, block_size=4096, parallel=True)
        expected = ({"cleaned": cleaned(frame.copy(), options)} if operation == "clean"
                    else dict(zip(("train", "test"), split(frame, options, ""))))
        for label, frame_out in expected.items():
            same(outputs[label], frame_out)
        assert summary["rows_in"] == 3000


@pytest.mark.parametrize("parallel", [False, True], ids=["one-reader", "parts"])
def test_an_output_with_only_whole_numbers_in_a_column_of_floats_reads_back_as_floats(parallel, tmp_path):
    """A column of floats whose rows in an output are whole numbers alone ("7") is still floats when
    the output is read back, whichever rows (and blocks, and parts) an output gets: up to the first
    gap or fraction an output has in the column, its whole numbers are written as pandas writes them."""
    lines = ["id,tag,x,y", "0,0,0,0.5"]  # y: one fraction, in the first row; signed whole numbers after
    for i in range(1, 4000):
        fraction = i % 500 == 499  # late in each block of rows; drop_rows drops these rows (the tag's gap)
        lines.append(f"{i},{'' if fraction else i % 9},{i * 0.5 if fraction else i},{'-3' if i % 2 else '+4'}")
    path = tmp_path / "whole.csv"
    path.write_text("\n".join(lines) + "\n")
    frame = pd.read_csv(path)
    cases = [("clean", {"missing": "drop_rows"}), ("split", {"test_ratio": 0.5, "random_state": 3})]
    for operation, options in cases:
        outputs, _, files = run(str(path), operation, options, tmp_path, block_size=2048, parallel=parallel)
        expected = ({"cleaned": cleaned(frame.copy(), options)} if operation == "clean"
                    else dict(zip(("train", "test"), split(frame, options, ""))))
        for label, frame_out in expected.items():
            assert outputs[label]["x"].dtype == float and outputs[label]["y"].dtype == float
            same(outputs[label], frame_out)
        # the same files again, to the byte, whichever part ends first
        first = {o.label: open(o.path, "rb").read() for o in files}
        _, _, again = run(str(path), operation, options, tmp_path, block_size=2048, parallel=parallel)
        assert {o.label: open(o.path, "rb").read() for o in again} == first


def test_whole_numbers_of_a_float_column_get_a_dot_zero_and_nothing_else_changes():
    text = pa.array(["7", "-7", "+12", None, "1.5", "1e5", " 3", "", "--4", "x", "0"], type=pa.string())
    expected = ["7.0", "-7.0", "+12.0", None, "1.5", "1e5", " 3", "", "--4.0", "x", "0.0"]
    rows = csvstream.whole_rows(text)
    assert rows.tolist() == [0, 1, 2, 8, 10]
    for array, want in [(text, expected), (text.slice(3), expected[3:])]:  # its own buffers, or a slice
        mended = csvstream._append_to(array, csvstream.whole_rows(array), b".0")
        mended.validate(full=True)
        assert mended.to_pylist() == want


def test_floats_are_written_as_text_that_reads_back_as_the_same_floats():
    values = [0.1, 2.0, -0.0, 1e16, 1.5e-7, -123456.789, None, float("nan"), float("inf"), float("-inf"),
              0.1 + 0.2, 5e-324, 1.7976931348623157e308]
    text = csvstream.floats_for_csv(pa.array(values, type=pa.float64())).to_pylist()
    assert text[:3] == ["0.1", "2.0", "-0.0"]  # a whole number keeps its ".0", as pandas writes it
    assert text[6:10] == [None, None, "inf", "-inf"]  # a gap and NaN: empty, as pandas writes them
    back = pd.read_csv(io.StringIO("i,x\n" + "\n".join(f"{i},{t or ''}" for i, t in enumerate(text))))["x"].tolist()
    for wrote, read in zip(values, back):
        if wrote is None or wrote != wrote:
            assert read != read
        else:
            assert read == wrote
    assert csvstream.floats_for_csv(pa.array([], type=pa.float64())).to_pylist() == []
    assert csvstream.floats_for_csv(pa.array([3.0, 4.25])).to_pylist() == ["3.0", "4.25"]


@pytest.mark.parametrize("early", [True, False], ids=["gap-in-the-first-block", "gap-only-at-the-end"])
def test_a_mode_is_counted_in_the_first_pass_when_each_part_meets_a_gap_at_once(early, tmp_path):
    """Tallied while duplicates are looked for (no pass of its own), unless a part's first block has
    no gap in that column: then a pass more reads it. The same fill either way."""
    lines = ["n,colour,size"]
    for i in range(6000):
        j = i % 4000
        gap = (j % 50 == 0) if early else (i == 5999)
        lines.append(f"{j},{'' if gap else ('red' if j % 3 else 'blue')},{j % 7}")
    path = tmp_path / "colours.csv"
    path.write_text("\n".join(lines) + "\n")  # rows 4000.. repeat earlier ones: duplicates to take back
    steps = []
    options = operations.clean_options("clean", {"missing": "fill_mode"}, columns=["n", "colour", "size"])
    outputs, summary = operations.run(
        "clean", path=str(path), encoding="utf-8", delimiter=",", options=options, target_column="",
        output_path=lambda label: str(tmp_path / f"{label}.csv"), block_size=4096, parallel_min_bytes=1,
        progress=lambda fraction, step: steps.append((fraction, step)))
    frame = pd.read_csv(path)
    same(pd.read_csv(outputs[0].path), cleaned(frame, {"missing": "fill_mode"}))
    assert summary["duplicates_dropped"] == int(frame.duplicated().sum()) > 0
    assert ("computing fill values" in [step for _, step in steps]) is not early
    fractions = [fraction for fraction, _ in steps]  # the progress bar never goes back, and ends full
    assert fractions == sorted(fractions) and steps[-1] == (1.0, "done")


def test_the_copies_of_duplicate_rows_do_not_count_towards_a_fill_value(tmp_path):
    """Without its copies "blue" is the most frequent colour, with them "red" would be; the mean too
    is over the rows kept."""
    lines = ["n,colour,weight"]
    for i in range(2000):
        colour = "" if i % 20 == 1 else ("blue" if i % 5 < 3 else "red")
        weight = "" if i % 20 == 2 else str(i % 5 * 10)
        lines += [f"{i},{colour},{weight}"] * (3 if colour == "red" else 1)
    path = tmp_path / "copies.csv"
    path.write_text("\n".join(lines) + "\n")
    frame = pd.read_csv(path)
    for options in ({"missing": "fill_mode"}, {"missing": "fill_mean"}):
        outputs, summary, _ = run(str(path), "clean", options, tmp_path, block_size=4096, parallel=True)
        expected = cleaned(frame.copy(), options)
        same(outputs["cleaned"], expected)
        assert summary["duplicates_dropped"] == 1600
        assert set(outputs["cleaned"]["colour"]) == {"blue", "red"}
    assert expected["colour"][1] == "blue"  # pandas' mode of the kept rows


def _numbers_file(tmp_path, rows, tail=""):
    path = tmp_path / "numbers.csv"
    with open(path, "w") as f:
        f.write("a,b,label\n")
        for i in range(rows):
            f.write(f"{i},{i * 0.25},{'x' if i % 3 else 'y'}\n")
        f.write(tail)
    return path


def test_a_stop_asked_for_while_the_parts_are_read_ends_every_part_and_leaves_no_pieces(tmp_path):
    path = _numbers_file(tmp_path, 200_000)
    asked = []

    def should_stop():  # the first check passes, the next ones (as the parts are read) say stop
        asked.append(1)
        return len(asked) > 1

    options = operations.clean_options("scale", {}, columns=["a", "b", "label"])
    with pytest.raises(csvstream.Cancelled):
        operations.run("scale", path=str(path), encoding="utf-8", delimiter=",", options=options,
                       target_column="", output_path=lambda label: str(tmp_path / f"{label}.csv"),
                       should_stop=should_stop, block_size=1024, parallel_min_bytes=1)
    assert len(asked) >= 2
    assert not [name for name in os.listdir(tmp_path) if ".part" in name]


def test_a_row_that_does_not_parse_in_a_later_part_fails_the_operation_and_leaves_no_pieces(tmp_path):
    path = _numbers_file(tmp_path, 20_000, tail="1,2,3,4\n")
    options = operations.clean_options("split", {}, columns=["a", "b", "label"])
    with pytest.raises(pa.ArrowInvalid, match="columns"):
        operations.run("split", path=str(path), encoding="utf-8", delimiter=",", options=options,
                       target_column="", output_path=lambda label: str(tmp_path / f"{label}.csv"),
                       block_size=1024, parallel_min_bytes=1)
    assert not [name for name in os.listdir(tmp_path) if ".part" in name]


def test_a_file_with_a_quoted_field_that_never_closes_is_one_part(tmp_path):
    path = tmp_path / "open.csv"
    path.write_text('a,b\n1,"never closed\n' + "2,x\n" * 1000)
    assert csvstream.row_ranges(str(path), 4) == [(0, path.stat().st_size)]


@pytest.mark.parametrize("block_size,parallel", [(1024, False), (csvstream.BLOCK_BYTES, False), (1024, True)])
def test_a_stratified_sample_keeps_each_class_share_and_is_the_same_for_the_seed(block_size, parallel, tmp_path):
    def draw(name, stratify=True):
        return operations.sample(path=PENGUINS, encoding="utf-8", delimiter=",", rows=100, target_column="species",
                                 stratify=lambda target: stratify, output_path=str(tmp_path / name),
                                 block_size=block_size,
                                 parallel_min_bytes=1 if parallel else csvstream.PARALLEL_MIN_BYTES)

    frame = pd.read_csv(PENGUINS)
    drawn = draw("a.csv")
    assert (drawn.rows_total, drawn.stratified) == (344, True) and abs(drawn.rows - 100) <= 2
    sample = pd.read_csv(drawn.path)
    shares = frame["species"].value_counts() * 100 / 344
    assert (sample["species"].value_counts() - shares).abs().max() <= 0.5
    assert sample.merge(frame.drop_duplicates(), how="left", indicator=True)["_merge"].eq("both").all()
    assert pd.read_csv(draw("b.csv").path).equals(sample)
    random = draw("c.csv", stratify=False)
    assert (random.rows, random.stratified) == (100, False)
