"""The training app's HTTP surface: validation at the edge (4xx, nothing written), jobs, the model
registry, deploy, predictions; the pages and the admin."""

from __future__ import annotations

import time

import pytest

from tests.factories import api_token_for
from training import services
from training.models import Deployment, ModelVersion, TrainingJob

from .conftest import enqueued, titanic_instances

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, user):
    client.force_login(user)
    return client


def post(client, url, data=None):
    return client.post(url, data, content_type="application/json")


def job_body(ds, **change):
    body = {"dataset": ds.pk, "target_column": "survived", "algorithm": "sgd", "epochs": 5}
    body.update(change)
    return {k: v for k, v in body.items() if v is not ...}


# --- training jobs --------------------------------------------------------------------------------------


def test_start_a_job_answers_201_queued_and_enqueues_on_commit(api, titanic, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(api, "/api/training-jobs/", job_body(titanic, test_size=0.3, name="survival"))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["name"] == "survival" and body["test_size"] == 0.3
    assert body["total_epochs"] == 5 and body["history"] == [] and body["model_version"] is None
    assert response["Location"] == f"/api/training-jobs/{body['id']}/"
    assert enqueued(callbacks) == 1
    assert TrainingJob.objects.get().created_by.username == "alice"


def test_task_is_optional_and_name_has_a_default(api, penguins, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        body = post(api, "/api/training-jobs/", {"dataset": penguins.pk, "target_column": "body_mass_g",
                                                 "algorithm": "mlp", "task": None}).json()
    assert body["name"] == "penguins-mlp" and body["task"] == "" and body["epochs"] == 10


BAD_JOBS = {
    "unknown dataset": (dict(dataset=99999), "dataset", "does not exist"),
    "dataset not an id": (dict(dataset="titanic"), "dataset", "integer id"),
    "no dataset": (dict(dataset=...), "dataset", "Choose the dataset"),
    "unknown target": (dict(target_column="survivd"), "target_column", "is not a column"),
    "unknown algorithm": (dict(algorithm="xgboost"), "algorithm", "not an algorithm"),
    "unknown task": (dict(task="clustering"), "task", "not a valid choice"),
    "epochs 0": (dict(epochs=0), "epochs", "greater than or equal to 1"),
    "epochs 501": (dict(epochs=501), "epochs", "less than or equal to 500"),
    "epochs not a number": (dict(epochs="many"), "epochs", "valid integer"),
    "test size 0": (dict(test_size=0), "test_size", "strictly between 0 and 1"),
    "test size 1": (dict(test_size=1), "test_size", "strictly between 0 and 1"),
    "name with a slash": (dict(name="a/b"), "name", "slashes"),
}


@pytest.mark.parametrize("case", BAD_JOBS.values(), ids=BAD_JOBS.keys())
def test_bad_jobs_get_400_naming_the_field_and_change_nothing(api, titanic, case, django_capture_on_commit_callbacks):
    change, field, text = case
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(api, "/api/training-jobs/", job_body(titanic, **change))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert field in body["errors"] and text in body["detail"], body
    assert not TrainingJob.objects.exists() and callbacks == []


def test_a_dataset_that_is_not_ready_gets_400_saying_so(api, make_dataset):
    dataset = make_dataset(status="validating")
    response = post(api, "/api/training-jobs/", job_body(dataset))
    assert response.status_code == 400
    assert "is not ready" in response.json()["detail"] and "validating" in response.json()["detail"]
    assert not TrainingJob.objects.exists()


@pytest.mark.parametrize("body", ["[1, 2]", "not json", '"text"', "{}"])
def test_malformed_bodies_get_400(api, body):
    response = api.post("/api/training-jobs/", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["detail"]
    assert not TrainingJob.objects.exists()


def test_list_is_paginated_newest_first_and_filters(api, titanic, penguins, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        ids = [services.training_job_start(user=None, dataset=titanic, target_column="survived", algorithm="sgd", epochs=2).pk
               for _ in range(3)]
        other = services.training_job_start(user=None, dataset=penguins, target_column="species", algorithm="sgd", epochs=2)
    page = api.get("/api/training-jobs/?limit=2").json()
    assert page["count"] == 4 and [j["id"] for j in page["results"]] == [other.pk, ids[2]] and page["next"]
    assert "history" not in page["results"][0]
    assert api.get(f"/api/training-jobs/?dataset={penguins.pk}").json()["count"] == 1
    assert api.get("/api/training-jobs/?status=running").json()["count"] == 0
    detail = api.get(f"/api/training-jobs/{ids[0]}/").json()
    assert detail["history"] == [] and detail["dataset"] == titanic.pk
    assert api.get("/api/training-jobs/999999/").status_code == 404


def test_cancel_a_queued_job_then_409(api, titanic, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        job = services.training_job_start(user=None, dataset=titanic, target_column="survived", algorithm="sgd", epochs=2)
    response = post(api, f"/api/training-jobs/{job.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = post(api, f"/api/training-jobs/{job.pk}/cancel/")
    assert again.status_code == 409 and "already ended" in again.json()["detail"]
    assert post(api, "/api/training-jobs/424242/cancel/").status_code == 404


def test_the_api_needs_authentication(client, titanic):
    assert client.get("/api/training-jobs/").status_code in (401, 403)
    assert client.post("/api/training-jobs/", job_body(titanic), content_type="application/json").status_code in (401, 403)
    assert client.get("/api/models/").status_code in (401, 403)
    assert not TrainingJob.objects.exists()


# --- the registry and deployment ------------------------------------------------------------------------


def test_models_list_with_status_and_deploy(api, titanic, penguins, train_version):
    v1 = train_version(titanic, name="survival")
    v2 = train_version(titanic, name="survival")
    train_version(penguins)
    page = api.get("/api/models/?limit=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    first = api.get(f"/api/models/{v1.pk}/").json()
    assert first["status"] == "inactive" and first["label"] == "survival v1" and first["metrics"]["accuracy"] > 0.6
    assert first["feature_schema"] and first["training_job"] == v1.training_job_id and first["prediction_count"] == 0

    response = post(api, f"/api/models/{v2.pk}/deploy/")
    assert response.status_code == 200
    assert response.json()["model"]["status"] == "active" and response.json()["deployment"]["action"] == "deploy"
    back = post(api, f"/api/models/{v1.pk}/deploy/").json()
    assert back["deployment"]["action"] == "rollback" and back["deployment"]["previous_version_number"] == 2
    assert back["deployment"]["deployed_by"] == "alice"
    assert [m["version"] for m in api.get("/api/models/?name=survival&status=active").json()["results"]] == [1]
    assert api.get("/api/deployments/?name=survival").json()["count"] == 2
    assert post(api, "/api/models/999999/deploy/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_deploys_of_one_name_one_wins_the_other_gets_409(titanic, train_version, user):
    """Two versions of one name deployed at the same time, from two connections. A third connection
    holds the serving version's row lock until both deploys wait on it, so they interleave the same
    way every run: once released, the first replaces the serving version; the second, whose read of
    the serving version is now stale, hit the one-active constraint (a 500). It answers 409."""
    import threading

    from django.db import connection, connections, transaction
    from django.test import Client

    if connection.vendor == "sqlite":
        pytest.skip("SQLite has one writer at a time: two deploys cannot interleave")
    v1, v2, v3 = (train_version(titanic, name="survival") for _ in range(3))
    services.model_version_deploy(version=v1, user=user)
    clients = []
    for _ in range(2):
        client = Client()
        client.force_login(user)
        clients.append(client)
    answers = {}
    lock_taken, release = threading.Event(), threading.Event()

    def hold_the_serving_row():
        with transaction.atomic():
            ModelVersion.objects.select_for_update().get(pk=v1.pk)
            lock_taken.set()
            release.wait(120)
        connections.close_all()

    def deploy(client, version):
        try:
            answers[version.pk] = post(client, f"/api/models/{version.pk}/deploy/")
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_serving_row)
    holder.start()
    assert lock_taken.wait(60)
    deployers = [threading.Thread(target=deploy, args=(c, v)) for c, v in zip(clients, (v2, v3), strict=True)]
    for thread in deployers:
        thread.start()
    try:
        deadline = time.monotonic() + 120
        while _waiting_on_locks() < 2:  # both deploys wait for the serving row
            assert time.monotonic() < deadline, "the two deploys never both waited on the lock"
            time.sleep(0.05)
    finally:
        release.set()
        holder.join(60)
        for thread in deployers:
            thread.join(120)
    codes = sorted(answer.status_code for answer in answers.values())
    assert codes == [200, 409], [a.content[:300] for a in answers.values()]
    lost = next(a for a in answers.values() if a.status_code == 409)
    winner = next(pk for pk, a in answers.items() if a.status_code == 200)
    problem = lost.json()
    assert lost["Content-Type"].startswith("application/problem+json") and problem["status"] == 409
    assert "deployed at the same time" in problem["detail"]
    assert f"{ModelVersion.objects.get(pk=winner).label} is serving now" in problem["detail"]
    assert list(ModelVersion.objects.filter(name="survival", status="active").values_list("pk", flat=True)) == [winner]
    assert Deployment.objects.filter(model_version__name="survival").count() == 2


def _waiting_on_locks() -> int:
    from django.db import connections

    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0]


# --- predictions ----------------------------------------------------------------------------------------


@pytest.fixture
def titanic_model(titanic, train_version):
    return train_version(titanic, name="titanic", algorithm="random_forest", epochs=3)


def test_predict_by_id_and_by_name(api, titanic_model, user, clean_prediction_counters):
    instances, labels = titanic_instances(titanic_model, 200)
    response = post(api, f"/api/models/{titanic_model.pk}/predict/", {"instances": instances})
    assert response.status_code == 200
    body = response.json()
    assert body["model_id"] == titanic_model.pk and body["model_version"] == 1 and len(body["predictions"]) == 200
    assert sum(p == y for p, y in zip(body["predictions"], labels)) / 200 > 0.8
    assert set(body["probabilities"][0]) == {"0", "1"}

    not_deployed = post(api, "/api/models/by-name/titanic/predict/", {"instances": instances[:1]})
    assert not_deployed.status_code == 409 and "deploy" in not_deployed.json()["detail"]
    assert post(api, "/api/models/by-name/nobody/predict/", {"instances": instances[:1]}).status_code == 404

    services.model_version_deploy(user=None, version=titanic_model)
    token = api_token_for(user)
    program = api.__class__(HTTP_AUTHORIZATION=f"Token {token}")
    woman = {**instances[1], "sex": "female", "pclass": 1, "class": "First", "who": "woman", "adult_male": False}
    man = {**instances[0], "sex": "male", "pclass": 3, "class": "Third", "who": "man", "adult_male": True, "age": 30}
    served = post(program, "/api/models/by-name/titanic/predict/", {"instances": [woman, man]})
    assert served.status_code == 200 and served.json()["predictions"] == [1, 0]
    # Counted in Redis: exact in the API before the flush writes it to the database, and after.
    assert ModelVersion.objects.get(pk=titanic_model.pk).prediction_count == 0
    assert api.get(f"/api/models/{titanic_model.pk}/").json()["prediction_count"] == 202
    assert services.prediction_counts_flush() == 1
    assert ModelVersion.objects.get(pk=titanic_model.pk).prediction_count == 202
    assert api.get(f"/api/models/{titanic_model.pk}/").json()["prediction_count"] == 202
    assert services.prediction_counts_flush() == 0  # nothing new: nothing written


BAD_INSTANCES = {
    "missing column": (lambda row: {k: v for k, v in row.items() if k != "age"}, "missing column 'age'"),
    "extra column": (lambda row: {**row, "cabin": "C85"}, "unexpected column 'cabin'"),
    "mistyped column": (lambda row: {**row, "age": "old"}, "column 'age' must be a number"),
    "not an object": (lambda row: [1, 2], "expected an object"),
}


@pytest.mark.parametrize("case", BAD_INSTANCES.values(), ids=BAD_INSTANCES.keys())
def test_bad_instances_get_400_that_says_which_column(api, titanic_model, case, clean_prediction_counters):
    change, text = case
    instances, _ = titanic_instances(titanic_model, 2)
    response = post(api, f"/api/models/{titanic_model.pk}/predict/", {"instances": [instances[0], change(instances[1])]})
    assert response.status_code == 400
    body = response.json()
    assert f"instance 1: {text}" in body["detail"] and body["errors"]["instances"]
    assert ModelVersion.objects.get(pk=titanic_model.pk).prediction_count == 0


@pytest.mark.parametrize(
    "payload, text",
    [
        ({}, "instances"),
        ({"instances": []}, "non-empty list"),
        ({"instances": {"age": 1}}, "non-empty list"),
        ({"rows": [{}]}, "instances"),
        ([{"age": 1}], "instances"),
        ({"instances": [{}] * 10_001}, "At most 10,000 instances"),
    ],
    ids=["empty", "empty list", "not a list", "wrong key", "bare list", "too many"],
)
def test_bad_prediction_requests_get_400(api, titanic_model, payload, text):
    response = post(api, f"/api/models/{titanic_model.pk}/predict/", payload)
    assert response.status_code == 400 and text in response.json()["detail"]
    assert ModelVersion.objects.get(pk=titanic_model.pk).prediction_count == 0


def test_a_full_batch_of_10000_is_served(api, titanic_model, clean_prediction_counters):
    instances, _ = titanic_instances(titanic_model)
    batch = (instances * 12)[:10_000]
    response = post(api, f"/api/models/{titanic_model.pk}/predict/", {"instances": batch})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 10_000


def test_a_model_in_error_answers_503(api, titanic_model):
    ModelVersion.objects.filter(pk=titanic_model.pk).update(status="error")
    instances, _ = titanic_instances(titanic_model, 1)
    response = post(api, f"/api/models/{titanic_model.pk}/predict/", {"instances": instances})
    assert response.status_code == 503 and "cannot serve" in response.json()["detail"]


# --- pages ------------------------------------------------------------------------------------------------


def test_training_page_lists_ready_datasets_and_jobs(api, titanic, make_dataset, django_capture_on_commit_callbacks):
    make_dataset(csv="penguins.csv", name="still profiling", status="profiling")
    with django_capture_on_commit_callbacks():
        job = services.training_job_start(user=None, dataset=titanic, target_column="survived", algorithm="mlp", epochs=3)
    page = api.get("/training/")
    html = page.content.decode()
    assert page.status_code == 200 and 'data-page="training"' in html
    assert f'<option value="{titanic.pk}"' in html and "still profiling" not in html
    assert f'data-job-id="{job.pk}"' in html and 'id="training-data"' in html
    assert "js/pages/training.js" in html and 'aria-current="page"' in html


def test_the_training_form_starts_a_job_or_says_what_is_wrong(api, titanic, django_capture_on_commit_callbacks):
    form = {"dataset": titanic.pk, "target_column": "survived", "task": "", "algorithm": "sgd", "epochs": "3",
            "test_size": "0.2", "name": ""}
    with django_capture_on_commit_callbacks() as callbacks:
        bad = api.post("/training/", {**form, "epochs": "0"})
    assert bad.status_code == 400 and "greater than or equal to 1" in bad.content.decode()
    assert not TrainingJob.objects.exists() and callbacks == []
    with django_capture_on_commit_callbacks() as callbacks:
        good = api.post("/training/", form)
    job = TrainingJob.objects.get()
    assert good.status_code == 302 and good["Location"] == f"/training/jobs/{job.pk}/" and enqueued(callbacks) == 1


def test_job_page_renders_history_for_the_charts(api, titanic, train_version):
    version = train_version(titanic, algorithm="mlp", epochs=4)
    html = api.get(f"/training/jobs/{version.training_job_id}/").content.decode()
    assert 'id="job-data"' in html and '"epoch": 4' in html and "chart.umd.min.js" in html
    assert "js/pages/training_job.js" in html and version.label in html
    assert api.get("/training/jobs/999999/").status_code == 404


def test_models_page_groups_versions_with_deploy_buttons(api, titanic, train_version):
    v1 = train_version(titanic, name="survival")
    v2 = train_version(titanic, name="survival")
    services.model_version_deploy(user=None, version=v2)
    html = api.get("/training/models/").content.decode()
    assert 'data-model-name="survival"' in html and f'id="model-{v1.pk}"' in html
    assert "Serving v2" in html and "Roll back" in html and "js/pages/models.js" in html


def test_pages_need_a_login(client):
    for url in ("/training/", "/training/models/", "/training/jobs/1/"):
        assert client.get(url).status_code == 302


# --- admin ------------------------------------------------------------------------------------------------


def test_admin_lists_and_acts(client, staff_user, titanic, train_version):
    version = train_version(titanic)
    client.force_login(staff_user)
    for url in ("/admin/training/trainingjob/", "/admin/training/modelversion/", "/admin/training/deployment/",
                f"/admin/training/trainingjob/{version.training_job_id}/change/",
                f"/admin/training/modelversion/{version.pk}/change/",
                "/admin/training/modelversion/?status__exact=inactive&q=titanic"):
        assert client.get(url).status_code == 200, url
    response = client.post("/admin/training/modelversion/", {"action": "deploy_versions", "_selected_action": [version.pk]})
    assert response.status_code == 302
    assert ModelVersion.objects.get(pk=version.pk).status == "active" and Deployment.objects.count() == 1
    assert client.get("/admin/training/modelversion/add/").status_code == 403


def test_admin_cancel_action(client, staff_user, titanic, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        job = services.training_job_start(user=None, dataset=titanic, target_column="survived", algorithm="sgd", epochs=2)
    client.force_login(staff_user)
    response = client.post("/admin/training/trainingjob/", {"action": "cancel_jobs", "_selected_action": [job.pk]})
    assert response.status_code == 302
    assert TrainingJob.objects.get(pk=job.pk).status == "cancelled"
