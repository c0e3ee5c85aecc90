"""Pipelines as a user sees them: a real Chromium on the real server, a real Celery worker."""

import re

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from pipelines import services
from pipelines.models import Pipeline, PipelineRun

pytestmark = pytest.mark.browser


def ready_dataset(path, name, target):
    from datasets import services as dataset_services

    dataset = dataset_services.dataset_create_from_file(path=str(path), name=name, target_column=target, ingest=False)
    dataset_services.dataset_ingest(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    assert dataset.status == "ready", dataset.errors
    return dataset


@pytest.fixture
def slow_dataset(transactional_db, tmp_path):
    """Enough rows that a few mlp epochs take seconds: the run is watched while it runs."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60_000, 10))
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    df["label"] = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    path = tmp_path / "slow.csv"
    df.to_csv(path, index=False)
    return ready_dataset(path, "slow", "label")


def test_run_button_then_the_run_page_shows_each_step_succeed_live(server, worker, open_page, user, slow_dataset):
    pipeline = services.pipeline_create(user=user, name="Browser pipeline", dataset=slow_dataset, steps=[
        {"kind": "validate_dataset", "options": {"required_columns": ["label"]}},
        {"kind": "train_model", "options": {"algorithm": "mlp", "epochs": 12}},
        {"kind": "evaluate", "options": {"metric": "accuracy", "threshold": 0.5}},
        {"kind": "deploy_model", "options": {}},
    ])
    page = open_page(server, user, path=f"/pipelines/{pipeline.pk}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Browser pipeline")
    expect(page.locator("#connection .label")).to_have_text("Live")
    expect(page.locator("#runs-empty")).to_be_visible()

    page.locator("#run-pipeline").click()
    row = page.locator("#runs-table tbody tr").first
    expect(row.locator(".badge")).to_have_attribute("data-status", re.compile("queued|running"))
    row.locator("a.run-link").click()
    expect(page).to_have_url(re.compile(r"/pipelines/runs/\d+/$"))
    run = PipelineRun.objects.get(pipeline=pipeline)
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    nodes = page.locator(".step-node")
    expect(nodes).to_have_count(4)
    assert nodes.nth(3).get_attribute("data-status") in ("queued", "running")  # not finished when the page opened
    expect(nodes.nth(1)).to_have_attribute("data-status", "running", timeout=60_000)
    for index in range(4):
        expect(nodes.nth(index)).to_have_attribute("data-status", "succeeded", timeout=90_000)
        expect(nodes.nth(index).locator(".badge")).to_have_text("Succeeded")
    expect(page.locator("#run-status .badge")).to_have_text("Succeeded")
    expect(page.locator("#run-progress .progress__value")).to_have_text("100%")
    expect(page.locator("#run-log")).to_contain_text("Registered")
    expect(nodes.nth(1).locator("[data-step-outputs] a", has_text="Training job")).to_be_visible()
    expect(nodes.nth(2).locator(".metric-pill")).to_contain_text("accuracy")
    expect(page.locator("#cancel-run")).to_be_hidden()
    assert page.evaluate("window.__sameDocument") is True
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert not page.console_errors


def test_the_step_editor_shows_errors_on_the_step_and_creates_the_pipeline(server, open_page, user, slow_dataset):
    page = open_page(server, user, path="/pipelines/")
    expect(page.locator("#connection .label")).to_have_text("Live")
    form = page.locator("#pipeline-editor")
    form.get_by_label("Name", exact=True).fill("From the editor")
    cards = form.locator(".step-card")
    expect(cards).to_have_count(4)  # a starting set: validate, train, gate, deploy

    # Reorder: the gate before the training is refused, naming the step.
    cards.nth(2).get_by_role("button", name="Move up").click()
    expect(cards.nth(1)).to_have_attribute("data-kind", "evaluate")
    cards.nth(2).get_by_label(re.compile("Epochs")).fill("0")
    form.get_by_role("button", name="Create pipeline").click()
    expect(cards.nth(1).locator(".step-card__errors")).to_contain_text("steps[1] (evaluate): must come after a train_model step")
    expect(cards.nth(2).locator(".step-card__errors")).to_contain_text("steps[2] (train_model): epochs must be between 1 and 500")
    assert not Pipeline.objects.exists()

    cards.nth(1).get_by_role("button", name="Move down").click()
    cards.nth(1).get_by_label(re.compile("Epochs")).fill("5")
    form.locator("[data-add-kind]").select_option("process_dataset")
    form.get_by_role("button", name="Add step").click()
    expect(cards).to_have_count(5)
    cards.nth(4).get_by_role("button", name="Move up").click()
    cards.nth(4).get_by_role("button", name="Remove step").click()  # the deploy step
    expect(cards).to_have_count(4)
    expect(form.locator("[data-json-preview]")).to_contain_text('"kind": "process_dataset"')
    form.get_by_role("button", name="Create pipeline").click()
    expect(page).to_have_url(re.compile(r"/pipelines/\d+/$"))
    pipeline = Pipeline.objects.get(name="From the editor")
    assert [s["kind"] for s in pipeline.steps] == ["validate_dataset", "train_model", "evaluate", "process_dataset"]
    assert pipeline.steps[1]["options"]["epochs"] == 5 and pipeline.dataset == slow_dataset
    expect(page.locator("#definition li")).to_have_count(4)
    # The refused first attempt is a 400 the browser logs; nothing else went wrong.
    assert [e for e in page.console_errors if "status of 400" not in e] == []


def test_a_viewer_sees_no_run_edit_or_delete_and_an_editor_runs_but_edits_only_its_own(server, open_page):
    """Buttons a role may not press are not on the page; a locked hint names the role instead."""
    from tests.factories import DatasetFactory, PipelineFactory, ProjectFactory, UserFactory, member

    project = ProjectFactory()
    viewer, editor, author = (UserFactory(username=name) for name in ("vic", "ed", "author"))
    member(viewer, "viewer", project)
    member(editor, "editor", project)
    member(author, "editor", project)
    pipeline = PipelineFactory(name="Shared pipeline", dataset=DatasetFactory(project=project, target_column="survived"),
                               created_by=author)

    page = open_page(server, viewer, path="/pipelines/")
    expect(page.locator("#pipelines-table tbody tr")).to_have_count(1)
    expect(page.locator("[data-run-pipeline]")).to_have_count(0)
    expect(page.locator("#pipeline-editor")).to_have_count(0)
    expect(page.locator(".locked-action").first).to_have_attribute("title", re.compile("needs the editor role"))
    page.goto(f"/pipelines/{pipeline.pk}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Shared pipeline")
    for button in ("#run-pipeline", "#edit-pipeline", "#delete-pipeline"):
        expect(page.locator(button)).to_have_count(0)
    expect(page.locator(".locked-action")).to_have_count(3)
    assert not page.console_errors

    page = open_page(server, editor, path=f"/pipelines/{pipeline.pk}/")
    expect(page.locator("#run-pipeline")).to_be_visible()
    expect(page.locator("#edit-pipeline")).to_have_count(0)
    expect(page.locator("#delete-pipeline")).to_have_count(0)
    expect(page.locator(".locked-action", has_text="Delete")).to_have_attribute(
        "title", re.compile("maintainer role.*editors may change only what they created"))
    assert not page.console_errors
