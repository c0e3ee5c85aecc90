"""The compiled preprocessor (training/trainer/compiled.py): the prediction API's numbers must be exactly
sklearn's, for every algorithm, every row of the real CSVs and the awkward values a client sends."""

from __future__ import annotations

import csv
import math
import random

import numpy as np
import pandas as pd
import pytest

from training import trainer
from training.trainer import predict, train
from training.trainer.compiled import compile_preprocessor
from training.trainer.features import _coerce_frame, _py

DATA = "/work/shared/data"
CASES = [
    (f"{DATA}/titanic.csv", "survived"),
    (f"{DATA}/penguins.csv", "species"),
    (f"{DATA}/penguins.csv", "body_mass_g"),
]


def _instances(csv_path, schema):
    df = pd.read_csv(csv_path)
    names = [c["name"] for c in schema]
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
        for rec in df[names].astype(object).to_dict(orient="records")
    ]


def _odd_instances(schema, base):
    """What a client may send besides clean rows: every value missing, unknown categories,
    integers for floats, floats for integers, booleans as strings and numbers."""
    odd = [{c["name"]: None for c in schema}]
    for c in schema:
        name, kind = c["name"], c["type"]
        if kind == "categorical":
            odd += [{**base, name: "never-seen"}, {**base, name: 3}, {**base, name: 3.0}, {**base, name: True}]
        elif kind == "boolean":
            odd += [{**base, name: v} for v in ("yes", " No ", "1", 0, 1, 1.0, "maybe", False)]
        elif kind == "numeric":
            odd += [{**base, name: v} for v in (0, -7, 2**40, 1e-9, 123456.789)]
    return odd


def _sklearn_X(pipeline, instances, schema):
    frame = pd.DataFrame([{c["name"]: i.get(c["name"]) for c in schema} for i in instances],
                         columns=[c["name"] for c in schema])
    return pipeline[:-1].transform(_coerce_frame(frame, schema)), _coerce_frame(frame, schema)


def _dense(X):
    return X.toarray() if hasattr(X, "toarray") else np.asarray(X)


@pytest.mark.parametrize("algorithm", trainer.ALGORITHMS)
@pytest.mark.parametrize("csv_path,target", CASES, ids=["titanic", "penguins-species", "penguins-mass"])
def test_the_compiled_preprocessor_gives_sklearns_numbers(csv_path, target, algorithm):
    result = train(csv_path=csv_path, target_column=target, task=None, algorithm=algorithm, epochs=3)
    pipeline, schema = result.pipeline, result.feature_schema
    compiled = compile_preprocessor(pipeline.steps[0][1], schema)
    assert compiled is not None, "these models' preprocessors are compiled"

    rows = _instances(csv_path, schema)
    odd = [i for i in _odd_instances(schema, rows[0]) if trainer.check_instances([i], schema) == []]
    assert len(odd) > 10
    instances = rows + odd
    expected, frame = _sklearn_X(pipeline, instances, schema)
    got = compiled.transform(instances)
    assert got is not None
    assert type(got) is type(expected) or (hasattr(got, "toarray") == hasattr(expected, "toarray"))
    assert np.array_equal(_dense(got), _dense(expected)), "the same matrix, bit for bit"

    # and the API's answer equals the whole sklearn pipeline's
    out = predict(pipeline, instances, schema)
    assert out["predictions"] == [_py(p) for p in pipeline.predict(frame)]
    if "probabilities" in out:
        want = pipeline.predict_proba(frame)
        have = np.array([[row[str(_py(c))] for c in pipeline.classes_] for row in out["probabilities"]])
        np.testing.assert_allclose(have, want, rtol=0, atol=1e-12)


def test_numbers_sent_as_strings_take_sklearns_path_and_agree():
    result = train(csv_path=f"{DATA}/penguins.csv", target_column="species", task=None, algorithm="sgd", epochs=3)
    compiled = compile_preprocessor(result.pipeline.steps[0][1], result.feature_schema)
    inst = {"island": "Biscoe", "bill_length_mm": " 47.5", "bill_depth_mm": None, "flipper_length_mm": 217,
            "body_mass_g": "5000", "sex": None}
    assert compiled.transform([inst]) is None  # pandas parses strings its own way: not reproduced
    out = predict(result.pipeline, [inst], result.feature_schema)
    _, frame = _sklearn_X(result.pipeline, [inst], result.feature_schema)
    assert out["predictions"] == result.pipeline.predict(frame).tolist()


@pytest.fixture()
def many_categories_csv(tmp_path):
    """A categorical column with more values than the encoder keeps (MAX_CATEGORIES): the rare
    ones share an "infrequent" column. Plus a boolean and a date column."""
    rnd = random.Random(7)
    path = tmp_path / "shops.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["city", "open_late", "size", "opened", "sales"])
        for i in range(900):
            city = f"city{int(rnd.paretovariate(0.8)) % 70:02d}"
            size = rnd.choice([None, rnd.uniform(20, 400)])
            w.writerow([city, rnd.choice(["yes", "no", ""]), "" if size is None else f"{size:.1f}",
                        f"2020-{1 + i % 12:02d}-{1 + i % 28:02d}", f"{rnd.uniform(0, 1000):.2f}"])
    return path


def test_infrequent_categories_and_unknown_values(many_categories_csv, tmp_path):
    df = pd.read_csv(many_categories_csv).drop(columns=["opened"])
    no_dates = tmp_path / "no_dates.csv"
    df.to_csv(no_dates, index=False)
    result = train(csv_path=str(no_dates), target_column="sales", task=None, algorithm="sgd", epochs=3)
    pipeline, schema = result.pipeline, result.feature_schema
    encoder = pipeline.steps[0][1].named_transformers_["categorical"].named_steps["onehot"]
    assert encoder.infrequent_categories_[0] is not None, "the fixture must produce infrequent categories"
    compiled = compile_preprocessor(pipeline.steps[0][1], schema)
    assert compiled is not None
    rows = _instances(no_dates, schema)
    rare = [str(c) for c in encoder.infrequent_categories_[0]]
    instances = rows + [{**rows[0], "city": c} for c in rare + ["city99", "", "CITY01"]]
    expected, frame = _sklearn_X(pipeline, instances, schema)
    assert np.array_equal(_dense(compiled.transform(instances)), _dense(expected))
    assert predict(pipeline, instances, schema)["predictions"] == pipeline.predict(frame).tolist()


def test_a_preprocessor_it_does_not_know_stays_on_sklearns_path(many_categories_csv):
    result = train(csv_path=str(many_categories_csv), target_column="sales", task=None, algorithm="sgd", epochs=3)
    pipeline, schema = result.pipeline, result.feature_schema
    assert any(c["type"] == "datetime" for c in schema)
    assert compile_preprocessor(pipeline.steps[0][1], schema) is None
    instances = _instances(many_categories_csv, schema)[:50]
    _, frame = _sklearn_X(pipeline, instances, schema)
    assert predict(pipeline, instances, schema)["predictions"] == pipeline.predict(frame).tolist()
