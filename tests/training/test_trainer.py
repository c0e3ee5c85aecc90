"""Tests for training/trainer/: real CSVs, real scikit-learn, no Django.

Run: cd /work/main && .venv/bin/python -m pytest tests/training -p no:django -q
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from training.trainer import fitting
from training.trainer import (
    ALGORITHMS,
    STAGES,
    ArtifactIntegrityError,
    InvalidInputError,
    ProgressUpdate,
    TrainingCancelled,
    TrainingError,
    TrainingResult,
    check_instances,
    infer_task,
    load_artifact,
    predict,
    train,
)

DATA = "/work/shared/data"
TITANIC = f"{DATA}/titanic.csv"
PENGUINS = f"{DATA}/penguins.csv"


def _train(csv_path, target, algorithm="sgd", epochs=4, task=None, **kw) -> TrainingResult:
    return train(csv_path=csv_path, target_column=target, task=task, algorithm=algorithm, epochs=epochs, **kw)


def _rows_as_instances(csv_path, schema, n=None):
    """CSV rows -> list of JSON-like dicts restricted to the schema columns (NaN -> None)."""
    df = pd.read_csv(csv_path)
    if n is not None:
        df = df.head(n)
    names = [c["name"] for c in schema]
    out = []
    for rec in df[names].astype(object).to_dict(orient="records"):
        out.append({k: (None if (isinstance(v, float) and math.isnan(v)) else v) for k, v in rec.items()})
    return out


# Trained once per module and shared by the artifact / predict tests.
@pytest.fixture(scope="module")
def titanic_rf():
    return _train(TITANIC, "survived", algorithm="random_forest", epochs=3)


@pytest.fixture(scope="module")
def penguins_reg_sgd():
    return _train(PENGUINS, "body_mass_g", algorithm="sgd", epochs=5)


# --------------------------------------------------------------------------
# Every algorithm learns something sensible
# --------------------------------------------------------------------------

CASES = [
    # (csv, target, expected task, minimum validation score)
    (TITANIC, "survived", "classification", 0.75),
    (PENGUINS, "species", "classification", 0.90),
    (PENGUINS, "body_mass_g", "regression", 0.70),
]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("csv_path,target,task,min_score", CASES, ids=["titanic", "penguins-species", "penguins-mass"])
def test_algorithms_reach_sensible_scores(csv_path, target, task, min_score, algorithm):
    result = _train(csv_path, target, algorithm=algorithm, epochs=5)
    assert result.task == task
    assert result.algorithm == algorithm
    assert result.validation_score >= min_score, (result.metrics, result.history)
    assert math.isfinite(result.final_accuracy)
    assert len(result.history) == 5
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert result.n_train + result.n_test == len(pd.read_csv(csv_path).dropna(subset=[target]))
    assert result.n_test == pytest.approx(0.2 * (result.n_train + result.n_test), abs=1)
    if task == "classification":
        assert set(result.metrics) >= {"accuracy", "f1_macro", "precision_macro", "recall_macro", "log_loss"}
        assert result.metrics["accuracy"] == result.validation_score
        assert ("roc_auc" in result.metrics) == (len(result.classes) == 2)
        for k, v in result.metrics.items():
            assert math.isfinite(v), k
            if k != "log_loss":
                assert 0.0 <= v <= 1.0, k
    else:
        assert set(result.metrics) == {"r2", "mae", "rmse"}
        assert result.metrics["r2"] == result.validation_score
        assert result.metrics["rmse"] >= result.metrics["mae"] > 0
        assert result.classes is None
    # artifact bookkeeping
    assert result.model_size == len(result.artifact_bytes) > 0
    assert len(result.artifact_sha256) == 64
    json.dumps(result.summary())  # everything but the bytes is JSON-serialisable


def test_unknown_algorithm():
    with pytest.raises(TrainingError) as exc:
        _train(TITANIC, "survived", algorithm="xgboost")
    assert exc.value.code == "INVALID_ALGORITHM"
    assert exc.value.suggestions


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"test_size": 1.5}, {"task": "clustering"}])
def test_invalid_parameters(kwargs):
    params = {"algorithm": "sgd", "epochs": 2, **kwargs}
    with pytest.raises(TrainingError) as exc:
        _train(TITANIC, "survived", **params)
    assert exc.value.code == "INVALID_PARAMETERS"


# --------------------------------------------------------------------------
# Progress reporting
# --------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_progress_updates(algorithm):
    updates: list[ProgressUpdate] = []
    stop_calls = []

    def should_stop():
        stop_calls.append(1)
        return False

    epochs = 4
    result = _train(TITANIC, "survived", algorithm=algorithm, epochs=epochs,
                    on_progress=updates.append, should_stop=should_stop)

    assert all(isinstance(u, ProgressUpdate) for u in updates)
    # stages arrive in order, each starting exactly once
    seen_stages = []
    for u in updates:
        if not seen_stages or seen_stages[-1] != u.stage:
            seen_stages.append(u.stage)
    assert seen_stages == list(STAGES)

    # overall progress is monotonic within 0..100
    progress = [u.progress for u in updates]
    assert progress == sorted(progress)
    assert 0 <= progress[0] and progress[-1] <= 100
    assert [u.progress for u in updates if u.current_epoch in (None, 0) or u.stage != "model_training"][:3] == [0, 10, 20]

    epoch_updates = [u for u in updates if u.stage == "model_training" and u.current_epoch]
    assert [u.current_epoch for u in epoch_updates] == list(range(1, epochs + 1))
    assert all(u.total_epochs == epochs for u in epoch_updates)
    assert epoch_updates[-1].progress == pytest.approx(90.0)

    losses = [u.current_loss for u in epoch_updates]
    assert all(isinstance(x, float) and math.isfinite(x) and x >= 0 for x in losses)
    assert len(set(losses)) > 1, "loss should change between epochs"
    accs = [u.live_accuracy for u in epoch_updates]
    assert all(0.0 <= a <= 1.0 for a in accs)
    etas = [u.estimated_time_remaining for u in epoch_updates]
    assert all(e is not None and e >= 0 for e in etas)
    assert etas[-1] == pytest.approx(fitting.TAIL_SECONDS)
    assert etas[0] > etas[-1]
    assert all(u.message for u in updates)

    # history mirrors the epoch updates
    assert [h["loss"] for h in result.history] == losses
    assert [h["accuracy"] for h in result.history] == accs
    assert all(h["duration"] > 0 for h in result.history)
    assert result.training_time >= sum(h["duration"] for h in result.history)

    # callbacks are cheap to call: at most one per epoch plus one per stage
    assert len(updates) <= epochs + len(STAGES)
    assert len(stop_calls) <= epochs + len(STAGES)
    assert len(stop_calls) >= epochs


def test_loss_decreases_for_mlp():
    result = _train(PENGUINS, "species", algorithm="mlp", epochs=6)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]


def test_progress_update_to_dict():
    u = ProgressUpdate(stage="model_training", progress=50.0, current_epoch=1, total_epochs=2)
    d = u.to_dict()
    assert d["stage"] == "model_training" and d["current_epoch"] == 1
    json.dumps(d)


# --------------------------------------------------------------------------
# Cancellation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sgd", "random_forest"])
def test_cancel_after_epoch_two(algorithm):
    updates: list[ProgressUpdate] = []

    def should_stop():
        return any(u.current_epoch == 2 and u.stage == "model_training" for u in updates)

    with pytest.raises(TrainingCancelled) as exc:
        _train(TITANIC, "survived", algorithm=algorithm, epochs=10,
               on_progress=updates.append, should_stop=should_stop)
    assert exc.value.code == "CANCELLED"
    assert isinstance(exc.value, TrainingError)
    epochs_done = [u.current_epoch for u in updates if u.stage == "model_training" and u.current_epoch]
    assert epochs_done == [1, 2]
    assert "validation" not in {u.stage for u in updates}


def test_cancel_before_training_starts():
    with pytest.raises(TrainingCancelled):
        _train(TITANIC, "survived", epochs=3, should_stop=lambda: True)


# --------------------------------------------------------------------------
# Target validation and task inference
# --------------------------------------------------------------------------


def _write(tmp_path, df: pd.DataFrame, name="data.csv") -> str:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return str(path)


def test_missing_target_column_suggests_close_match():
    with pytest.raises(TrainingError) as exc:
        _train(TITANIC, "Survived")
    assert exc.value.code == "INVALID_TARGET"
    assert any("survived" in s for s in exc.value.suggestions)
    assert exc.value.to_dict()["code"] == "INVALID_TARGET"


def test_constant_target(tmp_path):
    df = pd.DataFrame({"x": range(30), "y": ["a"] * 30})
    with pytest.raises(TrainingError) as exc:
        _train(_write(tmp_path, df), "y")
    assert exc.value.code == "INVALID_TARGET"
    assert "single value" in exc.value.message


def test_target_all_missing(tmp_path):
    df = pd.DataFrame({"x": range(30), "y": [None] * 30})
    with pytest.raises(TrainingError) as exc:
        _train(_write(tmp_path, df), "y")
    assert exc.value.code == "INVALID_TARGET"


def test_class_with_single_row(tmp_path):
    df = pd.read_csv(PENGUINS)
    df = pd.concat([df, df.iloc[[0]].assign(species="Emperor")], ignore_index=True)
    with pytest.raises(TrainingError) as exc:
        _train(_write(tmp_path, df), "species")
    assert exc.value.code == "INVALID_TARGET"
    assert "Emperor" in exc.value.message


def test_too_many_classes(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=404), "y": [f"c{i % 101}" for i in range(404)]})
    with pytest.raises(TrainingError) as exc:
        _train(_write(tmp_path, df), "y")
    assert exc.value.code == "INVALID_TARGET"
    assert "101 classes" in exc.value.message


def test_continuous_target_forced_to_classification():
    with pytest.raises(TrainingError) as exc:
        _train(TITANIC, "fare", task="classification")
    assert exc.value.code == "INVALID_TARGET"
    assert any("regression" in s for s in exc.value.suggestions)


def test_non_numeric_target_for_regression():
    with pytest.raises(TrainingError) as exc:
        _train(PENGUINS, "species", task="regression")
    assert exc.value.code == "INVALID_TARGET"


def test_boolean_target_for_regression():
    with pytest.raises(TrainingError) as exc:
        _train(TITANIC, "alone", task="regression")
    assert exc.value.code == "INVALID_TARGET"


def test_infer_task_rules():
    assert infer_task(pd.Series(["a", "b", "a"])) == "classification"
    assert infer_task(pd.Series([True, False, True])) == "classification"
    assert infer_task(pd.Series([0, 1, 2, 3] * 5)) == "classification"
    assert infer_task(pd.Series([1.0, 2.0, 3.0, None])) == "classification"  # integral floats
    assert infer_task(pd.Series(range(21))) == "regression"  # > 20 distinct integers
    assert infer_task(pd.Series([0.5, 1.25, 2.0])) == "regression"
    df = pd.read_csv(TITANIC)
    assert infer_task(df["survived"]) == "classification"
    assert infer_task(df["fare"]) == "regression"
    assert infer_task(pd.read_csv(PENGUINS)["body_mass_g"]) == "regression"


def test_inferred_tasks_in_training(penguins_reg_sgd, titanic_rf):
    assert penguins_reg_sgd.task == "regression"
    assert titanic_rf.task == "classification"
    assert titanic_rf.classes == [0, 1]
    assert all(type(c) is int for c in titanic_rf.classes)


def test_boolean_target_is_classification():
    result = _train(TITANIC, "alone", epochs=2)
    assert result.task == "classification"
    assert result.classes == [False, True]


def test_memory_error_is_mapped(monkeypatch):
    def boom(*a, **kw):
        raise MemoryError()

    monkeypatch.setattr(fitting.pd, "read_csv", boom)
    with pytest.raises(TrainingError) as exc:
        _train(TITANIC, "survived")
    assert exc.value.code == "MEMORY_ERROR"
    assert any("sample" in s for s in exc.value.suggestions)


def test_bad_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("name,y\n".encode() + "".join(f"caf\xe9{i},{i % 2}\n" for i in range(30)).encode("latin-1"))
    with pytest.raises(TrainingError) as exc:
        _train(str(path), "y")
    assert exc.value.code == "INVALID_DATA"
    # with the right encoding it loads (and then finds only an identifier column)
    with pytest.raises(TrainingError) as exc:
        _train(str(path), "y", encoding="latin-1")
    assert exc.value.code == "INVALID_DATA"
    assert "No usable feature columns" in exc.value.message


# --------------------------------------------------------------------------
# Feature engineering / schema
# --------------------------------------------------------------------------


def test_titanic_feature_schema(titanic_rf):
    schema = {c["name"]: c for c in titanic_rf.feature_schema}
    assert "survived" not in schema
    assert "alive" not in schema  # a relabelled copy of the target -> dropped as leakage
    assert any(d["name"] == "alive" and "leakage" in d["reason"] for d in titanic_rf.dropped_columns)
    assert schema["age"]["type"] == "numeric"
    assert schema["fare"]["type"] == "numeric"
    assert schema["sex"]["type"] == "categorical"
    assert sorted(schema["sex"]["allowed_values"]) == ["female", "male"]
    assert schema["alone"]["type"] == "boolean"
    assert schema["adult_male"]["type"] == "boolean"
    assert all(c["required"] is True for c in schema.values())
    assert all(c["type"] in ("numeric", "categorical", "boolean", "text", "datetime") for c in schema.values())
    json.dumps(titanic_rf.feature_schema)


def test_identifiers_free_text_and_dates(tmp_path):
    rng = np.random.default_rng(1)
    n = 200
    x = rng.normal(size=n)
    df = pd.DataFrame({
        "row_id": np.arange(1000, 1000 + n),
        "uuid": [f"u-{i:05d}-{rng.integers(1e9)}" for i in range(n)],
        "comment": [f"note {rng.integers(1e6)} {'good' if i % 3 else 'bad'}" for i in range(n)],
        "colour": rng.choice(["red", "green", "blue"], size=n),
        "when": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "x": x,
        "empty": [None] * n,
        "label": np.where(x + rng.normal(scale=0.3, size=n) > 0, "pos", "neg"),
    })
    result = _train(_write(tmp_path, df), "label", algorithm="sgd", epochs=5)
    schema = {c["name"]: c["type"] for c in result.feature_schema}
    assert schema == {"colour": "categorical", "when": "datetime", "x": "numeric"}
    assert {d["name"] for d in result.dropped_columns} == {"row_id", "uuid", "comment", "empty"}
    assert result.validation_score >= 0.8
    assert result.classes == ["neg", "pos"]

    model = load_artifact(result.artifact_bytes, result.artifact_sha256)
    out = predict(model, [{"colour": "red", "when": "2024-03-01", "x": 2.5},
                          {"colour": "purple", "when": None, "x": -2.5}], result.feature_schema)
    assert out["predictions"] == ["pos", "neg"]


def test_categorical_allowed_values_capped(tmp_path):
    rng = np.random.default_rng(2)
    n = 2000
    cats = [f"cat{i}" for i in range(80)]
    df = pd.DataFrame({"c": rng.choice(cats, size=n), "x": rng.normal(size=n)})
    df["y"] = (df["x"] > 0).astype(int)
    result = _train(_write(tmp_path, df), "y", epochs=2)
    col = next(c for c in result.feature_schema if c["name"] == "c")
    assert col["type"] == "categorical"
    assert len(col["allowed_values"]) == 50


# --------------------------------------------------------------------------
# Artifacts and prediction
# --------------------------------------------------------------------------


def test_artifact_round_trip_classifier(titanic_rf):
    result = titanic_rf
    loaded = load_artifact(result.artifact_bytes, result.artifact_sha256)
    instances = _rows_as_instances(TITANIC, result.feature_schema, n=60)
    assert check_instances(instances, result.feature_schema) == []

    from_loaded = predict(loaded, instances, result.feature_schema)
    from_memory = predict(result.pipeline, instances, result.feature_schema)
    assert from_loaded == from_memory
    json.dumps(from_loaded)

    preds = from_loaded["predictions"]
    assert len(preds) == 60 and set(preds) <= {0, 1}
    assert all(type(p) is int for p in preds)
    for row in from_loaded["probabilities"]:
        assert set(row) == {"0", "1"}
        assert sum(row.values()) == pytest.approx(1.0)
    # predictions agree with the class of highest probability
    assert preds == [int(max(r, key=r.get)) for r in from_loaded["probabilities"]]
    # and the model is actually good on these (mostly training) rows
    truth = pd.read_csv(TITANIC)["survived"].head(60).tolist()
    assert np.mean(np.array(preds) == np.array(truth)) >= 0.75


def test_the_forest_fast_path_matches_sklearn(titanic_rf):
    """predict() computes a random forest's probabilities itself (no joblib per tree): the same
    numbers as sklearn's predict and predict_proba, for every row of titanic, with an odd row out."""
    from training.trainer.features import _coerce_frame

    result = titanic_rf
    instances = _rows_as_instances(TITANIC, result.feature_schema)
    instances[0] = {**instances[0], "age": None, "fare": None}
    out = predict(result.pipeline, instances, result.feature_schema)
    frame = pd.DataFrame(instances, columns=[c["name"] for c in result.feature_schema])
    X = _coerce_frame(frame, result.feature_schema)
    assert out["predictions"] == result.pipeline.predict(X).tolist()
    expected = result.pipeline.predict_proba(X)
    got = np.array([[row[str(c)] for c in result.pipeline.classes_] for row in out["probabilities"]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_artifact_round_trip_regressor(penguins_reg_sgd):
    result = penguins_reg_sgd
    loaded = load_artifact(result.artifact_bytes, result.artifact_sha256)
    instances = _rows_as_instances(PENGUINS, result.feature_schema)
    a = predict(loaded, instances, result.feature_schema)
    b = predict(result.pipeline, instances, result.feature_schema)
    assert a == b
    assert "probabilities" not in a
    assert all(isinstance(p, float) for p in a["predictions"])
    # predictions are in grams, not on the standardised scale
    assert 2500 < np.mean(a["predictions"]) < 6000
    json.dumps(a)


def test_predict_accepts_strings_and_none(penguins_reg_sgd):
    schema = penguins_reg_sgd.feature_schema
    model = penguins_reg_sgd.pipeline
    inst = {"species": "Gentoo", "island": "Biscoe", "bill_length_mm": "47.5",
            "bill_depth_mm": None, "flipper_length_mm": 217, "sex": None}
    out = predict(model, [inst], schema)
    assert len(out["predictions"]) == 1 and math.isfinite(out["predictions"][0])


def test_tampered_artifact_rejected(titanic_rf):
    data = bytearray(titanic_rf.artifact_bytes)
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ArtifactIntegrityError) as exc:
        load_artifact(bytes(data), titanic_rf.artifact_sha256)
    assert exc.value.code == "ARTIFACT_INTEGRITY"
    with pytest.raises(ArtifactIntegrityError):
        load_artifact(titanic_rf.artifact_bytes, "0" * 64)
    with pytest.raises(ArtifactIntegrityError):
        load_artifact(titanic_rf.artifact_bytes, "")


def test_check_instances_messages(titanic_rf):
    schema = titanic_rf.feature_schema
    good = _rows_as_instances(TITANIC, schema, n=3)

    missing = dict(good[0])
    del missing["age"]
    extra = dict(good[1], favourite_colour="blue")
    mistyped = dict(good[2], fare="abc", alone="maybe")
    nulls = {name: None for name in good[0]}

    errors = check_instances([missing, extra, mistyped, nulls], schema)
    assert "instance 0: missing column 'age'" in errors
    assert "instance 1: unexpected column 'favourite_colour'" in errors
    assert "instance 2: column 'fare' must be a number, got 'abc'" in errors
    assert any(e.startswith("instance 2: column 'alone' must be a boolean") for e in errors)
    assert not any(e.startswith("instance 3") for e in errors)  # None is always allowed
    assert len(errors) == 4

    assert check_instances([], schema) == ["instances must contain at least one object"]
    assert check_instances("nope", schema) == ["instances must be a list of objects"]
    assert check_instances([42], schema)[0].startswith("instance 0: expected an object")
    bool_number = dict(good[0], fare=True)
    assert check_instances([bool_number], schema) == ["instance 0: column 'fare' must be a number, got True"]

    with pytest.raises(InvalidInputError) as exc:
        predict(titanic_rf.pipeline, [missing], schema)
    assert exc.value.code == "INVALID_INPUT"
    assert exc.value.errors == ["instance 0: missing column 'age'"]
    assert exc.value.to_dict()["errors"] == exc.value.errors


def test_unknown_category_is_tolerated(titanic_rf):
    inst = _rows_as_instances(TITANIC, titanic_rf.feature_schema, n=1)[0]
    inst["embark_town"] = "Atlantis"
    assert check_instances([inst], titanic_rf.feature_schema) == []
    out = predict(titanic_rf.pipeline, [inst], titanic_rf.feature_schema)
    assert out["predictions"][0] in (0, 1)


# --------------------------------------------------------------------------
# Internals worth pinning down
# --------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_incremental_oob_matches_sklearn(task):
    """The per-epoch random-forest loss re-derives bootstrap samples; it must agree with sklearn's OOB."""
    from sklearn.datasets import make_classification, make_regression
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    if task == "classification":
        X, y = make_classification(n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=0)
        forest = RandomForestClassifier(n_estimators=0, warm_start=True, random_state=3)
    else:
        X, y = make_regression(n_samples=300, n_features=6, noise=5.0, random_state=0)
        forest = RandomForestRegressor(n_estimators=0, warm_start=True, random_state=3)
    rows = np.arange(len(y))
    acc = fitting._OOBAccumulator(task, len(y), rows)
    for epoch in (1, 2, 3):
        forest.set_params(n_estimators=10 * epoch)
        forest.fit(X, y)
        acc.add_new_trees(forest, X)
    reference = forest.set_params(oob_score=True, warm_start=False).fit(X, y)  # same seeds -> same trees
    ok = acc.counts > 0
    ours = acc.sums[ok] / acc.counts[ok, None]
    if task == "classification":
        np.testing.assert_allclose(ours, reference.oob_decision_function_[ok], atol=1e-12)
    else:
        np.testing.assert_allclose(ours[:, 0], reference.oob_prediction_[ok], rtol=1e-10)
