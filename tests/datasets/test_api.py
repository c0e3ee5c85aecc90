"""The datasets REST API: upload, read, edit, delete, statistics, jobs; clear 4xx for bad input."""

import pytest

from datasets import services
from datasets.models import Dataset, ProcessingJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def ready(dataset_id):
    services.dataset_ingest(dataset_id=dataset_id)
    return Dataset.objects.get(pk=dataset_id)


def test_upload_answers_201_validating_at_once(logged_in, upload, titanic_path):
    response = upload(titanic_path, name="Titanic", target_column="survived", description="passengers")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "validating" and body["name"] == "Titanic" and body["target_column"] == "survived"
    assert body["original_filename"] == "titanic.csv" and body["file_size"] == titanic_path.stat().st_size
    assert Dataset.objects.get(pk=body["id"]).created_by.username == "alice"


def test_upload_without_a_file_is_400_and_stores_nothing(logged_in, stray_files):
    response = logged_in.post("/api/datasets/", {"name": "x"})
    assert response.status_code == 400
    assert "file" in response.json()["errors"]
    assert not Dataset.objects.exists() and stray_files() == []


def test_upload_over_the_limit_is_413(logged_in, upload, settings):
    settings.DATASET_MAX_UPLOAD_MB = 1
    response = upload(b"a,b\n" + b"1,2\n" * 300_000)
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    assert "1 MB" in response.json()["detail"]
    assert not Dataset.objects.exists()


def test_anonymous_upload_is_refused(client, upload, titanic_path):
    assert upload(titanic_path).status_code in (401, 403)
    assert not Dataset.objects.exists()


def test_detail_and_statistics_return_the_profile(logged_in, upload, penguins_path):
    dataset = ready(upload(penguins_path).json()["id"])
    detail = logged_in.get(f"/api/datasets/{dataset.pk}/").json()
    assert detail["status"] == "ready" and detail["rows"] == 344 and detail["columns"] == 7
    assert detail["profile"]["rows"] == 344 and detail["quality"]["quality_score"] == detail["quality_score"]
    stats = logged_in.get(f"/api/datasets/{dataset.pk}/statistics/").json()
    assert len(stats["profile"]["column_profiles"]) == 7 and len(stats["preview"]["rows"]) == 50
    listing = logged_in.get("/api/datasets/").json()
    assert listing["count"] == 1 and "profile" not in listing["results"][0]


def test_patch_edits_name_and_target_and_rejects_unknown_columns(logged_in, upload, penguins_path):
    dataset = ready(upload(penguins_path).json()["id"])
    ok = logged_in.patch(f"/api/datasets/{dataset.pk}/", {"name": "P", "target_column": "species"},
                         content_type="application/json")
    assert ok.status_code == 200 and ok.json()["target_column"] == "species"
    bad = logged_in.patch(f"/api/datasets/{dataset.pk}/", {"target_column": "wings"}, content_type="application/json")
    assert bad.status_code == 400 and "wings" in bad.json()["detail"]
    assert Dataset.objects.get(pk=dataset.pk).target_column == "species"


def test_delete_is_204(logged_in, upload, penguins_path):
    dataset_id = upload(penguins_path).json()["id"]
    assert logged_in.delete(f"/api/datasets/{dataset_id}/").status_code == 204
    assert logged_in.get(f"/api/datasets/{dataset_id}/").status_code == 404


def test_jobs_endpoint_creates_and_lists_jobs(logged_in, upload, penguins_path):
    dataset = ready(upload(penguins_path, target_column="species").json()["id"])
    response = logged_in.post(f"/api/datasets/{dataset.pk}/jobs/", {"operation": "split",
                              "options": {"test_ratio": 0.3, "stratify": True}}, content_type="application/json")
    assert response.status_code == 201, response.json()
    job = response.json()
    assert job["status"] == "queued" and job["options"]["test_ratio"] == 0.3
    listing = logged_in.get(f"/api/datasets/{dataset.pk}/jobs/").json()
    assert [j["id"] for j in listing["results"]] == [job["id"]]
    cancelled = logged_in.post(f"/api/processing-jobs/{job['id']}/cancel/").json()
    assert cancelled["status"] == "cancelled"
    again = logged_in.post(f"/api/processing-jobs/{job['id']}/cancel/")
    assert again.status_code == 400 and "already ended" in again.json()["detail"]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"operation": "explode"}, "operation"),
        ({"operation": "clean", "options": {"missing": "magic"}}, "options"),
        ({"operation": "split", "options": {"test_ratio": 0}}, "options"),
        ({"operation": "clean", "options": "yes"}, "options"),
    ],
)
def test_bad_job_requests_are_400_and_create_nothing(logged_in, upload, penguins_path, payload, field):
    dataset = ready(upload(penguins_path).json()["id"])
    response = logged_in.post(f"/api/datasets/{dataset.pk}/jobs/", payload, content_type="application/json")
    assert response.status_code == 400 and field in response.json()["errors"]
    assert not ProcessingJob.objects.exists()


def test_jobs_on_a_dataset_that_is_not_ready_are_400(logged_in, upload, penguins_path):
    dataset_id = upload(penguins_path).json()["id"]
    response = logged_in.post(f"/api/datasets/{dataset_id}/jobs/", {"operation": "clean"}, content_type="application/json")
    assert response.status_code == 400 and "ready" in response.json()["detail"]


def test_reprofile_of_a_busy_dataset_is_400(logged_in, upload, penguins_path):
    dataset_id = upload(penguins_path).json()["id"]
    response = logged_in.post(f"/api/datasets/{dataset_id}/reprofile/")
    assert response.status_code == 400
    ready(dataset_id)
    assert logged_in.post(f"/api/datasets/{dataset_id}/reprofile/").json()["status"] == "validating"


def test_unknown_dataset_is_a_json_404(logged_in):
    response = logged_in.get("/api/datasets/999999/")
    assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"


def test_a_hostile_header_does_not_bloat_the_dataset_list_or_the_event_log(logged_in, upload, events,
                                                                          django_capture_on_commit_callbacks):
    names = [f"{i}" + "n" * (100_000 - len(str(i))) for i in range(100)]
    response = upload((",".join(names) + "\n" + ",".join("1" * 100) + "\n").encode(), filename="h.csv")
    assert response.status_code == 201
    with django_capture_on_commit_callbacks(execute=True):  # the events go out on commit
        dataset = ready(response.json()["id"])
    assert dataset.status == Dataset.Status.INVALID
    assert {"file_validated", "dataset_processed"} <= {e["type"] for e in events()}
    listing = logged_in.get("/api/datasets/?limit=50")
    assert listing.status_code == 200 and len(listing.content) < 64 * 1024  # it was 10 MB
    log = logged_in.get(f"/api/events/?after={events.start}")
    assert log.status_code == 200 and len(log.content) < 64 * 1024  # it was 5 MB


def test_names_and_descriptions_over_their_length_are_a_clear_400(logged_in, upload, penguins_path, stray_files):
    too_long = upload(penguins_path, name="ok", description="d" * 2_001)
    assert too_long.status_code == 400 and "description" in too_long.json()["errors"]
    assert not Dataset.objects.exists() and stray_files() == []
    dataset_id = upload(penguins_path, description="d" * 2_000).json()["id"]
    for field, value in (("name", "n" * 201), ("description", "d" * 2_001)):
        response = logged_in.patch(f"/api/datasets/{dataset_id}/", {field: value}, content_type="application/json")
        assert response.status_code == 400 and field in response.json()["errors"], response.content
    assert Dataset.objects.get(pk=dataset_id).name == "penguins"
