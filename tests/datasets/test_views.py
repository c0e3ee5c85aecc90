"""The datasets pages: login required, what a user sees for ready / invalid / busy datasets, 404s."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from datasets import services
from datasets.models import Dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def make(user, path, *, ingest=True, **fields) -> Dataset:
    dataset = services.dataset_create_from_upload(
        user=user, uploaded_file=SimpleUploadedFile(path.name, path.read_bytes()), **fields
    )
    if ingest:
        services.dataset_ingest(dataset_id=dataset.pk)
        dataset.refresh_from_db()
    return dataset


@pytest.fixture
def penguins(user, penguins_path):
    dataset = make(user, penguins_path, name="Penguins", target_column="species")
    assert dataset.status == Dataset.Status.READY, dataset.errors
    return dataset


def text(response) -> str:
    """The page's visible text, roughly: tags dropped, whitespace collapsed."""
    html = response.content.decode()
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


# --- access -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/datasets/", "/datasets/1/", "/datasets/1/row/", "/datasets/jobs/1/row/"])
def test_pages_redirect_anonymous_visitors_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("path", ["/datasets/999999/", "/datasets/999999/row/", "/datasets/jobs/999999/row/"])
def test_unknown_ids_are_404(logged_in, path):
    assert logged_in.get(path).status_code == 404


# --- the list -----------------------------------------------------------------------------------------


def test_index_without_datasets_shows_the_upload_form_and_the_empty_state(logged_in):
    response = logged_in.get("/datasets/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'aria-current="page"' in html and 'href="/datasets/"' in html  # the nav marks Datasets
    assert 'id="upload-file"' in html and 'type="file"' in html and 'id="dropzone"' in html
    for field in ('name="name"', 'name="target_column"', 'name="description"'):
        assert field in html
    assert re.search(r'<div class="empty" id="datasets-empty"\s*>', html)  # shown (not hidden)
    assert "No datasets yet" in text(response)
    assert "js/pages/datasets.js" in html and 'id="datasets-data"' in html


def test_index_lists_datasets_from_the_database(logged_in, user, penguins, titanic_path):
    busy = make(user, titanic_path, name="Titanic", ingest=False)
    response = logged_in.get("/datasets/")
    html = response.content.decode()
    assert re.search(r'id="datasets-empty"\s+hidden', html)
    row = re.search(rf'<tr data-dataset-id="{penguins.pk}".*?</tr>', html, flags=re.S).group(0)
    assert f'href="/datasets/{penguins.pk}/"' in row and ">Penguins<" in row
    assert 'data-status="ready"' in row and ">Ready<" in row
    assert ">344<" in row and ">7<" in row  # rows, columns
    assert f"{penguins.quality_score:.1f}" in row
    busy_row = re.search(rf'<tr data-dataset-id="{busy.pk}".*?</tr>', html, flags=re.S).group(0)
    assert ">Validating<" in busy_row
    # Newest first.
    assert html.index(f'data-dataset-id="{busy.pk}"') < html.index(f'data-dataset-id="{penguins.pk}"')
    assert "2 datasets" in text(response)


def test_row_fragment_is_one_row_with_its_lineage(logged_in, user, penguins):
    child = services.dataset_create_from_file(
        path=penguins.file.path, name="Penguins (train)", user=user, parent=penguins, ingest=False
    )
    response = logged_in.get(f"/datasets/{child.pk}/row/")
    assert response.status_code == 200
    html = response.content.decode().strip()
    assert html.count("<tr") == 1 and "<html" not in html
    assert f'href="/datasets/{penguins.pk}/"' in html and "of" in html and ">Penguins<" in html


# --- one dataset ------------------------------------------------------------------------------------


def test_ready_dataset_shows_summary_quality_profile_charts_preview_and_job_form(logged_in, penguins):
    response = logged_in.get(f"/datasets/{penguins.pk}/")
    assert response.status_code == 200
    html, visible = response.content.decode(), text(response)
    assert "<h1" in html and "Penguins" in visible and ">Ready<" in html
    for label in ("Rows", "Columns", "Duplicate rows", "Missing cells", "Memory", "Quality score"):
        assert label in visible
    assert f"{penguins.quality_score:.1f}" in visible
    for part in ("Completeness", "Uniqueness", "Validity", "Consistency"):
        assert part in visible
    # The profile table: one row per column, with its type and statistics.
    table = re.search(r'<table class="table profile-table".*?</table>', html, flags=re.S).group(0)
    assert table.count('<tr data-column="') == 7
    assert 'data-column="bill_length_mm"' in table and ">numeric<" in table and ">categorical<" in table
    assert "32.1" in table and "59.6" in table  # bill_length_mm min and max
    assert "Adelie" in table and "target" in table  # species' top value, marked as the target
    # One chart canvas per column, drawn from the json_script data.
    assert html.count("data-chart-index=") == 7
    assert "vendor/chart.js/chart.umd.min.js" in html and "js/pages/datasets_detail.js" in html
    assert html.index("chart.umd.min.js") < html.index("datasets_detail.js")
    # The preview: the first rows of the file.
    preview = re.search(r'<table class="table table--compact preview-table".*?</table>', html, flags=re.S).group(0)
    assert preview.count("<tr>") == 1 + len(penguins.preview["rows"])  # header + rows
    assert "Torgersen" in preview and "39.1" in preview
    # The jobs form, with each operation.
    assert 'id="job-form"' in html
    for operation in ("clean", "split", "scale"):
        assert f'value="{operation}"' in html
    assert "No processing jobs yet" in visible
    assert "Derived datasets" in visible


def test_invalid_dataset_lists_its_errors(logged_in, user):
    bad = SimpleUploadedFile("bad.csv", b"")
    dataset = services.dataset_create_from_upload(user=user, uploaded_file=bad, name="Broken")
    services.dataset_ingest(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.INVALID and dataset.errors
    response = logged_in.get(f"/datasets/{dataset.pk}/")
    assert response.status_code == 200
    visible = text(response)
    assert "This file could not be used" in visible and ">Invalid<" in response.content.decode()
    for error in dataset.errors:
        assert " ".join(error.split()) in visible
    assert 'id="profile-table"' not in response.content.decode()
    assert 'id="job-form"' not in response.content.decode()
    assert "Jobs need a ready dataset" in visible


def test_busy_dataset_shows_a_live_indicator(logged_in, user, penguins_path):
    dataset = make(user, penguins_path, name="Still working", ingest=False)
    response = logged_in.get(f"/datasets/{dataset.pk}/")
    html, visible = response.content.decode(), text(response)
    assert 'id="dataset-busy"' in html and "Validating penguins.csv" in visible
    assert 'data-step="validating" data-state="current"' in html
    assert 'id="profile-table"' not in html and 'id="job-form"' not in html
    assert 'data-status="validating"' in html


def test_lineage_and_jobs_with_outputs(logged_in, user, penguins):
    job = services.processing_job_create(dataset=penguins, operation="split", options={"test_ratio": 0.2}, user=user)
    services.processing_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    outputs = job.result["outputs"]
    assert [o["label"] for o in outputs] == ["train", "test"]

    response = logged_in.get(f"/datasets/{penguins.pk}/")
    html, visible = response.content.decode(), text(response)
    row = re.search(rf'<tr data-job-id="{job.pk}".*?</tr>', html, flags=re.S).group(0)
    assert ">Succeeded<" in row and "20% test" in row
    for out in outputs:
        assert f'href="/datasets/{out["dataset_id"]}/"' in row
    assert "Penguins (train)" in visible and "Penguins (test)" in visible  # lineage children

    child = Dataset.objects.get(pk=outputs[0]["dataset_id"])
    child_page = logged_in.get(f"/datasets/{child.pk}/").content.decode()
    chain = re.search(r'<ol class="lineage".*?</ol>', child_page, flags=re.S).group(0)
    assert f'href="/datasets/{penguins.pk}/"' in chain and "split" in chain

    fragment = logged_in.get(f"/datasets/jobs/{job.pk}/row/").content.decode().strip()
    assert fragment.startswith("<tr") and fragment.count("<tr") == 1 and "output-link" in fragment


def test_ready_dataset_page_offers_anomaly_detection_and_lists_the_most_anomalous_rows(client, user, penguins_path):
    from monitoring import services as monitoring_services

    client.force_login(user)
    dataset = services.dataset_create_from_upload(
        user=user, uploaded_file=SimpleUploadedFile("penguins.csv", penguins_path.read_bytes()))
    services.dataset_ingest(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    page = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert 'id="dataset-anomalies"' in page and "Anomalous rows" in page
    detection = monitoring_services.anomaly_detection_start(dataset=dataset, contamination=0.05, user=user)
    monitoring_services.anomaly_detection_run(detection_id=detection.pk)
    page = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "Anomalous rows" in page and "Succeeded" in page
