"""Who may do what to datasets and processing jobs (API, pages, services): viewers read, editors upload,
process and change what they made, maintainers change anything; other projects' rows are invisible."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from datasets import services
from datasets.models import Dataset, ProcessingJob
from mlops_dashboard.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(django_user_model):
    """The default project with a viewer, two editors and a maintainer; another project with its editor."""
    from tests.factories import ProjectFactory, UserFactory, member

    default = ProjectFactory()
    other = ProjectFactory(slug="other")
    crew = {role: UserFactory(username=role) for role in ("viewer", "editor", "editor2", "maintainer", "outsider")}
    member(crew["viewer"], "viewer", default)
    member(crew["editor"], "editor", default)
    member(crew["editor2"], "editor", default)
    member(crew["maintainer"], "maintainer", default)
    member(crew["outsider"], "editor", other)
    return type("People", (), {**crew, "default": default, "other": other})


def dataset_of(user, **fields):
    from tests.factories import DatasetFactory

    return DatasetFactory(created_by=user, **fields)


def job_of(user, dataset, **fields):
    from tests.factories import ProcessingJobFactory

    return ProcessingJobFactory(dataset=dataset, project=dataset.project, created_by=user, **fields)


def as_(client, user):
    client.force_login(user)
    return client


def csv_file(path):
    return SimpleUploadedFile(path.name, path.read_bytes(), "text/csv")


# --- uploads -----------------------------------------------------------------------------------------


def test_a_viewer_may_not_upload_and_is_told_the_role(client, people, titanic_path, stray_files):
    response = as_(client, people.viewer).post(f"/api/datasets/?project={people.default.pk}",
                                               {"file": csv_file(titanic_path)})
    assert response.status_code == 403
    assert "editor role" in response.json()["detail"]
    response = client.post("/api/datasets/", {"file": csv_file(titanic_path), "project": people.default.pk})
    assert response.status_code == 403 and "editor role" in response.json()["detail"]
    assert not Dataset.objects.exists() and stray_files() == []


def test_an_editor_uploads_to_its_only_project_without_naming_it(client, people, titanic_path):
    response = as_(client, people.editor).post("/api/datasets/", {"file": csv_file(titanic_path)})
    assert response.status_code == 201, response.json()
    dataset = Dataset.objects.get(pk=response.json()["id"])
    assert dataset.project == people.default and response.json()["project"] == people.default.pk
    entry = AuditEntry.objects.get(object_type="datasets.dataset", object_id=str(dataset.pk))
    assert (entry.action, entry.username, entry.project_id) == ("create", "editor", people.default.pk)


def test_an_upload_to_a_project_the_user_cannot_see_is_404(client, people, titanic_path):
    response = as_(client, people.outsider).post(f"/api/datasets/?project={people.default.pk}",
                                                 {"file": csv_file(titanic_path)})
    assert response.status_code == 404
    assert not Dataset.objects.exists()


def test_staff_must_say_which_project_and_are_told_the_choices(client, people, staff_user, titanic_path):
    response = as_(client, staff_user).post("/api/datasets/", {"file": csv_file(titanic_path)})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert f"{people.default.pk} (Default)" in detail and f"{people.other.pk} (Other)" in detail
    response = client.post("/api/datasets/", {"file": csv_file(titanic_path), "project": people.other.pk})
    assert response.status_code == 201 and Dataset.objects.get().project == people.other


def test_a_project_in_the_url_and_another_in_the_form_is_400(client, people, titanic_path):
    response = as_(client, people.editor).post(f"/api/datasets/?project={people.default.pk}",
                                               {"file": csv_file(titanic_path), "project": people.other.pk})
    assert response.status_code == 400 and "project" in response.json()["errors"]
    assert not Dataset.objects.exists()


# --- reading ------------------------------------------------------------------------------------------


def test_an_outsider_sees_no_row_and_gets_404_on_detail(client, people):
    dataset = dataset_of(people.editor)
    job = job_of(people.editor, dataset)
    mine = dataset_of(people.outsider, project=people.other)
    as_(client, people.outsider)
    assert [d["id"] for d in client.get("/api/datasets/").json()["results"]] == [mine.pk]
    assert client.get("/api/processing-jobs/").json()["results"] == []
    for url in (f"/api/datasets/{dataset.pk}/", f"/api/datasets/{dataset.pk}/statistics/",
                f"/api/datasets/{dataset.pk}/jobs/", f"/api/processing-jobs/{job.pk}/",
                f"/datasets/{dataset.pk}/", f"/datasets/{dataset.pk}/row/", f"/datasets/jobs/{job.pk}/row/"):
        assert client.get(url).status_code == 404, url
    assert client.delete(f"/api/datasets/{dataset.pk}/").status_code == 404
    assert client.post(f"/api/processing-jobs/{job.pk}/cancel/").status_code == 404
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_lists_take_a_project_filter(client, people, staff_user):
    here = dataset_of(people.editor)
    there = dataset_of(people.outsider, project=people.other)
    job_here, job_there = job_of(people.editor, here), job_of(people.outsider, there)
    as_(client, staff_user)
    assert {d["id"] for d in client.get("/api/datasets/").json()["results"]} == {here.pk, there.pk}
    assert [d["id"] for d in client.get(f"/api/datasets/?project={people.other.pk}").json()["results"]] == [there.pk]
    assert [j["id"] for j in client.get(f"/api/processing-jobs/?project={people.default.pk}").json()["results"]] \
        == [job_here.pk]
    assert [j["id"] for j in client.get(f"/api/processing-jobs/?project={people.other.pk}").json()["results"]] \
        == [job_there.pk]
    # A project the user is not in filters to nothing; not an id is a 400.
    as_(client, people.outsider)
    assert client.get(f"/api/datasets/?project={people.default.pk}").json()["results"] == []
    assert client.get("/api/datasets/?project=abc").status_code == 400


# --- editing and deleting --------------------------------------------------------------------------------


def test_a_viewer_may_not_edit_delete_or_process(client, people):
    dataset = dataset_of(people.editor)
    as_(client, people.viewer)
    response = client.patch(f"/api/datasets/{dataset.pk}/", {"name": "mine"}, content_type="application/json")
    assert response.status_code == 403 and "maintainer role" in response.json()["detail"]
    response = client.delete(f"/api/datasets/{dataset.pk}/")
    assert response.status_code == 403 and "maintainer role" in response.json()["detail"]
    response = client.post(f"/api/datasets/{dataset.pk}/jobs/", {"operation": "clean"},
                           content_type="application/json")
    assert response.status_code == 403 and "editor role" in response.json()["detail"]
    assert client.post(f"/api/datasets/{dataset.pk}/reprofile/").status_code == 403
    dataset.refresh_from_db()
    assert dataset.name == "titanic" and not ProcessingJob.objects.exists()


def test_an_editor_deletes_its_own_dataset_but_not_anothers(client, people):
    own, theirs = dataset_of(people.editor), dataset_of(people.editor2)
    as_(client, people.editor)
    assert client.delete(f"/api/datasets/{own.pk}/").status_code == 204
    response = client.delete(f"/api/datasets/{theirs.pk}/")
    assert response.status_code == 403
    assert "maintainer role" in response.json()["detail"]
    assert list(Dataset.objects.values_list("pk", flat=True)) == [theirs.pk]
    entry = AuditEntry.objects.get(action="delete")
    assert (entry.object_id, entry.username, entry.project_id) == (str(own.pk), "editor", people.default.pk)


def test_a_maintainer_deletes_any_dataset(client, people):
    theirs = dataset_of(people.editor)
    job_of(people.editor2, theirs)
    assert as_(client, people.maintainer).delete(f"/api/datasets/{theirs.pk}/").status_code == 204
    assert not Dataset.objects.exists() and not ProcessingJob.objects.exists()


def test_deleting_its_own_dataset_does_not_take_others_jobs_with_it(client, people):
    own = dataset_of(people.editor)
    job_of(people.editor2, own, status="succeeded")
    response = as_(client, people.editor).delete(f"/api/datasets/{own.pk}/")
    assert response.status_code == 403
    assert "processing job" in response.json()["detail"] and "maintainer role" in response.json()["detail"]
    assert Dataset.objects.filter(pk=own.pk).exists() and ProcessingJob.objects.count() == 1


def test_an_editor_edits_its_own_dataset_and_the_change_is_audited(client, people):
    own = dataset_of(people.editor)
    response = as_(client, people.editor).patch(f"/api/datasets/{own.pk}/", {"name": "renamed"},
                                                content_type="application/json")
    assert response.status_code == 200
    entry = AuditEntry.objects.get(action="update")
    assert entry.summary == "name: titanic → renamed" and entry.project_id == people.default.pk


# --- processing jobs ------------------------------------------------------------------------------------


def test_a_job_goes_to_its_datasets_project_and_another_project_is_400(client, people):
    dataset = dataset_of(people.editor2)
    as_(client, people.editor)
    response = client.post(f"/api/datasets/{dataset.pk}/jobs/", {"operation": "clean", "project": people.other.pk},
                           content_type="application/json")
    assert response.status_code == 400 and "project" in response.json()["errors"]
    assert not ProcessingJob.objects.exists()
    response = client.post(f"/api/datasets/{dataset.pk}/jobs/", {"operation": "clean", "project": people.default.pk},
                           content_type="application/json")
    assert response.status_code == 201 and response.json()["project"] == people.default.pk
    job = ProcessingJob.objects.get()
    assert job.project == people.default and job.created_by == people.editor
    assert AuditEntry.objects.filter(action="create", object_type="datasets.processingjob").exists()


def test_cancel_needs_the_jobs_creator_or_a_maintainer(client, people):
    dataset = dataset_of(people.editor)
    job = job_of(people.editor2, dataset)
    response = as_(client, people.editor).post(f"/api/processing-jobs/{job.pk}/cancel/")
    assert response.status_code == 403 and "maintainer role" in response.json()["detail"]
    assert as_(client, people.editor2).post(f"/api/processing-jobs/{job.pk}/cancel/").status_code == 200
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert AuditEntry.objects.get(action="cancel").username == "editor2"


def test_job_outputs_go_to_the_same_project(people, penguins_path):
    from tests.factories import member

    member(people.editor, "editor", people.other)
    source = services.dataset_create_from_upload(user=people.editor, uploaded_file=csv_file(penguins_path),
                                                 project=people.other.pk, target_column="species")
    services.dataset_ingest(dataset_id=source.pk)
    source.refresh_from_db()
    job = services.processing_job_create(user=people.editor, dataset=source, operation="split")
    services.processing_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    outputs = Dataset.objects.filter(source_job=job)
    assert outputs.count() == 2
    assert {d.project_id for d in outputs} == {people.other.pk} == {job.project_id}
    assert {d.created_by_id for d in outputs} == {people.editor.pk}


def test_events_and_activity_carry_the_project(people, titanic_path, events, django_capture_on_commit_callbacks):
    from mlops_dashboard.models import Activity

    with django_capture_on_commit_callbacks(execute=True):
        dataset = services.dataset_create_from_upload(user=people.editor, uploaded_file=csv_file(titanic_path))
        pk = dataset.pk
        services.dataset_delete(user=people.editor, dataset=dataset)
    events.expect("dataset_created", dataset_id=pk, project_id=people.default.pk)
    events.expect("dataset_deleted", dataset_id=pk, project_id=people.default.pk)
    assert set(Activity.objects.values_list("project_id", flat=True)) == {people.default.pk}


# --- pages ------------------------------------------------------------------------------------------------


def test_a_viewer_sees_no_upload_delete_start_or_cancel_button(client, people):
    dataset = dataset_of(people.editor)
    job_of(people.editor, dataset)
    as_(client, people.viewer)
    index = client.get("/datasets/").content.decode()
    assert 'id="upload-form"' not in index and "🔒 Upload" in index and "needs the editor role" in index
    detail = client.get(f"/datasets/{dataset.pk}/").content.decode()
    for action in ('data-action="delete"', 'data-action="edit"', 'id="job-form"', 'data-action="cancel-job"'):
        assert action not in detail, action
    assert "🔒 Delete" in detail and "🔒 Start job" in detail and "🔒 Cancel" in detail


def test_an_editor_sees_start_but_no_delete_on_anothers_dataset(client, people):
    dataset = dataset_of(people.editor2)
    as_(client, people.editor)
    index = client.get("/datasets/").content.decode()
    assert f'action="/api/datasets/?project={people.default.pk}"' in index
    detail = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert 'id="job-form"' in detail and 'data-action="delete"' not in detail
    assert "🔒 Delete" in detail
    own = dataset_of(people.editor)
    assert 'data-action="delete"' in client.get(f"/datasets/{own.pk}/").content.decode()


def test_the_list_page_shows_the_current_projects_datasets(client, people):
    from mlops_dashboard.projects import current_project_set
    from tests.factories import member

    here = dataset_of(people.editor, name="alpha-set")
    there = dataset_of(people.outsider, project=people.other, name="beta-set")
    member(people.maintainer, "viewer", people.other)
    as_(client, people.maintainer)
    current_project_set(user=people.maintainer, project=people.other)
    page = client.get("/datasets/").content.decode()
    assert there.name in page and here.name not in page
    assert 'id="upload-form"' not in page  # a viewer there
    current_project_set(user=people.maintainer, project=people.default)
    page = client.get("/datasets/").content.decode()
    assert here.name in page and there.name not in page and 'id="upload-form"' in page
