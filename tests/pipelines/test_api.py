"""The pipelines REST API in-process (runs are not executed here: see test_tasks.py)."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from pipelines import demo, services
from pipelines.models import Pipeline, PipelineRun

pytestmark = pytest.mark.django_db(transaction=True)

DEMO_BODY = {"name": "nightly", "description": "d", "schedule": "", "steps": demo.STEPS}


@pytest.fixture
def api(client, user):
    client.force_login(user)
    return client


def post(api, path, data=None):
    return api.post(path, data or {}, content_type="application/json")


def test_the_api_needs_a_login(client, breast_cancer):
    assert client.get("/api/pipelines/").status_code in (401, 403)
    assert client.post("/api/pipelines/", {}, content_type="application/json").status_code in (401, 403)


def test_crud(api, breast_cancer, no_enqueue):
    body = {**DEMO_BODY, "dataset": breast_cancer.pk, "schedule": "0 3 * * *"}
    created = post(api, "/api/pipelines/", body)
    assert created.status_code == 201, created.content
    data = created.json()
    pk = data["id"]
    assert data["dataset"] == breast_cancer.pk and data["dataset_name"] == breast_cancer.name
    assert [s["kind"] for s in data["steps"]] == [s["kind"] for s in demo.STEPS]
    assert data["schedule"] == "0 3 * * *" and data["max_concurrent_runs"] == 1 and data["last_run"] is None
    assert PeriodicTask.objects.filter(name=f"pipeline-{pk}").exists()

    assert api.get("/api/pipelines/").json()["results"][0]["id"] == pk
    put = api.put(f"/api/pipelines/{pk}/", {**body, "name": "renamed", "schedule": ""}, content_type="application/json")
    assert put.status_code == 200, put.content
    assert put.json()["name"] == "renamed" and not PeriodicTask.objects.filter(name=f"pipeline-{pk}").exists()
    patch = api.patch(f"/api/pipelines/{pk}/", {"max_concurrent_runs": 3}, content_type="application/json")
    assert patch.status_code == 200 and patch.json()["max_concurrent_runs"] == 3

    run = post(api, f"/api/pipelines/{pk}/run/")
    assert run.status_code == 201 and run.json()["status"] == "queued" and len(run.json()["step_runs"]) == 5
    assert api.delete(f"/api/pipelines/{pk}/").status_code == 409  # a run is queued
    assert post(api, f"/api/pipeline-runs/{run.json()['id']}/cancel/").json()["status"] == "cancelled"
    assert api.delete(f"/api/pipelines/{pk}/").status_code == 204
    assert not Pipeline.objects.exists() and not PipelineRun.objects.exists()


@pytest.mark.parametrize(
    "change, field, text",
    [
        ({"steps": [{"kind": "train_model", "options": {"algorithm": "sgd", "epochs": 900}}]}, "steps",
         "steps[0] (train_model): epochs must be between 1 and 500"),
        ({"steps": [{"kind": "validate_dataset"}, {"kind": "deploy_model"}]}, "steps",
         "steps[1] (deploy_model): must come after a train_model step"),
        ({"steps": [{"kind": "process_dataset", "options": {"operation": "split", "test_ratio": 2}}]}, "steps",
         "steps[0] (process_dataset): test_ratio: must be a number between 0 and 1"),
        ({"steps": "nope"}, "steps", "steps must be a list"),
        ({"schedule": "every day"}, "schedule", "is not a cron expression"),
        ({"dataset": 999999}, "dataset", "does not exist"),
        ({"name": ""}, "name", ""),
    ],
)
def test_invalid_definitions_are_400_naming_the_step_and_save_nothing(api, breast_cancer, change, field, text):
    response = post(api, "/api/pipelines/", {**DEMO_BODY, "dataset": breast_cancer.pk, **change})
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body["errors"] and any(text in m for m in body["errors"][field]), body
    assert not Pipeline.objects.exists()


def test_an_invalid_update_changes_nothing(api, demo_pipeline):
    steps = [dict(s) for s in demo_pipeline.steps]
    steps[3] = {"kind": "evaluate", "options": {"metric": "auc", "threshold": 0.9}}
    response = api.patch(f"/api/pipelines/{demo_pipeline.pk}/", {"steps": steps}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"]["steps"][0].startswith("steps[3] (evaluate): metric must be one of")
    demo_pipeline.refresh_from_db()
    assert demo_pipeline.steps[3]["options"]["metric"] == "accuracy"


def test_names_are_unique(api, demo_pipeline):
    response = post(api, "/api/pipelines/", {**DEMO_BODY, "name": demo_pipeline.name, "dataset": demo_pipeline.dataset_id})
    assert response.status_code == 400 and "name" in response.json()["errors"]


def test_cancel_and_retry_answer_409_when_the_state_does_not_allow_it(api, demo_pipeline, no_enqueue):
    run_id = post(api, f"/api/pipelines/{demo_pipeline.pk}/run/").json()["id"]
    assert post(api, f"/api/pipeline-runs/{run_id}/retry/").status_code == 409  # queued: nothing to retry
    assert post(api, f"/api/pipeline-runs/{run_id}/cancel/").status_code == 200
    assert post(api, f"/api/pipeline-runs/{run_id}/cancel/").status_code == 409  # already ended
    retry = post(api, f"/api/pipeline-runs/{run_id}/retry/")  # a cancelled run can be retried
    assert retry.status_code == 201 and retry.json()["retry_of"] == run_id
    assert api.get("/api/pipeline-runs/99999/").status_code == 404


def test_runs_list_filters_by_pipeline_and_status(api, demo_pipeline, no_enqueue, user):
    other = services.pipeline_create(user=user, name="other", dataset=demo_pipeline.dataset, steps=[{"kind": "validate_dataset"}])
    mine = post(api, f"/api/pipelines/{demo_pipeline.pk}/run/").json()["id"]
    post(api, f"/api/pipelines/{other.pk}/run/")
    listed = api.get(f"/api/pipeline-runs/?pipeline={demo_pipeline.pk}").json()["results"]
    assert [r["id"] for r in listed] == [mine]
    assert api.get("/api/pipeline-runs/?status=succeeded").json()["results"] == []
    detail = api.get(f"/api/pipeline-runs/{mine}/").json()
    assert [s["kind"] for s in detail["step_runs"]] == [s["kind"] for s in demo_pipeline.steps]
    assert detail["url"] == f"/pipelines/runs/{mine}/"


def test_a_description_or_a_target_column_over_its_length_is_a_clear_400(api, breast_cancer, no_enqueue):
    body = {**DEMO_BODY, "dataset": breast_cancer.pk, "description": "d" * 2_001}
    response = post(api, "/api/pipelines/", body)
    assert response.status_code == 400 and "description" in response.json()["errors"], response.content
    steps = [{"kind": "train_model", "options": {"algorithm": "sgd", "target_column": "t" * 256}}]
    response = post(api, "/api/pipelines/", {**DEMO_BODY, "dataset": breast_cancer.pk, "steps": steps})
    assert response.status_code == 400 and "at most 255 characters" in response.content.decode()
    assert not Pipeline.objects.exists()
