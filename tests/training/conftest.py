"""Fixtures of the training tests: ready datasets (real CSVs copied into MEDIA_ROOT), a bigger
generated CSV for long trainings, and trained model versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.conf import settings
from threadpoolctl import threadpool_limits

from tests.data import shared_csv as csv_source


def pytest_ignore_collect(collection_path, config):
    # test_trainer.py also runs without Django (`-p no:django`); the other modules need it.
    if collection_path.name.startswith("test_") and collection_path.name != "test_trainer.py" \
            and not config.pluginmanager.hasplugin("django"):
        return True
    return None


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_training():
    """Train with the workers' thread budget (TRAINING_THREADS=1): OpenMP's threads fighting for a
    busy machine's cores make gradient boosting many times slower, not faster."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture
def make_dataset(db):
    """make_dataset(csv="titanic.csv", **fields) -> a ready Dataset over that CSV."""
    from tests.factories import DatasetFactory

    return DatasetFactory


@pytest.fixture
def titanic(make_dataset):
    return make_dataset(csv="titanic.csv", target_column="survived")


@pytest.fixture
def penguins(make_dataset):
    return make_dataset(csv="penguins.csv", target_column="species")


@pytest.fixture(scope="session")
def big_csv(tmp_path_factory) -> Path:
    """300,000 rows of a noisy nonlinear problem: an mlp epoch takes about half a second or more, over
    twice the progress coalescing interval (0.25 s), so every epoch gets its own row write and event."""
    rng = np.random.default_rng(7)
    n = 300_000
    X = rng.normal(size=(n, 10))
    y = (X[:, 0] + X[:, 1] * X[:, 2] - np.sin(X[:, 3]) + rng.normal(scale=0.7, size=n) > 0).astype(int)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    df["colour"] = rng.choice(["red", "green", "blue", "amber"], size=n)
    df["label"] = y
    path = tmp_path_factory.mktemp("training") / "big.csv"
    df.to_csv(path, index=False, float_format="%.4f")
    return path


@pytest.fixture
def big_dataset(make_dataset, big_csv):
    return make_dataset(csv=big_csv, name="big", target_column="label")


@pytest.fixture
def write_csv(tmp_path):
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


@pytest.fixture
def train_version(user):
    """train_version(dataset, algorithm="sgd", epochs=5, name="", user=alice) -> a ModelVersion, trained
    in-process, started by `user` (in the dataset's project)."""
    from training import services

    def _train(dataset, *, algorithm="sgd", epochs=5, name="", target=None, by=None):
        job = services.training_job_start(
            user=by or user, dataset=dataset, target_column=target or dataset.target_column, algorithm=algorithm,
            epochs=epochs, name=name, enqueue=False,
        )
        version = services.training_job_run(job_id=job.pk)
        assert version is not None, job.__class__.objects.get(pk=job.pk).error
        return version

    return _train



@pytest.fixture
def clean_prediction_counters(redis_client):
    """The Redis side of prediction counting starts empty (the database is emptied per test too)."""
    def purge():
        for key in redis_client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:training:*"):
            redis_client.delete(key)

    purge()
    yield
    purge()


def enqueued(callbacks) -> int:
    """How many of these on-commit callbacks send a training job to the broker."""
    return sum(cb.__qualname__.startswith("training_job_start.") for cb in callbacks)


def titanic_instances(version, n: int | None = None) -> tuple[list[dict], list]:
    """Rows of titanic.csv as prediction instances (schema columns only, NaN → None) and their labels."""
    df = pd.read_csv(csv_source("titanic.csv"))
    if n is not None:
        df = df.head(n)
    names = [c["name"] for c in version.feature_schema]
    instances = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in df[names].astype(object).to_dict(orient="records")
    ]
    return instances, df[version.target_column].tolist()
