"""The pipelines pages: they need a login and render what the database holds."""

from __future__ import annotations

import pytest

from pipelines import services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("path", ["/pipelines/", "/pipelines/1/", "/pipelines/runs/1/"])
def test_pages_need_a_login(client, path):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_list_shows_each_pipeline_with_its_last_run_and_the_editor(client, user, demo_pipeline, no_enqueue):
    run = services.pipeline_run_start(user=user, pipeline=demo_pipeline)
    client.force_login(user)
    response = client.get("/pipelines/")
    html = response.content.decode()
    assert response.status_code == 200
    assert demo_pipeline.name in html and f'href="/pipelines/runs/{run.pk}/"' in html and 'data-status="queued"' in html
    assert 'id="pipeline-editor"' in html and 'id="pipelines-data"' in html and "css/pipelines.css" in html
    assert "js/pages/pipelines.js" in html and "<script>" not in html  # no inline scripts beyond json_script


def test_the_empty_list_says_so(client, user, breast_cancer):
    client.force_login(user)
    assert "No pipelines yet" in client.get("/pipelines/").content.decode()


def test_the_detail_page_shows_the_definition_and_run_history(client, user, demo_pipeline, no_enqueue):
    run = services.pipeline_run_start(user=user, pipeline=demo_pipeline)
    client.force_login(user)
    response = client.get(f"/pipelines/{demo_pipeline.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="run-pipeline"' in html and 'id="edit-card"' in html and f'data-run-id="{run.pk}"' in html
    assert "Quality gate" in html and "accuracy ≥ 0.9" in html
    assert client.get("/pipelines/999999/").status_code == 404


def test_the_run_page_shows_each_step(client, user, demo_pipeline, no_enqueue):
    run = services.pipeline_run_start(user=user, pipeline=demo_pipeline)
    client.force_login(user)
    response = client.get(f"/pipelines/runs/{run.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('class="step-node"') == 5 and 'id="run-log"' in html and 'id="cancel-run"' in html
    assert "js/pages/pipeline_run.js" in html
    assert client.get("/pipelines/runs/999999/").status_code == 404


def test_the_admin_lists_pipelines_and_runs(client, staff_user, demo_pipeline, no_enqueue, user):
    run = services.pipeline_run_start(user=user, pipeline=demo_pipeline)
    client.force_login(staff_user)
    for path in ("/admin/pipelines/pipeline/", f"/admin/pipelines/pipeline/{demo_pipeline.pk}/change/",
                 "/admin/pipelines/pipelinerun/", f"/admin/pipelines/pipelinerun/{run.pk}/change/"):
        response = client.get(path)
        assert response.status_code == 200, path
    assert demo_pipeline.name in client.get("/admin/pipelines/pipeline/").content.decode()


def test_the_admin_creates_pipelines_through_the_service(client, staff_user, breast_cancer, project):
    import json

    from django_celery_beat.models import PeriodicTask

    from pipelines import demo
    from pipelines.models import Pipeline

    client.force_login(staff_user)
    form = {"project": project.pk, "name": "from-admin", "description": "", "dataset": breast_cancer.pk, "schedule": "0 4 * * *",
            "max_concurrent_runs": 1}
    bad = client.post("/admin/pipelines/pipeline/add/", {**form, "steps": json.dumps([{"kind": "deploy_model"}])})
    assert bad.status_code == 200 and "must come after a train_model step" in bad.content.decode()
    assert not Pipeline.objects.exists()
    ok = client.post("/admin/pipelines/pipeline/add/", {**form, "steps": json.dumps(demo.STEPS)})
    assert ok.status_code == 302, ok.content.decode()[:2000]
    pipeline = Pipeline.objects.get(name="from-admin")
    assert pipeline.project == project and pipeline.created_by == staff_user
    assert pipeline.periodic_task == PeriodicTask.objects.get(name=f"pipeline-{pipeline.pk}")


def test_the_run_row_fragment_is_the_row_of_the_run_history(client, user, demo_pipeline, no_enqueue):
    run = services.pipeline_run_start(user=user, pipeline=demo_pipeline)
    client.force_login(user)
    page = client.get(f"/pipelines/{demo_pipeline.pk}/").content.decode()
    response = client.get(f"/pipelines/runs/{run.pk}/row/")
    row = response.content.decode().strip()
    assert response.status_code == 200 and row.startswith(f'<tr data-run-id="{run.pk}" data-status="queued">')
    assert row in page  # the same markup as the row rendered with the page
    assert client.get("/pipelines/runs/999999/row/").status_code == 404
