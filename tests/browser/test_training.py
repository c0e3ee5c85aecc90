"""Training & Models in a real browser, on a real server and worker: start a job from the form,
watch its epochs and learning curves live, cancel one, deploy and roll back on the Models page."""

import re

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.factories import DatasetFactory
from tests.training.conftest import clean_prediction_counters, titanic_instances  # noqa: F401
from training import services
from training.models import ModelVersion, TrainingJob

pytestmark = pytest.mark.browser


@pytest.fixture
def datasets(transactional_db, tmp_path):
    """titanic and penguins, and one big enough that an mlp epoch takes a while."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60_000, 8))
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    df["label"] = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(scale=0.5, size=len(df)) > 0).astype(int)
    slow = tmp_path / "slow.csv"
    df.to_csv(slow, index=False)
    factory = DatasetFactory
    return {
        "titanic": factory(csv="titanic.csv", target_column="survived"),
        "penguins": factory(csv="penguins.csv", target_column="species"),
        "slow": factory(csv=slow, name="slow", target_column="label"),
    }


def chart_points(page, canvas_id):
    return page.evaluate(f"window.Chart.getChart(document.getElementById('{canvas_id}')).data.datasets[0].data.length")


def test_start_from_the_form_then_watch_the_epochs_and_curves_live(server, worker, open_page, user, datasets):
    page = open_page(server, user, path="/training/")
    expect(page.locator("#connection .label")).to_have_text("Live")
    expect(page.locator("body")).to_have_attribute("data-page", "training")

    # The target column select follows the chosen dataset.
    page.select_option("#id_dataset", str(datasets["penguins"].pk))
    expect(page.locator("#id_target_column option")).to_have_count(7)
    expect(page.locator("#id_target_column")).to_have_value("species")
    page.select_option("#id_dataset", str(datasets["slow"].pk))
    expect(page.locator("#id_target_column")).to_have_value("label")
    page.select_option("#id_algorithm", "mlp")
    page.fill("#id_epochs", "12")
    page.fill("#id_name", "slow-net")
    page.click("#start-training")

    page.wait_for_url(re.compile(r"/training/jobs/\d+/$"))
    job = TrainingJob.objects.get(name="slow-net")
    page.evaluate("window.__samePage = true")
    expect(page.locator(".toast", has_text="is queued")).to_be_visible()
    expect(page.locator("#job-status .badge")).to_have_attribute("data-status", "running", timeout=60_000)
    expect(page.locator("#job-epoch")).to_have_text(re.compile(r"^([3-9]|1[0-2])$"), timeout=60_000)
    # Epochs between two coalesced events are fetched from the stored history: give it a moment.
    page.wait_for_function(
        "window.Chart.getChart(document.getElementById('loss-chart')).data.datasets[0].data.length >= 2",
        timeout=30_000,
    )  # the learning curve grows while the job runs
    expect(page.locator("#job-stages [data-stage='model_training']")).to_have_attribute("data-state", re.compile("current|done"))

    expect(page.locator("#job-status .badge")).to_have_text("Succeeded", timeout=90_000)
    expect(page.locator("#job-progress .progress__value")).to_have_text("100%")
    expect(page.locator("#model-link")).to_be_visible()
    expect(page.locator("#job-metrics")).to_be_visible()
    page.wait_for_function("window.Chart.getChart(document.getElementById('accuracy-chart')).data.datasets[0].data.length === 12")
    assert chart_points(page, "loss-chart") == 12
    assert page.evaluate("window.__samePage === true"), "the page reloaded"

    # After a reload the curves come from the stored history.
    page.reload()
    page.wait_for_function("window.Chart && window.Chart.getChart(document.getElementById('loss-chart'))")
    assert chart_points(page, "loss-chart") == 12
    job.refresh_from_db()
    assert job.status == "succeeded" and len(job.history) == 12
    assert not page.console_errors


def test_the_jobs_list_follows_a_job_started_elsewhere_and_cancels_it(server, worker, open_page, user, datasets):
    page = open_page(server, user, path="/training/")
    expect(page.locator("#connection .label")).to_have_text("Live")
    expect(page.locator("#jobs-empty")).to_be_visible()
    job = services.training_job_start(user=None, dataset=datasets["slow"], target_column="label", algorithm="mlp", epochs=200)
    row = page.locator(f'#job-rows tr[data-job-id="{job.pk}"]')
    expect(row).to_have_count(1, timeout=30_000)  # added from the API when its first event arrives
    expect(row.locator(".badge")).to_have_text("Running", timeout=60_000)
    expect(row.locator(".job-epoch")).to_have_text(re.compile(r"^Epoch [1-9]\d* / 200$"), timeout=60_000)
    row.locator("[data-action='cancel']").click()
    expect(row.locator(".badge")).to_have_text("Cancelled", timeout=30_000)
    assert TrainingJob.objects.get(pk=job.pk).status == "cancelled"
    assert not page.console_errors


def test_deploy_and_roll_back_on_the_models_page_with_live_counts(server, open_page, user, datasets, client,
                                                                  clean_prediction_counters):
    titanic = datasets["titanic"]

    def train(algorithm, name="survival"):
        job = services.training_job_start(user=None, dataset=titanic, target_column="survived", algorithm=algorithm, epochs=3,
                                          name=name, enqueue=False)
        return services.training_job_run(job_id=job.pk)

    v1, v2 = train("sgd"), train("random_forest")
    page = open_page(server, user, path="/training/models/")
    expect(page.locator("#connection .label")).to_have_text("Live")
    group = page.locator('.model-group[data-model-name="survival"]')
    expect(group.locator("tr[data-model-id]")).to_have_count(2)
    expect(group.locator(".group-serving")).to_have_text("Not deployed")

    row1, row2 = page.locator(f"#model-{v1.pk}"), page.locator(f"#model-{v2.pk}")
    row2.locator("[data-action='deploy']").click()
    expect(row2.locator(".badge")).to_have_text("Active")
    expect(row2.locator("[data-action='deploy']")).to_have_text("Serving")
    expect(row1.locator("[data-action='deploy']")).to_have_text("Roll back")
    row1.locator("[data-action='deploy']").click()
    expect(row1.locator(".badge")).to_have_text("Active")
    expect(row2.locator(".badge")).to_have_text("Inactive")
    expect(group.locator(".group-serving")).to_have_text("Serving v1")
    expect(page.locator("#stat-serving")).to_have_text("1")
    assert dict(ModelVersion.objects.values_list("version", "status")) == {1: "active", 2: "inactive"}

    # Deployed elsewhere (the API): the status dots follow.
    client.force_login(user)
    assert client.post(f"/api/models/{v2.pk}/deploy/").status_code == 200
    expect(row2.locator(".badge")).to_have_text("Active")
    expect(row1.locator(".badge")).to_have_text("Inactive")

    # Predictions: the counts go up live (prediction_volume).
    instances, _ = titanic_instances(v2, 150)
    response = client.post("/api/models/by-name/survival/predict/", {"instances": instances},
                           content_type="application/json")
    assert response.status_code == 200
    expect(row2.locator(".model-predictions")).to_have_text("150")
    expect(page.locator("#stat-predictions")).to_have_text("150")

    # A version registered while the page is open appears in its group.
    v3 = train("mlp")
    expect(page.locator(f"#model-{v3.pk} .badge")).to_have_text("Inactive")
    expect(group.locator("tr[data-model-id]")).to_have_count(3)
    expect(row2.locator(".model-predictions")).to_have_text("150")  # the morphed card keeps the live counts

    # A new name gets a card of its own, first.
    v4 = train("sgd", name="survival-lite")
    expect(page.locator(".model-group").first).to_have_attribute("data-model-name", "survival-lite")
    expect(page.locator(f"#model-{v4.pk} [data-action='deploy']")).to_have_text("Deploy")
    expect(page.locator("#stat-models")).to_have_text("2")
    expect(page.locator("#stat-versions")).to_have_text("4")
    assert not page.console_errors
