"""Training in projects: who may start, cancel, deploy, roll back, delete and predict (viewer,
editor on its own and on others' objects, maintainer, outsider), model names per project, the
three prediction routes, and prediction counts per project."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from mlops_dashboard.events import bus
from mlops_dashboard.models import AuditEntry
from tests import procs
from tests.factories import DatasetFactory, ProjectFactory, UserFactory, member
from training import api, selectors, services
from training.models import Deployment, ModelVersion, TrainingJob

from .conftest import titanic_instances

pytestmark = pytest.mark.django_db(transaction=True)


def post(client, url, data=None):
    return client.post(url, data, content_type="application/json")


def job_body(dataset, **change):
    return {"dataset": dataset.pk, "target_column": "survived", "algorithm": "sgd", "epochs": 3, **change}


def logged_in(user):
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def beta(db):
    return ProjectFactory(slug="beta", name="Beta")


@pytest.fixture
def people(project, user, other_user, beta):
    """alice maintainer and bob editor of the default project; vera its viewer; otto in Beta only."""
    vera = UserFactory(username="vera")
    member(vera, "viewer", project)
    otto = UserFactory(username="otto")
    member(otto, "maintainer", beta)
    return {"maintainer": user, "editor": other_user, "viewer": vera, "outsider": otto}


def start_job(dataset, by):
    return services.training_job_start(user=by, dataset=dataset, target_column="survived", algorithm="sgd",
                                       epochs=3, enqueue=False)


def topics_of(start: int, type_: str) -> list[tuple[dict, list[str]]]:
    """The events of a type published since `start`, with the topics they went to."""
    return [(json.loads(text), topics) for _, topics, text in bus.read_after(start, 10_000).events
            if json.loads(text)["type"] == type_]


# --- starting and cancelling ----------------------------------------------------------------------------


def test_a_viewer_cannot_start_a_job_and_is_told_the_role(people, titanic):
    response = post(logged_in(people["viewer"]), "/api/training-jobs/", job_body(titanic))
    assert response.status_code == 403
    assert "editor role" in response.json()["detail"] and "Default" in response.json()["detail"]
    assert not TrainingJob.objects.exists() and not AuditEntry.objects.filter(action="create").exists()


def test_an_editor_starts_a_job_in_its_dataset_s_project_and_cancels_it(people, titanic, events):
    bob = logged_in(people["editor"])
    response = post(bob, "/api/training-jobs/", job_body(titanic, name="survival"))
    assert response.status_code == 201, response.json()
    job = TrainingJob.objects.get(pk=response.json()["id"])
    assert job.project_id == titanic.project_id == response.json()["project"] and job.created_by == people["editor"]
    feed = events.expect("activity_update", activity={"title": "Training job queued: survival"})
    assert feed["project_id"] == job.project_id
    # The session's worker may take (and even finish) the job above at once, so the cancel is tried
    # on a job of bob's that no worker was asked to run: it is queued until cancelled.
    queued = start_job(titanic, people["editor"])
    cancelled = post(bob, f"/api/training-jobs/{queued.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.json()
    for one in (job, queued):
        audit = list(AuditEntry.objects.filter(object_id=str(one.pk), object_type="training.trainingjob")
                     .order_by("id").values_list("action", "username", "project_id"))
        expected = [("create", "bob", one.project_id)] + ([("cancel", "bob", one.project_id)] if one is queued else [])
        assert audit == expected
    events.expect("training_failed", job_id=queued.pk, error_code="CANCELLED", project_id=queued.project_id)


def test_an_editor_cannot_cancel_another_s_job_a_maintainer_can(people, titanic):
    job = start_job(titanic, people["maintainer"])
    response = post(logged_in(people["editor"]), f"/api/training-jobs/{job.pk}/cancel/")
    assert response.status_code == 403 and "maintainer role" in response.json()["detail"]
    assert TrainingJob.objects.get(pk=job.pk).status == "queued"
    other = start_job(titanic, people["editor"])
    assert post(logged_in(people["maintainer"]), f"/api/training-jobs/{other.pk}/cancel/").status_code == 200
    assert TrainingJob.objects.get(pk=other.pk).status == "cancelled"


def test_the_job_goes_to_the_dataset_s_project_another_project_is_a_400(people, titanic, beta):
    member(people["editor"], "editor", beta)
    response = post(logged_in(people["editor"]), "/api/training-jobs/", job_body(titanic, project=beta.pk))
    assert response.status_code == 400 and "project" in response.json()["errors"]
    same = post(logged_in(people["editor"]), "/api/training-jobs/", job_body(titanic, project=titanic.project_id))
    assert same.status_code == 201 and TrainingJob.objects.count() == 1


def test_an_outsider_gets_404_and_sees_nothing(people, titanic, train_version):
    version = train_version(titanic, name="survival")
    job = start_job(titanic, people["maintainer"])
    otto = logged_in(people["outsider"])
    assert otto.get("/api/training-jobs/").json()["count"] == 0
    assert otto.get("/api/models/").json()["count"] == 0
    services.model_version_deploy(user=people["maintainer"], version=version)
    assert otto.get("/api/deployments/").json()["count"] == 0
    for url in (f"/api/training-jobs/{job.pk}/", f"/api/models/{version.pk}/"):
        assert otto.get(url).status_code == 404, url
    for url in (f"/api/training-jobs/{job.pk}/cancel/", f"/api/models/{version.pk}/deploy/",
                f"/api/models/{version.pk}/predict/"):
        assert post(otto, url, {"instances": [{}]}).status_code == 404, url
    assert otto.delete(f"/api/models/{version.pk}/").status_code == 404
    # Starting on a dataset of a project one is not in: 404, not a word about the dataset.
    assert post(otto, "/api/training-jobs/", job_body(titanic)).status_code == 404
    for url in (f"/training/jobs/{job.pk}/", f"/training/jobs/{job.pk}/row/", f"/training/models/{version.pk}/group/"):
        assert otto.get(url).status_code == 404, url
    assert TrainingJob.objects.get(pk=job.pk).status == "queued" and ModelVersion.objects.count() == 1


def test_lists_filter_by_project(people, titanic, beta, train_version):
    member(people["maintainer"], "maintainer", beta)
    train_version(titanic, name="survival")
    train_version(DatasetFactory(project=beta, csv="titanic.csv", target_column="survived"), name="survival")
    alice = logged_in(people["maintainer"])
    assert alice.get("/api/models/").json()["count"] == 2
    only_beta = alice.get(f"/api/models/?project={beta.pk}").json()
    assert only_beta["count"] == 1 and only_beta["results"][0]["project"] == beta.pk
    assert alice.get(f"/api/training-jobs/?project={beta.pk}").json()["count"] == 1
    assert logged_in(people["editor"]).get(f"/api/models/?project={beta.pk}").json()["count"] == 0
    assert alice.get("/api/models/?project=").status_code == 400


# --- deploy, roll back, delete --------------------------------------------------------------------------


def test_viewer_and_editor_cannot_deploy_the_maintainer_deploys_and_rolls_back(people, titanic, train_version):
    v1 = train_version(titanic, name="survival", by=people["editor"])
    v2 = train_version(titanic, name="survival", by=people["editor"])
    assert (v1.created_by, v1.project_id) == (people["editor"], titanic.project_id)
    for role in ("viewer", "editor"):
        response = post(logged_in(people[role]), f"/api/models/{v2.pk}/deploy/")
        assert response.status_code == 403, role
        assert "maintainer role" in response.json()["detail"] and "Deploying" in response.json()["detail"]
    assert not Deployment.objects.exists()
    alice = logged_in(people["maintainer"])
    assert post(alice, f"/api/models/{v2.pk}/deploy/").json()["deployment"]["action"] == "deploy"
    back = post(alice, f"/api/models/{v1.pk}/deploy/").json()["deployment"]
    assert back["action"] == "rollback" and back["project"] == titanic.project_id
    assert list(AuditEntry.objects.filter(action__in=["deploy", "rollback"]).order_by("id")
                .values_list("action", "username", "project_id")) == [
        ("deploy", "alice", titanic.project_id), ("rollback", "alice", titanic.project_id)]


def test_deleting_a_version_its_creator_or_a_maintainer_never_the_serving_one(people, titanic, train_version):
    mine = train_version(titanic, name="survival", by=people["editor"])
    alices = train_version(titanic, name="survival")
    serving = train_version(titanic, name="survival")
    services.model_version_deploy(user=people["maintainer"], version=serving)
    bob, vera = logged_in(people["editor"]), logged_in(people["viewer"])
    refused = bob.delete(f"/api/models/{alices.pk}/")
    assert refused.status_code == 403 and "maintainer role" in refused.json()["detail"]
    assert vera.delete(f"/api/models/{mine.pk}/").status_code == 403
    assert bob.delete(f"/api/models/{mine.pk}/").status_code == 204
    busy = logged_in(people["maintainer"]).delete(f"/api/models/{serving.pk}/")
    assert busy.status_code == 409 and "serving" in busy.json()["detail"]
    assert logged_in(people["maintainer"]).delete(f"/api/models/{alices.pk}/").status_code == 204
    assert list(ModelVersion.objects.values_list("pk", flat=True)) == [serving.pk]
    assert AuditEntry.objects.filter(action="delete", object_type="training.modelversion").count() == 2


# --- names are a project's own ----------------------------------------------------------------------------


def test_two_projects_each_have_churn_v1_and_deploying_one_leaves_the_other(people, titanic, beta, train_version,
                                                                              events):
    member(people["maintainer"], "maintainer", beta)
    beta_data = DatasetFactory(project=beta, csv="titanic.csv", target_column="survived")
    a1 = train_version(titanic, name="churn")
    b1 = train_version(beta_data, name="churn")
    b2 = train_version(beta_data, name="churn")
    assert [(v.project_id, v.version) for v in (a1, b1, b2)] == [(titanic.project_id, 1), (beta.pk, 1), (beta.pk, 2)]
    services.model_version_deploy(user=people["maintainer"], version=b1)
    services.model_version_deploy(user=people["maintainer"], version=a1)
    services.model_version_deploy(user=people["maintainer"], version=b2)
    status = dict(ModelVersion.objects.values_list("pk", "status"))
    assert status == {a1.pk: "active", b1.pk: "inactive", b2.pk: "active"}
    assert Deployment.objects.get(model_version=b2).previous_id == b1.pk
    assert Deployment.objects.get(model_version=a1).previous_id is None
    events.expect("model_deployed", model_id=a1.pk, project_id=titanic.project_id)
    events.expect("model_deployed", model_id=b2.pk, project_id=beta.pk)
    assert [g["name"] for g in selectors.model_groups(project=beta)] == ["churn"]
    assert [v.pk for v in selectors.model_groups(project=titanic.project)[0]["versions"]] == [a1.pk]


# --- predictions ------------------------------------------------------------------------------------------


@pytest.fixture
def churn(people, titanic, beta, train_version):
    """"churn" deployed in Default and in Beta (alice maintains both)."""
    member(people["maintainer"], "maintainer", beta)
    here = train_version(titanic, name="churn")
    there = train_version(DatasetFactory(project=beta, csv="titanic.csv", target_column="survived"), name="churn")
    for version in (here, there):
        services.model_version_deploy(user=people["maintainer"], version=version)
    return here, there


def test_a_project_s_model_by_slug_and_name(people, churn, beta, clean_prediction_counters):
    here, there = churn
    instances, _ = titanic_instances(here, 3)
    vera = logged_in(people["viewer"])  # a viewer predicts: it is reading
    served = post(vera, "/api/projects/default/models/churn/predict/", {"instances": instances})
    assert served.status_code == 200 and served.json()["model_id"] == here.pk and served.json()["project_id"] == here.project_id
    assert post(vera, "/api/projects/beta/models/churn/predict/", {"instances": instances}).status_code == 404
    assert post(vera, "/api/projects/nowhere/models/churn/predict/", {"instances": instances}).status_code == 404
    unknown = post(vera, "/api/projects/default/models/nobody/predict/", {"instances": instances})
    assert unknown.status_code == 404 and "no model named" in unknown.json()["detail"]
    alice = logged_in(people["maintainer"])
    assert post(alice, "/api/projects/beta/models/churn/predict/", {"instances": instances}).json()["model_id"] == there.pk
    ModelVersion.objects.filter(pk=there.pk).update(status="inactive")
    services.serving_changed()  # a change behind the ORM's back: no signal tells the process cache
    idle = post(alice, "/api/projects/beta/models/churn/predict/", {"instances": instances})
    assert idle.status_code == 409 and "Beta" in idle.json()["detail"]


def test_by_name_is_served_when_unambiguous_and_400_naming_the_projects_otherwise(people, churn, beta,
                                                                                  clean_prediction_counters):
    here, there = churn
    instances, _ = titanic_instances(here, 2)
    # vera sees only Default: "churn" is unambiguous for her.
    assert post(logged_in(people["viewer"]), "/api/models/by-name/churn/predict/",
                {"instances": instances}).json()["model_id"] == here.pk
    ambiguous = post(logged_in(people["maintainer"]), "/api/models/by-name/churn/predict/", {"instances": instances})
    assert ambiguous.status_code == 400
    assert "default (Default)" in ambiguous.json()["detail"] and "beta (Beta)" in ambiguous.json()["detail"]
    # A token limited to one project (the token authentication sets token_project_id) picks that one.
    alice = people["maintainer"]
    alice.token_project_id = beta.pk
    limited = APIClient()
    limited.force_authenticate(user=alice)
    served = post(limited, "/api/models/by-name/churn/predict/", {"instances": instances})
    assert served.status_code == 200 and served.json()["model_id"] == there.pk
    assert post(limited, f"/api/models/{here.pk}/predict/", {"instances": instances}).status_code == 404
    services.prediction_counts_flush()
    assert ModelVersion.objects.get(pk=there.pk).prediction_count == 2
    assert ModelVersion.objects.get(pk=here.pk).prediction_count == 2


def test_only_the_prediction_views_accept_predict_tokens():
    from django.urls import get_resolver

    predict = {api.ModelVersionPredictView, api.ProjectModelPredictView, api.PredictByNameView}
    for view in predict:
        assert view.token_scopes == ("predict",)
    for pattern in get_resolver().url_patterns:
        for view in _views(pattern):
            if view.__module__ == "training.api" and view not in predict:
                assert "predict" not in getattr(view, "token_scopes", ()), view


def _views(pattern):
    if hasattr(pattern, "url_patterns"):
        for inner in pattern.url_patterns:
            yield from _views(inner)
    else:
        cls = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
        if cls is not None:
            yield cls


def test_prediction_volume_counts_per_project_on_its_own_topic(people, churn, beta, events,
                                                               clean_prediction_counters):
    here, there = churn
    start = bus.latest_id()
    services.model_version_record_predictions(version=here, count=99)
    services.model_version_record_predictions(version=there, count=1)  # Beta's first: no milestone of Default's
    services.model_version_record_predictions(version=here, count=1)  # Default crosses 100
    sent = topics_of(start, "prediction_volume")
    assert [(e["project_id"], e["total_predictions"], e["milestone_reached"]) for e, _ in sent] == [
        (here.project_id, 99, None), (beta.pk, 1, None), (here.project_id, 100, 100)]
    for event, topics in sent:
        assert topics == [f"project.{event['project_id']}"]
    events.expect("prediction_volume", project_id=here.project_id, milestone_reached=100, total_predictions=100)
    figures = selectors.project_serving_figures(beta.pk)
    assert figures["predictions_total"] == 1 and figures["predictions_per_minute"] > 0
    assert figures["model"]["id"] == there.pk and figures["current_accuracy"] == pytest.approx(there.validation_score)
    assert selectors.project_serving_figures(here.project_id)["predictions_total"] == 100


# --- pages ----------------------------------------------------------------------------------------------


def test_pages_render_what_the_role_allows_and_lock_the_rest(people, titanic, train_version):
    serving = train_version(titanic, name="survival")
    idle = train_version(titanic, name="survival", by=people["editor"])
    services.model_version_deploy(user=people["maintainer"], version=serving)
    job = start_job(titanic, people["maintainer"])

    viewer_training = logged_in(people["viewer"]).get("/training/").content.decode()
    assert 'id="start-training"' not in viewer_training and "needs the editor role" in viewer_training
    assert 'data-action="cancel"' not in viewer_training
    viewer_models = logged_in(people["viewer"]).get("/training/models/").content.decode()
    assert 'data-action="deploy"' not in viewer_models and 'data-action="delete"' not in viewer_models
    assert "needs the maintainer role" in viewer_models

    editor_training = logged_in(people["editor"]).get("/training/").content.decode()
    assert 'id="start-training"' in editor_training and 'data-action="cancel"' not in editor_training
    editor_models = logged_in(people["editor"]).get("/training/models/").content.decode()
    assert 'data-action="deploy"' not in editor_models and "Deploying or rolling back needs the maintainer role" in editor_models
    assert f'data-url="/api/models/{idle.pk}/"' in editor_models  # bob may delete the version he trained
    job_page = logged_in(people["editor"]).get(f"/training/jobs/{job.pk}/").content.decode()
    assert 'id="cancel-job"' not in job_page and "🔒" in job_page

    maintainer_models = logged_in(people["maintainer"]).get("/training/models/").content.decode()
    assert 'data-action="deploy"' in maintainer_models and 'data-action="delete"' in maintainer_models
    assert 'id="cancel-job"' in logged_in(people["maintainer"]).get(f"/training/jobs/{job.pk}/").content.decode()


def test_a_page_post_goes_through_the_same_check(people, titanic):
    form = {"dataset": titanic.pk, "target_column": "survived", "algorithm": "sgd", "epochs": "3"}
    refused = logged_in(people["viewer"]).post("/training/", form)
    assert refused.status_code == 403 and not TrainingJob.objects.exists()
    assert logged_in(people["editor"]).post("/training/", form).status_code == 302
    assert TrainingJob.objects.get().created_by == people["editor"]


def test_pages_show_the_current_project_only(people, titanic, beta, train_version):
    member(people["maintainer"], "maintainer", beta)
    train_version(DatasetFactory(project=beta, csv="penguins.csv", name="beta-penguins", target_column="species"),
                  name="beta-model")
    train_version(titanic, name="default-model")
    from mlops_dashboard.projects import current_project_set

    alice = logged_in(people["maintainer"])
    current_project_set(user=people["maintainer"], project=titanic.project)
    html = alice.get("/training/models/").content.decode()
    assert 'data-model-name="default-model"' in html and "beta-model" not in html
    assert "beta-penguins" not in alice.get("/training/").content.decode()
    current_project_set(user=people["maintainer"], project=beta)
    html = alice.get("/training/models/").content.decode()
    assert 'data-model-name="beta-model"' in html and "default-model" not in html


# --- admin ------------------------------------------------------------------------------------------------


def test_admin_filters_by_project(client, staff_user, people, titanic, beta, train_version):
    version = train_version(titanic, name="survival-model")
    services.model_version_deploy(user=people["maintainer"], version=version)
    client.force_login(staff_user)
    for url in ("/admin/training/trainingjob/", "/admin/training/modelversion/", "/admin/training/deployment/"):
        theirs = client.get(f"{url}?project__id__exact={beta.pk}")
        ours = client.get(f"{url}?project__id__exact={titanic.project_id}")
        assert theirs.status_code == ours.status_code == 200, url
        assert "survival-model" not in theirs.content.decode() and "survival-model" in ours.content.decode(), url


# --- across processes: a real worker ----------------------------------------------------------------------


@pytest.mark.stack
def test_an_editor_s_job_trains_on_a_worker_into_its_project(worker, people, titanic, beta):
    start = bus.latest_id()
    response = post(logged_in(people["editor"]), "/api/training-jobs/", job_body(titanic, name="churn"))
    assert response.status_code == 201
    job = procs.wait_for(lambda: TrainingJob.objects.filter(pk=response.json()["id"], status="succeeded").first(),
                         timeout=120, interval=0.2, message="the worker to train the job")
    version = ModelVersion.objects.get(training_job=job)
    assert (version.project_id, version.created_by, version.version) == (titanic.project_id, people["editor"], 1)
    assert AuditEntry.objects.filter(action="create", object_type="training.modelversion", username="bob",
                                     project_id=titanic.project_id).exists()
    done = procs.wait_for(lambda: topics_of(start, "training_completed"), timeout=60, message="training_completed")
    event, topics = done[-1]
    assert event["project_id"] == titanic.project_id
    assert sorted(topics) == sorted([f"project.{titanic.project_id}", f"training_job.{job.pk}"])
