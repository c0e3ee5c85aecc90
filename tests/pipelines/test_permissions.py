"""Pipelines in projects: who may define, edit, delete, run, cancel and retry them (services, API and
pages), what each project's members see, and the rights a run's steps act with.

The datasets are factory-made (ready, titanic): the runs here execute validate_dataset and
deploy_model steps in-process, which need no other app's worker."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from mlops_dashboard.models import AuditEntry
from pipelines import services
from pipelines.models import Pipeline, PipelineRun, StepRun

pytestmark = pytest.mark.django_db(transaction=True)

VALIDATE = [{"kind": "validate_dataset", "options": {"required_columns": ["survived"]}}]


@pytest.fixture
def people(db):
    """The default project's viewer, two editors and a maintainer; an outsider who is an editor of
    another project (with its own dataset); and staff."""
    from tests.factories import DatasetFactory, ProjectFactory, UserFactory, member

    home = ProjectFactory()
    away = ProjectFactory(slug="away")
    who = {name: UserFactory(username=name) for name in ("vic", "ed", "eve", "max", "out")}
    member(who["vic"], "viewer", home)
    member(who["ed"], "editor", home)
    member(who["eve"], "editor", home)
    member(who["max"], "maintainer", home)
    member(who["out"], "editor", away)
    who["root"] = UserFactory(username="root", staff=True)
    who["home"], who["away"] = home, away
    who["dataset"] = DatasetFactory(project=home, target_column="survived")
    who["away_dataset"] = DatasetFactory(project=away, target_column="survived")
    return who


def make(people, by="ed", name="p", **fields):
    return services.pipeline_create(user=people[by], name=name, dataset=fields.pop("dataset", people["dataset"]),
                                    steps=fields.pop("steps", VALIDATE), **fields)


def execute(run):
    services.pipeline_run_execute(run_id=run.pk)
    run.refresh_from_db()
    return run


# --- defining -------------------------------------------------------------------------------------


def test_an_editor_creates_in_its_project_audited_and_announced_on_the_projects_topic(people, events):
    pipeline = make(people)
    assert pipeline.project == people["home"] and pipeline.created_by == people["ed"]
    events.expect("pipeline_created", project_id=people["home"].pk, pipeline_id=pipeline.pk, name="p")
    entry = AuditEntry.objects.get(action="create", object_id=str(pipeline.pk))
    assert entry.user == people["ed"] and entry.project == people["home"] and "validate_dataset" in entry.summary


def test_a_viewer_may_not_create_and_is_told_the_role(people):
    with pytest.raises(PermissionDenied, match="editor role"):
        make(people, by="vic")
    with pytest.raises(Http404):  # a project one cannot see does not exist for them
        make(people, by="out", project=people["home"].pk)
    assert not Pipeline.objects.exists()


def test_the_dataset_must_be_in_the_pipelines_project(people):
    with pytest.raises(ValidationError) as caught:
        make(people, dataset=people["away_dataset"])
    assert "another project" in caught.value.message_dict["dataset"][0]
    assert not Pipeline.objects.exists()


def test_staff_say_which_project(people):
    with pytest.raises(ValidationError) as caught:
        make(people, by="root")
    assert "Default" in caught.value.message_dict["project"][0] and "Away" in caught.value.message_dict["project"][0]
    assert make(people, by="root", project=people["home"].pk).project == people["home"]


def test_names_are_unique_per_project_not_system_wide(people):
    make(people, name="nightly")
    with pytest.raises(ValidationError) as caught:
        make(people, by="eve", name="nightly")
    assert "already has a pipeline named 'nightly'" in caught.value.message_dict["name"][0]
    away = make(people, by="out", name="nightly", dataset=people["away_dataset"])
    assert away.project == people["away"]
    assert Pipeline.objects.filter(name="nightly").count() == 2


def test_edit_and_delete_the_creator_or_a_maintainer(people, events):
    mine = make(people, name="mine")
    with pytest.raises(PermissionDenied, match="maintainer role"):
        services.pipeline_update(user=people["eve"], pipeline=mine, description="not hers")
    with pytest.raises(PermissionDenied, match="maintainer role"):
        services.pipeline_delete(user=people["eve"], pipeline=mine)
    with pytest.raises(PermissionDenied):
        services.pipeline_update(user=people["vic"], pipeline=mine, description="x")
    with pytest.raises(Http404):
        services.pipeline_delete(user=people["out"], pipeline=mine)
    mine.refresh_from_db()
    assert mine.description == ""

    services.pipeline_update(user=people["ed"], pipeline=mine, description="his own")
    entry = AuditEntry.objects.get(action="update", object_id=str(mine.pk))
    assert entry.summary == "description:  → his own" and entry.user == people["ed"]
    events.expect("pipeline_updated", project_id=people["home"].pk, pipeline_id=mine.pk)
    services.pipeline_update(user=people["max"], pipeline=mine, name="renamed")
    pk = mine.pk
    services.pipeline_delete(user=people["max"], pipeline=mine)
    assert not Pipeline.objects.filter(pk=pk).exists()
    assert AuditEntry.objects.filter(action="delete", object_id=str(pk), user=people["max"]).exists()
    events.expect("pipeline_deleted", project_id=people["home"].pk, pipeline_id=pk)


def test_a_dataset_of_another_project_is_refused_on_update(people):
    pipeline = make(people)
    with pytest.raises(ValidationError):
        services.pipeline_update(user=people["ed"], pipeline=pipeline, dataset=people["away_dataset"])
    pipeline.refresh_from_db()
    assert pipeline.dataset == people["dataset"]


# --- running --------------------------------------------------------------------------------------


def test_run_cancel_and_retry_by_role(people, no_enqueue, events):
    pipeline = make(people)
    with pytest.raises(PermissionDenied, match="editor role"):
        services.pipeline_run_start(user=people["vic"], pipeline=pipeline)
    with pytest.raises(Http404):
        services.pipeline_run_start(user=people["out"], pipeline=pipeline)
    with pytest.raises(ValidationError) as caught:  # the run's project is the pipeline's
        services.pipeline_run_start(user=people["ed"], pipeline=pipeline, project=people["away"].pk)
    assert "project" in caught.value.message_dict

    run = services.pipeline_run_start(user=people["eve"], pipeline=pipeline)  # any editor runs it
    assert run.project == people["home"] and run.created_by == people["eve"]
    events.expect("pipeline_status", project_id=people["home"].pk, run_id=run.pk, status="queued")
    assert AuditEntry.objects.filter(action="run", object_id=str(run.pk), user=people["eve"]).exists()
    with pytest.raises(PermissionDenied, match="maintainer role"):  # not his run
        services.pipeline_run_cancel(user=people["ed"], run=run)
    services.pipeline_run_cancel(user=people["eve"], run=run)
    assert PipelineRun.objects.get(pk=run.pk).status == "cancelled"
    assert AuditEntry.objects.filter(action="cancel", object_id=str(run.pk), user=people["eve"]).exists()

    with pytest.raises(PermissionDenied, match="editor role"):
        services.pipeline_run_retry(user=people["vic"], run=run)
    retry = services.pipeline_run_retry(user=people["ed"], run=run)
    assert retry.retry_of_id == run.pk and retry.project == people["home"]
    assert AuditEntry.objects.filter(action="retry", object_id=str(retry.pk)).exists()
    services.pipeline_run_cancel(user=people["max"], run=retry)  # a maintainer cancels anyone's


def test_a_step_of_a_creator_who_lost_the_editor_role_fails_naming_the_role(people, no_enqueue):
    from tests.factories import member

    pipeline = make(people)
    run = services.pipeline_run_start(user=people["eve"], pipeline=pipeline)
    member(people["eve"], "viewer", people["home"])  # demoted before a worker took the run
    run = execute(run)
    assert run.status == "failed" and run.failed_step == "validate_dataset"
    assert "the run's creator (eve)" in run.error and "needs the editor role" in run.error, run.error
    assert [s.status for s in run.step_runs.all()] == ["failed"]


def test_a_step_of_a_deleted_creator_fails_instead_of_running_as_the_system(people, no_enqueue):
    pipeline = make(people)
    run = services.pipeline_run_start(user=people["eve"], pipeline=pipeline)
    people["eve"].delete()
    run = execute(run)
    assert run.status == "failed" and "there is none (deleted" in run.error and "editor role" in run.error, run.error


def test_a_scheduled_run_acts_as_the_pipelines_creator(people, no_enqueue):
    from tests.factories import member

    pipeline = make(people, schedule="0 3 * * *")
    run = execute(services.pipeline_run_scheduled(pipeline_id=pipeline.pk))  # as beat starts it
    assert run.trigger == "schedule" and run.created_by is None
    assert run.status == "succeeded", run.error

    member(people["ed"], "viewer", people["home"])
    run = execute(services.pipeline_run_scheduled(pipeline_id=pipeline.pk))  # the schedule still fires
    assert run.status == "failed"
    assert "the pipeline's creator (ed)" in run.error and "needs the editor role" in run.error, run.error


def test_a_deploy_step_needs_the_maintainer_role_of_whoever_runs_it(people, no_enqueue):
    """An editor's run stops at deploy_model (a maintainer's deploys: test_services' demo run)."""
    from tests.factories import ModelVersionFactory, PipelineRunFactory, StepRunFactory
    from training.models import Deployment

    version = ModelVersionFactory(project=people["home"], status="ready")

    def deploy_run(by):
        run = PipelineRunFactory(pipeline=make(people, name=f"deploy by {by}"), created_by=people[by],
                                 steps=[{"kind": "deploy_model", "options": {}}],
                                 context={"dataset_id": people["dataset"].pk, "model_version_id": version.pk})
        StepRunFactory(run=run)
        return execute(run)

    refused = deploy_run("ed")
    assert refused.status == "failed" and refused.failed_step == "deploy_model"
    assert "Deploying or rolling back needs the maintainer role" in refused.error, refused.error
    version.refresh_from_db()
    assert version.status == "ready" and not Deployment.objects.exists()


# --- the API --------------------------------------------------------------------------------------


def client_for(client, user):
    client.force_login(user)
    return client


def post(client, path, data=None):
    return client.post(path, data or {}, content_type="application/json")


def body(people, **extra):
    return {"name": "api", "dataset": people["dataset"].pk, "steps": VALIDATE, **extra}


def test_the_api_lists_only_the_users_projects(client, people, no_enqueue):
    home = make(people, name="home")
    away = make(people, by="out", name="away", dataset=people["away_dataset"])
    run = services.pipeline_run_start(user=people["out"], pipeline=away)
    api = client_for(client, people["vic"])
    assert [p["id"] for p in api.get("/api/pipelines/").json()["results"]] == [home.pk]
    assert api.get(f"/api/pipelines/{away.pk}/").status_code == 404
    assert api.get(f"/api/pipeline-runs/{run.pk}/").status_code == 404
    assert api.get("/api/pipeline-runs/").json()["results"] == []
    assert api.get(f"/api/pipelines/?project={people['away'].pk}").json()["results"] == []
    api = client_for(client, people["root"])
    listed = api.get(f"/api/pipelines/?project={people['away'].pk}").json()["results"]
    assert [(p["id"], p["project"]) for p in listed] == [(away.pk, people["away"].pk)]
    assert [r["id"] for r in api.get(f"/api/pipeline-runs/?project={people['away'].pk}").json()["results"]] == [run.pk]


def test_api_create_takes_the_project(client, people):
    from tests.factories import member

    api = client_for(client, people["vic"])
    denied = post(api, "/api/pipelines/", body(people))
    assert denied.status_code == 403 and "editor role" in denied.json()["detail"]
    api = client_for(client, people["out"])
    assert post(api, "/api/pipelines/", body(people, project=people["home"].pk)).status_code == 404
    away = post(api, "/api/pipelines/", body(people, dataset=people["away_dataset"].pk))  # its only project
    assert away.status_code == 201 and away.json()["project"] == people["away"].pk
    # A dataset of a project the user cannot see does not exist for them.
    hidden = post(api, "/api/pipelines/", body(people, name="x", project=people["away"].pk))
    assert hidden.status_code == 400 and "does not exist" in hidden.json()["errors"]["dataset"][0]

    member(people["ed"], "editor", people["away"])
    api = client_for(client, people["ed"])
    ambiguous = post(api, "/api/pipelines/", body(people))
    assert ambiguous.status_code == 400 and "Away" in str(ambiguous.json()["errors"]["project"])
    wrong = post(api, "/api/pipelines/", body(people, project=people["away"].pk))
    assert wrong.status_code == 400 and "another project" in wrong.json()["errors"]["dataset"][0]
    made = post(api, "/api/pipelines/", body(people, project=people["home"].pk))
    assert made.status_code == 201 and made.json()["project"] == people["home"].pk
    moved = api.patch(f"/api/pipelines/{made.json()['id']}/", {"project": people["away"].pk},
                      content_type="application/json")
    assert moved.status_code == 400 and "project" in moved.json()["errors"]


def test_api_runs_and_writes_by_role(client, people, no_enqueue):
    pipeline = make(people)
    api = client_for(client, people["vic"])
    refused = post(api, f"/api/pipelines/{pipeline.pk}/run/")
    assert refused.status_code == 403 and "editor role" in refused.json()["detail"]
    assert api.delete(f"/api/pipelines/{pipeline.pk}/").status_code == 403
    api = client_for(client, people["eve"])
    assert api.patch(f"/api/pipelines/{pipeline.pk}/", {"description": "x"},
                     content_type="application/json").status_code == 403
    other = post(api, f"/api/pipelines/{pipeline.pk}/run/", {"project": people["away"].pk})
    assert other.status_code == 400 and "project" in other.json()["errors"]
    started = post(api, f"/api/pipelines/{pipeline.pk}/run/", {"project": people["home"].pk})
    assert started.status_code == 201 and started.json()["project"] == people["home"].pk
    api = client_for(client, people["ed"])
    cancel = post(api, f"/api/pipeline-runs/{started.json()['id']}/cancel/")
    assert cancel.status_code == 403 and "maintainer role" in cancel.json()["detail"]
    api = client_for(client, people["out"])
    assert post(api, f"/api/pipeline-runs/{started.json()['id']}/cancel/").status_code == 404
    assert post(api, f"/api/pipelines/{pipeline.pk}/run/").status_code == 404


def test_the_schema_documents_the_statuses(client, people):
    schema = client_for(client, people["root"]).get("/api/schema/?format=json").json()
    create = schema["paths"]["/api/pipelines/"]["post"]["responses"]
    run = schema["paths"]["/api/pipelines/{id}/run/"]["post"]["responses"]
    cancel = schema["paths"]["/api/pipeline-runs/{id}/cancel/"]["post"]["responses"]
    assert {"201", "400", "403", "404"} <= set(create)
    assert {"201", "400", "403", "404"} <= set(run) and {"200", "403", "404", "409"} <= set(cancel)
    params = [p["name"] for p in schema["paths"]["/api/pipelines/"]["get"]["parameters"]]
    assert "project" in params


# --- pages ----------------------------------------------------------------------------------------


def page(client, user, path):
    response = client_for(client, user).get(path)
    return response.status_code, response.content.decode()


def test_a_viewer_sees_no_buttons_but_the_locked_hints(client, people, no_enqueue):
    pipeline = make(people)
    run = services.pipeline_run_start(user=people["ed"], pipeline=pipeline)
    status, html = page(client, people["vic"], "/pipelines/")
    assert status == 200 and pipeline.name in html
    assert "data-run-pipeline" not in html and 'id="pipeline-editor"' not in html
    assert "locked-action" in html and "needs the editor role" in html
    status, html = page(client, people["vic"], f"/pipelines/{pipeline.pk}/")
    assert 'id="run-pipeline"' not in html and 'id="edit-pipeline"' not in html and 'id="delete-pipeline"' not in html
    assert 'id="edit-card"' not in html and html.count("locked-action") == 3
    status, html = page(client, people["vic"], f"/pipelines/runs/{run.pk}/")
    assert 'id="cancel-run"' not in html and 'id="cancel-run-locked"' in html and "needs the maintainer role" in html


def test_an_editor_runs_others_pipelines_but_edits_only_its_own(client, people, no_enqueue):
    pipeline = make(people)
    run = services.pipeline_run_start(user=people["ed"], pipeline=pipeline)
    status, html = page(client, people["eve"], "/pipelines/")
    assert "data-run-pipeline" in html and 'id="pipeline-editor"' in html
    status, html = page(client, people["eve"], f"/pipelines/{pipeline.pk}/")
    assert 'id="run-pipeline"' in html and 'id="edit-pipeline"' not in html and 'id="delete-pipeline"' not in html
    assert "editors may change only what they created" in html
    status, html = page(client, people["ed"], f"/pipelines/{pipeline.pk}/")
    assert 'id="edit-pipeline"' in html and 'id="delete-pipeline"' in html and "locked-action" not in html
    status, html = page(client, people["eve"], f"/pipelines/runs/{run.pk}/")
    assert 'id="cancel-run"' not in html and 'id="retry-run"' in html
    status, html = page(client, people["ed"], f"/pipelines/runs/{run.pk}/")
    assert 'id="cancel-run"' in html


def test_pages_show_the_current_project_and_404_for_others(client, people, no_enqueue):
    away = make(people, by="out", name="far away", dataset=people["away_dataset"])
    run = services.pipeline_run_start(user=people["out"], pipeline=away)
    make(people, name="at home")
    status, html = page(client, people["ed"], "/pipelines/")
    assert "at home" in html and "far away" not in html
    assert str(people["away_dataset"].pk) not in [str(d) for d in _editor_datasets(html)]
    for path in (f"/pipelines/{away.pk}/", f"/pipelines/runs/{run.pk}/", f"/pipelines/runs/{run.pk}/row/"):
        assert page(client, people["ed"], path)[0] == 404, path
    status, html = page(client, people["out"], "/pipelines/")
    assert "far away" in html and "at home" not in html


def _editor_datasets(html) -> list[int]:
    import json
    import re

    data = json.loads(re.search(r'<script id="pipelines-data" type="application/json">(.*?)</script>', html, re.S)[1])
    return [d["id"] for d in data["editor"]["datasets"]]


def test_a_user_in_no_project_sees_an_empty_page_with_the_hint(client, db):
    from tests.factories import UserFactory

    status, html = page(client, UserFactory(username="newbie"), "/pipelines/")
    assert status == 200 and "not a member of any project" in html and 'id="pipeline-editor"' not in html


def test_the_admin_shows_and_filters_by_project(client, people, no_enqueue):
    pipeline = make(people, name="homegrown pipeline")
    run = services.pipeline_run_start(user=people["ed"], pipeline=pipeline)
    admin = client_for(client, people["root"])
    for path, shown in (("/admin/pipelines/pipeline/", pipeline.name), ("/admin/pipelines/pipelinerun/", f">{run.pk}<")):
        home = admin.get(f"{path}?project__id__exact={people['home'].pk}").content.decode()
        away = admin.get(f"{path}?project__id__exact={people['away'].pk}").content.decode()
        assert "By project" in home and shown in home and "column-project" in home, path
        assert shown not in away, path
