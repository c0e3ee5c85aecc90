"""profile_csv / quality / first_rows checked against pandas on the same files, and the stored JSON (no Django)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import datasets.profiling as profiling
from datasets.profiling import (
    DatasetProfile, Histogram, QualityReport, TopValue, columns as column_stats, first_rows, profile_csv, quality,
    sketches,
)
from datasets.validation import validate_csv

DATA = os.environ.get("MLOPS_SHARED_DATA", "/work/shared/data")
TITANIC = os.path.join(DATA, "titanic.csv")
PENGUINS = os.path.join(DATA, "penguins.csv")
STORED = Path(__file__).parent / "data"

VOLATILE = {"profile_time", "restarts", "memory_bytes", "arrow_type"}


def profile(path, **kwargs):
    v = validate_csv(path)
    assert v.ok, v.errors
    return profile_csv(path, encoding=v.encoding, delimiter=v.delimiter, **kwargs)


def columns(p):
    return {c.name: c for c in p.column_profiles}


def assert_json(p):
    """What is stored is plain JSON and (for a profile or a report) reads back into the same dataclass."""
    data = p if isinstance(p, dict) else p.to_json()
    text = json.dumps(data, allow_nan=False)  # raises on NaN / inf
    assert json.loads(text) == data
    if not isinstance(p, dict):
        assert type(p).from_json(json.loads(text)) == p


def assert_same(a, b, path="profile"):
    """Structural equality, floats compared with a tolerance, volatile keys ignored."""
    if isinstance(a, DatasetProfile):
        a, b = a.to_json(), b.to_json()
    if isinstance(a, dict):
        assert isinstance(b, dict), path
        keys = (set(a) | set(b)) - VOLATILE
        for k in keys:
            assert k in a and k in b, f"{path}.{k} missing"
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, f"{path}: {a!r} != {b!r}"
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), f"{path}: {a!r} != {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def titanic():
    return profile(TITANIC, target_column="survived")


@pytest.fixture(scope="module")
def titanic_df():
    return pd.read_csv(TITANIC)


# --- titanic and penguins against pandas ------------------------------------------------------


def test_titanic_dataset_level(titanic, titanic_df):
    assert_json(titanic)
    assert titanic.rows == len(titanic_df) == 891
    assert titanic.columns == 15
    assert [c.name for c in titanic.column_profiles] == list(titanic_df.columns)
    assert titanic.missing_cells == int(titanic_df.isna().sum().sum()) == 869
    assert titanic.missing_share == pytest.approx(869 / (891 * 15), abs=1e-6)
    assert titanic.duplicate_rows == int(titanic_df.duplicated().sum()) == 107
    assert titanic.duplicate_rows_approximate is False
    assert titanic.memory_bytes > 0
    assert titanic.encoding == "utf-8" and titanic.delimiter == ","


def test_titanic_columns_match_pandas(titanic, titanic_df):
    cols = columns(titanic)
    for name in titanic_df.columns:
        series = titanic_df[name]
        col = cols[name]
        assert col.missing_count == int(series.isna().sum()), name
        assert col.distinct_count == int(series.nunique()), name
        assert col.distinct_approximate is False
    for name in ["pclass", "age", "sibsp", "parch", "fare"]:
        series, col = titanic_df[name], cols[name]
        assert col.type == "numeric", name
        assert col.min == pytest.approx(series.min())
        assert col.max == pytest.approx(series.max())
        assert col.mean == pytest.approx(series.mean(), rel=1e-12)
        assert col.std == pytest.approx(series.std(), rel=1e-9)
        # Fewer values than the sample size: the quantiles are exact (linear interpolation).
        assert col.quantiles_approximate is False
        for key, q in profiling.QUANTILES.items():
            assert col.quantiles[key] == pytest.approx(series.quantile(q)), (name, key)
        assert sum(col.histogram.counts) == series.notna().sum()


def test_titanic_types(titanic):
    cols = columns(titanic)
    expected = {
        "survived": "boolean",  # 0/1 only: documented as boolean
        "pclass": "numeric",
        "sex": "categorical",
        "age": "numeric",
        "fare": "numeric",
        "embarked": "categorical",
        "class": "categorical",
        "adult_male": "boolean",
        "deck": "categorical",
        "embark_town": "categorical",
        "alive": "boolean",  # yes/no
        "alone": "boolean",
    }
    assert {k: cols[k].type for k in expected} == expected
    assert titanic.column_types == {"numeric": 5, "categorical": 6, "boolean": 4, "datetime": 0, "text": 0}


def test_titanic_top_values_and_histograms(titanic, titanic_df):
    cols = columns(titanic)
    assert cols["survived"].top_values == [TopValue("0", 549), TopValue("1", 342)]
    assert cols["alive"].top_values == [TopValue("no", 549), TopValue("yes", 342)]
    assert cols["adult_male"].top_values == [TopValue("True", 537), TopValue("False", 354)]
    counts = titanic_df["embark_town"].value_counts()
    assert cols["embark_town"].top_values == [TopValue(k, int(v)) for k, v in counts.items()]
    # Small-range integers get one bin per value.
    assert cols["pclass"].histogram == Histogram([1.0, 2.0, 3.0, 4.0], [216, 184, 491], approximate=False)
    age = cols["age"].histogram
    assert len(age.bins) == 21 and len(age.counts) == 20
    expected, _ = np.histogram(titanic_df["age"].dropna(), bins=np.array(age.bins))
    assert age.counts == expected.tolist()


def test_titanic_target(titanic):
    assert titanic.target.name == "survived"
    assert titanic.target.task == "classification"
    assert titanic.target.classes == 2
    assert titanic.target.minority_share == pytest.approx(342 / 891, abs=1e-6)
    assert columns(titanic)["survived"].is_target is True


def test_titanic_quality(titanic):
    q = quality(titanic)
    assert_json(q)
    assert q.completeness == round(100 * (1 - 869 / (891 * 15)), 1)
    assert q.uniqueness == round(100 * (1 - 107 / 891), 1)
    assert q.validity == 100.0
    assert q.consistency == 100.0
    expected = sum(profiling.QUALITY_WEIGHTS[k] * v for k, v in [
        ("completeness", 100 * (1 - 869 / (891 * 15))), ("uniqueness", 100 * (1 - 107 / 891)),
        ("validity", 100.0), ("consistency", 100.0),
    ])
    assert q.quality_score == round(expected, 1) == 95.0  # the worked example in docs/quality.md
    assert q.weights == {"completeness": 0.40, "validity": 0.25, "uniqueness": 0.20, "consistency": 0.15}
    assert "age is 19.9% missing" in q.findings
    assert "deck is 77.2% missing" in q.findings
    assert q.findings[0] == "107 duplicate rows (12.0% of rows)"
    assert not any("embarked" in f for f in q.findings)  # 0.2% missing is not worth a finding


def test_penguins_against_pandas():
    p = profile(PENGUINS)
    df = pd.read_csv(PENGUINS)
    assert_json(p)
    assert p.rows == 344 and p.duplicate_rows == 0
    cols = columns(p)
    for name in df.columns:
        assert cols[name].missing_count == int(df[name].isna().sum()), name
        assert cols[name].distinct_count == int(df[name].nunique()), name
    for name in ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]:
        assert cols[name].type == "numeric"
        assert cols[name].mean == pytest.approx(df[name].mean(), rel=1e-12)
        assert cols[name].std == pytest.approx(df[name].std(), rel=1e-9)
        assert cols[name].min == df[name].min() and cols[name].max == df[name].max()
    assert cols["species"].type == "categorical"
    assert cols["sex"].type == "categorical"
    assert cols["sex"].top_values == [TopValue("MALE", 168), TopValue("FEMALE", 165)]


# --- chunking ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [TITANIC, PENGUINS])
def test_chunked_equals_single_chunk(path):
    whole = profile(path)
    for chunk_rows in (7, 50, 128):
        chunked = profile(path, chunk_rows=chunk_rows)
        assert_same(chunked, whole)


def test_batch_boundaries_do_not_change_the_profile(tmp_path):
    """Every kind of column, cut into batches of a few rows (and blocks of a few hundred bytes)."""
    rng = np.random.default_rng(11)
    n = 3_000
    df = pd.DataFrame({
        "id": np.arange(n),
        "age": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(18, 90, n)), dtype="Int64"),
        "score": np.round(rng.normal(0, 1, n), 3),
        "flag": rng.integers(0, 2, n),
        "plan": rng.choice(["free", "pro", "team"], n),
        "churned": rng.choice(["yes", "no"], n),
        "is_active": rng.random(n) < 0.5,
        "day": pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D"),
        "user": np.char.add("user_", rng.integers(0, 10**6, n).astype(str)),
        "note": rng.choice(["a b", " padded", "x", "", "1.5"], n),
    })
    df = pd.concat([df, df.iloc[:40]], ignore_index=True)  # duplicate rows
    path = tmp_path / "mixed.csv"
    df.to_csv(path, index=False, date_format="%Y-%m-%d")
    whole = profile(path, target_column="churned")
    assert whole.rows == len(df) and whole.duplicate_rows == 40
    for chunk_rows in (1, 3, 64, 1000):
        assert_same(profile(path, target_column="churned", chunk_rows=chunk_rows), whole)


@pytest.mark.parametrize("prefix, padding", [
    ("name ", ["\ttab"]),  # ASCII: lengths and padding read off the bytes
    ("nämé ", ["\u00a0nbsp", "ideographic\u3000"]),  # not ASCII: Arrow's utf8 functions
])
def test_mostly_distinct_strings_skip_the_dictionary_with_the_same_statistics(tmp_path, monkeypatch, prefix,
                                                                              padding):
    """Past exact counts, a column of mostly distinct strings is read from its hashes (no Arrow
    dictionary): everything but the approximate top values is as from the dictionary path."""
    rng = np.random.default_rng(3)
    n = 4_000
    names = np.char.add(prefix, rng.integers(0, 10**7, n).astype(str)).astype(object)
    names[rng.random(n) < 0.05] = None
    names[::97] = " padded"
    names[5::101] = "trailing "
    for i, value in enumerate(padding):
        names[7 + i::89] = value
    names[3::83] = "in\u0001side"  # a control character inside is not padding
    path = tmp_path / "wide.csv"
    pd.DataFrame({"name": names, "n": np.arange(n)}).to_csv(path, index=False)
    exact = columns(profile(path))["name"]
    monkeypatch.setattr(column_stats, "STRING_COUNTS_CAP", 50)
    wide = columns(profile(path, chunk_rows=300))["name"]
    assert wide.top_values_approximate is True and exact.top_values_approximate is False
    for field in ("missing_count", "distinct_count", "distinct_approximate", "mean_length", "max_length",
                  "whitespace_count", "whitespace_examples", "type", "looks_like_identifier"):
        assert getattr(wide, field) == getattr(exact, field), field
    assert exact.whitespace_examples == [" padded", "trailing ", padding[0]]
    assert exact.whitespace_count == sum(1 for v in names if v is not None and v != v.strip())
    # the repeated values are found (heavy hitters: a chunk where one was not yet among them is not counted)
    assert [v.value for v in wide.top_values[:2]] == [v.value for v in exact.top_values[:2]]
    assert all(w.count <= e.count for w, e in zip(wide.top_values[:2], exact.top_values[:2]))


def test_progress_is_reported(tmp_path):
    calls = []
    profile(TITANIC, chunk_rows=100, progress=lambda fraction, step: calls.append((fraction, step)))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions)
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert 5 <= len(calls) <= 3 * (891 // 100 + 1) + 3
    assert all(isinstance(s, str) and s for _, s in calls)


def test_types_widen_when_later_blocks_disagree(tmp_path):
    """Arrow infers types from the first block; later surprises restart with a wider type."""
    lines = ["ints_then_float,ints_then_text,empty_then_numbers,dates_then_datetime"]
    for i in range(600):
        lines.append(",".join([
            "2.5" if i == 400 else str(i),
            "abc" if i == 450 else str(i % 7),
            "" if i < 300 else str(i * 0.5),
            "2020-01-05 10:00:00" if i == 500 else f"2020-01-{i % 28 + 1:02d}",
        ]))
    path = tmp_path / "widen.csv"
    path.write_text("\n".join(lines) + "\n")
    df = pd.read_csv(path)
    small = profile(path, chunk_rows=40)
    assert small.restarts >= 4
    assert_same(small, profile(path))
    cols = columns(small)
    assert cols["ints_then_float"].type == "numeric"
    assert cols["ints_then_float"].mean == pytest.approx(df["ints_then_float"].mean())
    text = cols["ints_then_text"]
    assert text.type == "numeric"  # 599 of 600 values are numbers
    assert text.invalid_count == 1 and text.invalid_examples == ["abc"]
    assert text.mean == pytest.approx(pd.to_numeric(df["ints_then_text"], errors="coerce").mean())
    empty = cols["empty_then_numbers"]
    assert empty.type == "numeric" and empty.missing_count == 300
    assert empty.min == 150.0 and empty.max == 299.5
    dates = cols["dates_then_datetime"]
    assert dates.type == "datetime"
    assert dates.min == "2020-01-01T00:00:00" and dates.max == "2020-01-28T00:00:00"
    assert any("ints_then_text has 1 value (0.2%) that are not numbers, e.g. 'abc'" == f
               for f in quality(small).findings)


def test_strings_counted_exactly_are_profiled_as_by_the_dictionary_path(tmp_path, monkeypatch):
    """While a string column's counts are exact, each chunk is looked up among the values already
    seen (their statistics worked out once per value); that path gives what the per-chunk
    dictionary path gives, also for a column that passes the exact counts' cap partway."""
    rng = np.random.default_rng(11)
    n = 6_000
    pick = lambda values: rng.choice(np.array(values, dtype=object), n)  # noqa: E731
    df = pd.DataFrame({
        "category": pick(["a", "b", " d", "e ", "Ünï", "x y", None]),
        "mostly_numbers": np.where(rng.random(n) < 0.9, rng.integers(0, 300, n).astype(str),
                                   pick(["x", "y", "zz", " 7 ", "1e5"])),
        "mostly_dates": np.where(rng.random(n) < 0.85, pick([f"2020-01-{d:02d}" for d in range(1, 29)]),
                                 pick(["soon", "2021-05-06 10:00:00", None])),
        "growing": [f"g{rng.integers(0, i // 4 + 1)}" for i in range(n)],  # passes the cap partway
        "empty_first": [None] * 700 + list(pick(["u", "v"]))[700:],
    })
    path = tmp_path / "strings.csv"
    df.to_csv(path, index=False)
    monkeypatch.setattr(column_stats, "STRING_COUNTS_CAP", 600)
    known = profile(path, chunk_rows=500)
    monkeypatch.setattr(column_stats.ColumnStats, "_update_known", lambda self, *args: None)
    assert_same(known, profile(path, chunk_rows=500))
    cols = columns(known)
    assert cols["growing"].top_values_approximate and not cols["mostly_numbers"].top_values_approximate
    numbers = cols["mostly_numbers"]
    assert numbers.type == "numeric" and sorted(numbers.invalid_examples) == ["x", "y", "zz"]
    assert cols["mostly_dates"].type == "datetime" and cols["category"].whitespace_count > 0


def test_a_header_that_repeats_a_name_is_profiled_with_each_columns_own_type(tmp_path):
    """The pass's reader is told the types of the first block by name; a repeated name (which
    validation refuses, but an unvalidated file may have) leaves each column to Arrow's inference."""
    path = tmp_path / "repeated.csv"
    path.write_text("a,a,b\n" + "".join(f"{i},x{i},{i / 2}\n" for i in range(500)))
    p = profile_csv(path, encoding="utf-8", delimiter=",", chunk_rows=50)
    assert p.rows == 500 and p.restarts == 0
    assert [(c.type, c.arrow_type) for c in p.column_profiles] == [("numeric", "int64"), ("text", "string"),
                                                                  ("numeric", "double")]


# --- crafted files ----------------------------------------------------------------------------


def make_customers(tmp_path, n=400, duplicates=12):
    rng = np.random.default_rng(7)
    df = pd.DataFrame({
        "customer_id": np.arange(1, n + 1),
        "plan": ["pro"] * n,
        "age": np.where(rng.random(n) < 0.6, np.nan, rng.integers(18, 90, n)),
        "country": rng.choice(["FR", "DE", "ES"], n),
        "spend": np.round(rng.exponential(50, n), 2),
        "signup": pd.date_range("2021-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "comment": [f"this is comment number {i} with words" for i in range(n)],
    })
    dup_rows = df.sample(duplicates, random_state=3)
    out = pd.concat([df, dup_rows], ignore_index=True)
    path = tmp_path / "customers.csv"
    out.to_csv(path, index=False)
    return path, out


def test_quality_findings_on_a_crafted_file(tmp_path):
    path, df = make_customers(tmp_path)
    p = profile(path)
    assert_json(p)
    assert p.duplicate_rows == int(df.duplicated().sum()) == 12
    cols = columns(p)
    assert cols["customer_id"].looks_like_identifier is True
    assert cols["plan"].is_constant is True
    assert cols["country"].looks_like_identifier is False
    assert cols["comment"].type == "text"
    assert cols["comment"].looks_like_identifier is False  # unique, but free text
    assert cols["signup"].type == "datetime"
    assert cols["signup"].min == "2021-01-01"
    assert cols["age"].missing_count == int(df["age"].isna().sum())

    q = quality(p)
    findings = q.findings
    age_share = df["age"].isna().mean()
    assert f"age is {100 * age_share:.1f}% missing" in findings
    assert findings[0] == f"12 duplicate rows ({100 * 12 / len(df):.1f}% of rows)"
    assert any(f.startswith("customer_id looks like an identifier") for f in findings)
    assert "plan is constant (always 'pro')" in findings
    assert q.uniqueness == round(100 * (1 - 12 / len(df)), 1)
    assert q.consistency == round(100 * (1 - 1 / 7), 1)  # the constant column
    assert q.quality_score < quality(profile(TITANIC)).quality_score + 5
    assert 0 <= q.quality_score <= 100


def test_inconsistent_and_invalid_values(tmp_path):
    rows = ["sex,price,code"]
    for i in range(200):
        sex = ["Male", "male", " male", "Female"][i % 4]
        price = "n/a-" if i % 50 == 0 else f"{i}.5"
        rows.append(f"{sex},{price},C{i % 3}")
    path = tmp_path / "messy.csv"
    path.write_text("\n".join(rows) + "\n")
    p = profile(path)
    cols = columns(p)
    assert cols["sex"].whitespace_count == 50
    assert cols["sex"].case_variants == [[" male", "Male", "male"]]
    assert cols["price"].type == "numeric"
    assert cols["price"].invalid_count == 4
    q = quality(p)
    assert q.validity == round(100 * (1 - 4 / 600), 1)
    assert q.consistency == round(100 * (1 - 1 / 3), 1)
    assert "sex has 50 values with leading or trailing spaces, e.g. ' male'" in q.findings
    assert "sex has values that differ only in case or spacing: ' male' / 'Male' / 'male'" in q.findings
    assert "price has 4 values (2.0%) that are not numbers, e.g. 'n/a-'" in q.findings


def test_infinities_and_nan_become_none(tmp_path):
    path = tmp_path / "inf.csv"
    path.write_text("a,b,c\n1,inf,\n2,-inf,\n3,4,\n")
    p = profile(path)
    assert_json(p)
    b = columns(p)["b"]
    assert b.infinite_count == 2 and b.min == 4.0 and b.max == 4.0
    assert b.std is None  # a single finite value
    c = columns(p)["c"]
    assert c.is_empty is True and c.missing_count == 3
    q = quality(p)
    assert "b has 2 infinite values" in q.findings
    assert "c is empty (every value is missing)" in q.findings


def test_header_only_file(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("a,b\n")
    p = profile_csv(path, encoding="utf-8", delimiter=",")
    assert p.rows == 0 and p.columns == 2 and p.duplicate_rows == 0
    assert quality(p).quality_score == 100.0


def test_exact_duplicates_against_pandas(tmp_path):
    rng = np.random.default_rng(11)
    n = 5000
    df = pd.DataFrame({
        "a": rng.integers(0, 4, n),
        "b": rng.choice(["x", "y", None], n),
        "c": rng.integers(0, 3, n) * 0.5,
    })
    path = tmp_path / "dups.csv"
    df.to_csv(path, index=False)
    expected = int(pd.read_csv(path).duplicated().sum())
    assert expected > 4900
    for chunk_rows in (200_000, 333):
        assert profile(path, chunk_rows=chunk_rows).duplicate_rows == expected


def test_approximate_paths_are_flagged_and_close(tmp_path, monkeypatch):
    n = 60_000
    rng = np.random.default_rng(5)
    df = pd.DataFrame({
        "key": rng.integers(0, 20_000, n),
        "value": rng.normal(10, 3, n),
        "label": np.char.add("k", rng.integers(0, 30_000, n).astype(str)),
    })
    df = pd.concat([df, df.iloc[:1500]], ignore_index=True)
    path = tmp_path / "approx.csv"
    df.to_csv(path, index=False)
    exact = profile(path)
    monkeypatch.setattr(sketches, "DISTINCT_CAP", 2_000)
    monkeypatch.setattr(sketches, "SAMPLE_SIZE", 5_000)
    monkeypatch.setattr(sketches, "DUPLICATE_HASH_CAP", 20_000)
    monkeypatch.setattr(column_stats, "STRING_COUNTS_CAP", 1_000)
    approx = profile(path, chunk_rows=10_000)
    e, a = columns(exact), columns(approx)
    for name in ["key", "value", "label"]:
        assert e[name].distinct_approximate is False
        assert e[name].distinct_count == df[name].nunique()
        assert a[name].distinct_approximate is True
        assert a[name].distinct_count == pytest.approx(df[name].nunique(), rel=0.08)
    assert a["value"].quantiles_approximate is True and e["value"].quantiles_approximate is False
    for key, q in profiling.QUANTILES.items():
        assert a["value"].quantiles[key] == pytest.approx(df["value"].quantile(q), abs=0.25)
    assert sum(a["value"].histogram.counts) == len(df)
    assert a["value"].mean == pytest.approx(df["value"].mean(), rel=1e-12)  # still exact
    # the sample is the rows with the 5,000 smallest keys, however the file was chunked
    other = columns(profile(path, chunk_rows=7_001))
    for name in ["key", "value"]:
        assert other[name].quantiles == a[name].quantiles and other[name].histogram == a[name].histogram
        assert other[name].distinct_count == a[name].distinct_count
    assert a["label"].top_values_approximate is True
    assert exact.duplicate_rows == int(df.duplicated().sum())
    assert approx.duplicate_rows_approximate is True
    assert approx.duplicate_rows == pytest.approx(exact.duplicate_rows, abs=1500)


def test_the_package_imports_no_django():
    code = "import sys, datasets.profiling; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


# --- the stored JSON ---------------------------------------------------------------------------
# shapes.profile.json and shapes.quality.json were stored by the profiler before it became a
# package of dataclasses: every kind of column (numbers, 0/1, Arrow and yes/no booleans, numbers
# and dates read from strings, infinities, an empty and a constant column, free text, a target).


def stored(name):
    return json.loads((STORED / name).read_text())


def test_a_stored_profile_loads_and_serialises_to_the_same_json():
    data = stored("shapes.profile.json")
    loaded = DatasetProfile.from_json(data)
    assert json.dumps(loaded.to_json()) == json.dumps(data)  # same keys, shapes and key order
    assert loaded.target.name == "label" and loaded.target.class_counts[0] == TopValue("cat", 26)
    assert loaded.column("price").infinite_count == 3 and loaded.column("empty").is_empty
    report = stored("shapes.quality.json")
    assert json.dumps(QualityReport.from_json(report).to_json()) == json.dumps(report)
    assert quality(loaded) == QualityReport.from_json(report)


def test_a_new_profile_is_stored_as_before():
    data = stored("shapes.profile.json")
    fresh = profile(STORED / "shapes.csv", target_column="label").to_json()
    fresh["profile_time"] = data["profile_time"]
    assert json.dumps(fresh) == json.dumps(data)


@pytest.mark.parametrize("name, path, target", [("titanic", TITANIC, "survived"), ("penguins", PENGUINS, "species")])
def test_real_files_profile_as_the_former_profiler_did(name, path, target):
    """titanic.profile.json and penguins.profile.json were stored by the profiler before it was made
    faster (issue 17): the profile of the real files stays the same, key for key."""
    expected = stored(f"{name}.profile.json")
    fresh = profile(path, target_column=target).to_json()
    assert_same(fresh, expected)
    assert list(fresh) == list(expected)
    for mine, theirs in zip(fresh["column_profiles"], expected["column_profiles"]):
        assert list(mine) == list(theirs)


def test_a_profile_without_the_optional_keys_still_loads():
    loaded = DatasetProfile.from_json({"rows": 3, "column_profiles": [{"name": "a"}]})
    assert loaded.rows == 3 and loaded.column_profiles[0].type == "text" and loaded.target is None
    assert quality(loaded).quality_score == 100.0


# --- encodings and delimiters -----------------------------------------------------------------


def test_cp1252_semicolon_file(tmp_path):
    path = tmp_path / "w.csv"
    path.write_bytes("name;price\ncafé;1\n€uro;2\nnaïve;3\n".encode("cp1252"))
    p = profile(path)
    assert p.encoding == "cp1252" and p.delimiter == ";"
    assert {v.value for v in columns(p)["name"].top_values} == {"café", "€uro", "naïve"}
    assert columns(p)["price"].mean == 2.0


def test_bom_and_tabs(tmp_path):
    path = tmp_path / "bom.tsv"
    path.write_bytes(b"\xef\xbb\xbfa\tb\n1\t2\n3\t\n")
    p = profile(path)
    assert [c.name for c in p.column_profiles] == ["a", "b"]
    assert p.missing_cells == 1


def test_quoted_newlines(tmp_path):
    path = tmp_path / "nl.csv"
    path.write_text('id,text\n1,"two\nlines"\n2,one\n')
    p = profile(path)
    assert p.rows == 2
    assert {v.value for v in columns(p)["text"].top_values} == {"two\nlines", "one"}


# --- first_rows -------------------------------------------------------------------------------


def test_first_rows_titanic():
    preview = first_rows(TITANIC, encoding="utf-8", delimiter=",", n=3)
    assert preview["columns"][:3] == ["survived", "pclass", "sex"]
    assert preview["rows"][0] == [
        "0", "3", "male", "22.0", "1", "0", "7.25", "S", "Third", "man", "True", None, "Southampton", "no", "False",
    ]
    assert len(preview["rows"]) == 3
    assert len(first_rows(TITANIC, encoding="utf-8", delimiter=",")["rows"]) == 50
    assert_json(preview)


def test_first_rows_pads_short_rows_and_strips_bom(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b,c\n1,,3\n4\n")
    preview = first_rows(path, encoding="utf-8-sig", delimiter=",", n=10)
    assert preview == {"columns": ["a", "b", "c"], "rows": [["1", None, "3"], ["4", None, None]]}


# --- bounds on quoted cell values --------------------------------------------------------------


def test_quoted_cell_values_are_at_most_100_characters_and_preview_cells_200(tmp_path):
    long = "v" * 50_000
    rows = ["id,constant,spaced,number"]
    for i in range(40):
        spaced = f" {long}{i} " if i % 2 else f"s{i}"
        number = long if i < 5 else str(i)
        rows.append(f"{i},{long},{spaced},{number}")
    path = tmp_path / "long.csv"
    path.write_text("\n".join(rows) + "\n")
    profile = profiling.profile_csv(path, encoding="utf-8", delimiter=",")
    report = profiling.quality(profile)
    stored = json.dumps(profile.to_json())
    assert len(stored) < 30_000, "a cell value was stored whole in the profile"
    findings = report.findings
    assert any("constant" in f for f in findings) and any("spaces" in f for f in findings)
    assert any("not numbers" in f for f in findings)
    for finding in findings:
        assert len(finding) < 600, finding
        for quoted in finding.split("'")[1::2]:
            assert len(quoted) <= 100
    for column in profile.column_profiles:
        for top in column.top_values or []:
            assert len(top.value) <= 100
    preview = profiling.first_rows(path, encoding="utf-8", delimiter=",", n=50)
    cells = [cell for row in preview["rows"] for cell in row if cell is not None]
    assert max(map(len, cells)) == 200 and preview["rows"][0][1].endswith("…")
