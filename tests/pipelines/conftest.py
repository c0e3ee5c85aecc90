"""Fixtures of the pipelines tests: the ready breast-cancer demo dataset (made as datasets.demo
makes it, then validated and profiled in-process), a big generated dataset for long trainings,
and the demo pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines import demo


def ready_dataset(path, *, name: str, target: str, project=None):
    """A dataset over this CSV in `project` (default: the default one), validated and profiled
    in-process by the datasets app's own ingest."""
    from datasets import services
    from tests.factories import DatasetFactory, ProjectFactory

    dataset = DatasetFactory(csv=str(path), name=name, target_column=target, project=project or ProjectFactory(),
                             status="validating", column_names=[], column_count=None, row_count=None)
    services.dataset_ingest(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    assert dataset.status == "ready", dataset.errors
    return dataset


@pytest.fixture(scope="session")
def breast_cancer_csv(tmp_path_factory):
    """The demo's CSV, written the way datasets.demo writes it."""
    from sklearn import datasets as sk

    frame = sk.load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_").replace("(", "").replace(")", "") for c in frame.columns]
    path = tmp_path_factory.mktemp("pipelines") / "breast_cancer.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def breast_cancer(transactional_db, breast_cancer_csv):
    return ready_dataset(breast_cancer_csv, name=demo.DATASET, target="target")


@pytest.fixture(scope="session")
def big_csv(tmp_path_factory):
    """60,000 rows of a noisy nonlinear problem: an mlp epoch takes a good fraction of a second."""
    rng = np.random.default_rng(11)
    n = 60_000
    X = rng.normal(size=(n, 10))
    y = (X[:, 0] + X[:, 1] * X[:, 2] - np.sin(X[:, 3]) + rng.normal(scale=0.7, size=n) > 0).astype(int)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    df["label"] = y
    path = tmp_path_factory.mktemp("pipelines-big") / "big.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def big_dataset(transactional_db, big_csv):
    return ready_dataset(big_csv, name="big", target="label")


@pytest.fixture
def demo_pipeline(breast_cancer):
    """The demo pipeline (made by the system, as bootstrap makes it): runs act as who starts them."""
    pipeline = demo.load()
    assert pipeline is not None
    return pipeline


@pytest.fixture
def no_enqueue(monkeypatch):
    """Runs are not sent to Celery: the test executes them in-process. Returns the ids that would be."""
    from pipelines import services

    sent = []
    monkeypatch.setattr(services, "_run_enqueue", lambda *, run_id: sent.append(run_id))
    return sent



def token_for(user) -> str:
    from tests.factories import api_token_for

    return api_token_for(user)


