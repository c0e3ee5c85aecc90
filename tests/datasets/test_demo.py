import pytest

from datasets import demo, services
from datasets.models import Dataset

pytestmark = pytest.mark.django_db


def test_demo_datasets_load_once_through_the_upload_path_and_become_ready():
    created = demo.load()
    assert {d.name for d in created} == {name for name, *_ in demo.DEMOS}
    assert demo.load() == []  # idempotent
    for dataset in created:
        assert dataset.status == "validating" and dataset.file.name.startswith("datasets/")
        services.dataset_ingest(dataset_id=dataset.pk)
        dataset.refresh_from_db()
        assert dataset.status == "ready", dataset.errors
        assert dataset.target_column in dataset.column_names
    assert Dataset.objects.get(name="Iris (demo)").row_count == 150
