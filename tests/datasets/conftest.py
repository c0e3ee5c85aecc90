from pathlib import Path

import pytest

from tests.data import shared_csv


@pytest.fixture
def titanic_path():
    return shared_csv("titanic.csv")


@pytest.fixture
def penguins_path():
    return shared_csv("penguins.csv")


@pytest.fixture
def upload(client):
    """upload(path_or_bytes, filename=..., **fields) -> response, through the real API view."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    def _upload(content, filename="data.csv", **fields):
        if isinstance(content, Path):
            filename, content = content.name, content.read_bytes()
        return client.post("/api/datasets/", {"file": SimpleUploadedFile(filename, content, "text/csv"), **fields})

    return _upload


@pytest.fixture
def stray_files(settings):
    """Dataset files written under MEDIA_ROOT during the test that no Dataset row points to."""
    root = Path(settings.MEDIA_ROOT) / "datasets"

    def on_disk():
        return {f"datasets/{p.name}" for p in root.glob("*")} if root.exists() else set()

    before = on_disk()

    def _stray():
        from datasets.models import Dataset

        return sorted(on_disk() - before - set(Dataset.objects.values_list("file", flat=True)))

    return _stray
