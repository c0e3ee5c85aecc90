"""Dataset services on real files: upload, validation, profiling, edits, jobs (run in-process)."""

import os

import pandas as pd
import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from datasets import selectors, services
from datasets.models import Dataset, ProcessingJob

pytestmark = pytest.mark.django_db


def make(user, path, **fields) -> Dataset:
    dataset = services.dataset_create_from_upload(
        user=user, uploaded_file=SimpleUploadedFile(path.name, path.read_bytes()), **fields
    )
    services.dataset_ingest(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    return dataset


def test_upload_is_stored_under_a_generated_name(user, titanic_path):
    dataset = services.dataset_create_from_upload(
        user=user, uploaded_file=SimpleUploadedFile("../../etc/passwd.csv", titanic_path.read_bytes()), name=""
    )
    assert dataset.status == Dataset.Status.VALIDATING
    assert dataset.file.name.startswith("datasets/") and "passwd" not in dataset.file.name
    assert dataset.original_filename == "passwd.csv" and dataset.name == "passwd"


def test_titanic_becomes_ready_with_profile_quality_and_preview(user, titanic_path):
    dataset = make(user, titanic_path, target_column="survived")
    assert dataset.status == Dataset.Status.READY, dataset.errors
    assert dataset.row_count == 891 and dataset.column_count == len(dataset.column_names)
    profile = selectors.dataset_profile(dataset)
    assert profile.rows == 891 and profile.target.name == "survived"
    assert profile.column("age").missing_count == 177
    assert profile.column("fare").type == "numeric"
    assert 0 <= dataset.quality_score == selectors.dataset_quality(dataset).quality_score <= 100
    assert any("age" in finding for finding in selectors.dataset_quality(dataset).findings)
    assert len(dataset.preview["rows"]) == 50 and dataset.preview["columns"] == dataset.column_names


def test_ingest_publishes_validation_quality_and_processed_events_in_order(
    user, penguins_path, django_capture_on_commit_callbacks, events
):
    dataset = services.dataset_create_from_upload(
        user=user, uploaded_file=SimpleUploadedFile("penguins.csv", penguins_path.read_bytes())
    )
    with django_capture_on_commit_callbacks(execute=True):  # the events go out on commit
        services.dataset_ingest(dataset_id=dataset.pk)
    sent = [e for e in events() if e.get("dataset_id") == dataset.pk]
    types = [e["type"] for e in sent]
    assert types.index("file_validated") < types.index("quality_assessment") < types.index("dataset_processed")
    validated = events.expect("file_validated", dataset_id=dataset.pk, status="success", rows=344, columns=7,
                              filename="penguins.csv")
    assert validated["file_size"] > 0
    events.expect("dataset_processed", dataset_id=dataset.pk, status="ready", data={"rows": 344})
    events.expect("quality_assessment", dataset_id=dataset.pk,
                  quality_score=Dataset.objects.get(pk=dataset.pk).quality_score)


def test_invalid_file_ends_invalid_with_its_errors(user, django_capture_on_commit_callbacks, events):
    dataset = services.dataset_create_from_upload(user=user, uploaded_file=SimpleUploadedFile("x.csv", b"a,b\n1,2,3\n"))
    with django_capture_on_commit_callbacks(execute=True):
        services.dataset_ingest(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.INVALID and dataset.errors
    validated = [e for e in events() if e["type"] == "file_validated"][0]
    assert validated["status"] == "error" and validated["error"]


def test_unknown_target_column_is_invalid(user, titanic_path):
    dataset = make(user, titanic_path, target_column="nope")
    assert dataset.status == Dataset.Status.INVALID
    assert any("nope" in e for e in dataset.errors)


def test_ingest_runs_once_even_if_delivered_twice(user, penguins_path):
    dataset = make(user, penguins_path)
    profiled = dataset.profiling_time
    services.dataset_ingest(dataset_id=dataset.pk)  # a second delivery
    dataset.refresh_from_db()
    assert dataset.profiling_time == profiled and dataset.status == Dataset.Status.READY


def test_update_checks_the_target_column(user, penguins_path, django_capture_on_commit_callbacks, events):
    dataset = make(user, penguins_path)
    with pytest.raises(ValidationError):
        services.dataset_update(user=None, dataset=dataset, target_column="no_such_column")
    with django_capture_on_commit_callbacks(execute=True):
        services.dataset_update(user=None, dataset=dataset, name="Penguins", target_column="species")
    dataset.refresh_from_db()
    assert dataset.name == "Penguins" and dataset.target_column == "species"
    events.expect("dataset_updated", dataset_id=dataset.pk, name="Penguins", status="ready")


def test_delete_removes_the_row_and_the_file(user, penguins_path, django_capture_on_commit_callbacks, events):
    dataset = make(user, penguins_path)
    path, dataset_id = dataset.file.path, dataset.pk
    with django_capture_on_commit_callbacks(execute=True):
        services.dataset_delete(user=None, dataset=dataset)
    events.expect("dataset_deleted", dataset_id=dataset_id, name="penguins")
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    import os

    assert not os.path.exists(path)


@pytest.mark.parametrize(
    "operation, options, outputs",
    [
        ("clean", {"missing": "drop_rows"}, ["cleaned"]),
        ("clean", {"missing": "fill_median", "drop_duplicates": True}, ["cleaned"]),
        ("split", {"test_ratio": 0.25, "stratify": True}, ["train", "test"]),
        ("scale", {"method": "minmax"}, ["scaled"]),
    ],
)
def test_processing_jobs_produce_ready_child_datasets(user, penguins_path, operation, options, outputs):
    dataset = make(user, penguins_path, target_column="species")
    job = services.processing_job_create(dataset=dataset, operation=operation, options=options, user=user)
    assert job.status == "queued"
    stored = set(default_storage.listdir("datasets")[1])
    services.processing_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.progress == 100.0
    labels = [o["label"] for o in job.result["outputs"]]
    assert labels == outputs
    for output in job.result["outputs"]:
        child = Dataset.objects.get(pk=output["dataset_id"])
        assert child.status == Dataset.Status.READY and child.parent == dataset and child.source_job == job
        assert [d.pk for d in child.lineage()] == [dataset.pk, child.pk]
        assert len(pd.read_csv(child.file.path)) == output["rows"] == child.row_count
    # each output was moved into its dataset's file: nothing else is left in the storage
    children = {os.path.basename(d.file.name) for d in Dataset.objects.filter(source_job=job)}
    assert set(default_storage.listdir("datasets")[1]) - stored == children


@pytest.mark.parametrize("move", [True, False])
def test_a_file_is_moved_into_its_dataset_only_when_asked(user, tmp_path, move):
    path = default_storage.path(f"datasets/output-{move}.csv") if move else str(tmp_path / "demo.csv")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("a,b\n1,2\n3,4\n")
    dataset = services._dataset_from_file(path=path, name="x", project=services._create_project(user, None), user=user,
                                          created_by=user, ingest=False, move=move)
    assert os.path.exists(path) is not move
    assert open(dataset.file.path).read() == "a,b\n1,2\n3,4\n" and dataset.file.path != path


def test_split_ratio_and_stratification(user, penguins_path):
    dataset = make(user, penguins_path, target_column="species")
    job = services.processing_job_create(user=None, dataset=dataset, operation="split", options={"test_ratio": 0.2, "stratify": True})
    services.processing_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.result["train_rows"] + job.result["test_rows"] == 344
    assert abs(job.result["test_rows"] - 69) <= 3


def test_clean_fill_leaves_no_missing_values(user, titanic_path):
    dataset = make(user, titanic_path)
    job = services.processing_job_create(user=None, dataset=dataset, operation="clean", options={"missing": "fill_mode"})
    services.processing_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.result["missing_before"] > 0 and job.result["missing_after"] == 0


@pytest.mark.parametrize(
    "operation, options, message",
    [
        ("clean", {"missing": "teleport"}, "missing"),
        ("clean", {"missing": "fill_constant"}, "fill_value"),
        ("split", {"test_ratio": 1.5}, "test_ratio"),
        ("split", {"colour": "red"}, "colour"),
        ("scale", {"columns": ["nope"]}, "nope"),
    ],
)
def test_bad_job_options_are_refused_naming_the_option(user, penguins_path, operation, options, message):
    dataset = make(user, penguins_path)
    with pytest.raises(ValidationError) as info:
        services.processing_job_create(user=None, dataset=dataset, operation=operation, options=options)
    assert message in str(info.value)
    assert not ProcessingJob.objects.exists()


def test_jobs_need_a_ready_dataset(user):
    dataset = services.dataset_create_from_upload(user=user, uploaded_file=SimpleUploadedFile("x.csv", b"a\n1\n"))
    with pytest.raises(ValidationError, match="ready"):
        services.processing_job_create(user=None, dataset=dataset, operation="clean", options={})


def test_cancel_a_queued_job_ends_it_at_once_and_the_task_does_nothing(user, penguins_path):
    dataset = make(user, penguins_path)
    job = services.processing_job_create(user=None, dataset=dataset, operation="clean", options={})
    services.processing_job_cancel(user=None, job=job)
    job.refresh_from_db()
    assert job.status == "cancelled"
    services.processing_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "cancelled" and job.result is None
    with pytest.raises(ValidationError):
        services.processing_job_cancel(user=None, job=job)


def test_reaper_fails_jobs_and_datasets_whose_worker_died(user, penguins_path):
    from datetime import timedelta

    from django.utils import timezone

    dataset = make(user, penguins_path)
    job = services.processing_job_create(user=None, dataset=dataset, operation="clean", options={})
    old = timezone.now() - timedelta(minutes=5)
    ProcessingJob.objects.filter(pk=job.pk).update(status="running", heartbeat_at=old, started_at=old)
    stuck = services.dataset_create_from_upload(user=user, uploaded_file=SimpleUploadedFile("y.csv", b"a\n1\n"))
    Dataset.objects.filter(pk=stuck.pk).update(status="profiling", heartbeat_at=old)
    assert services.datasets_reap_stale() == 2
    job.refresh_from_db()
    stuck.refresh_from_db()
    assert job.status == "failed" and "worker" in job.error
    assert stuck.status == "invalid" and "Re-profile" in stuck.errors[0]


def hostile_csv() -> bytes:
    """100 column names of 100,000 characters each, as a logged-in user once uploaded."""
    names = [f"{i}" + "n" * (100_000 - len(str(i))) for i in range(100)]
    return (",".join(names) + "\n" + ",".join("1" * 100) + "\n").encode()


def test_a_hostile_header_is_invalid_and_its_events_stay_small(user, django_capture_on_commit_callbacks, events,
                                                                settings):
    dataset = services.dataset_create_from_upload(user=user, uploaded_file=SimpleUploadedFile("h.csv", hostile_csv()))
    with django_capture_on_commit_callbacks(execute=True):
        services.dataset_ingest(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.INVALID and dataset.column_count == 100
    assert dataset.errors[0] == "Column 1's name is 100,000 characters long; at most 255 are allowed."
    assert max(map(len, dataset.column_names)) <= 255
    import json

    from mlops_dashboard.events import bus

    texts = [text for _, _, text in bus.read_after(events.start).events]
    print("frame sizes:", sorted(map(len, texts)))
    assert texts and max(map(len, texts)) <= 32 * 1024  # well under a frame: capped at the source, not cut to fit
    validated = events.expect("file_validated", dataset_id=dataset.pk, status="error", columns=100)
    assert "Column 3's name is 100,000 characters long" in validated["error"]
    assert sum(len(json.dumps(e)) for e in events()) < 100_000
