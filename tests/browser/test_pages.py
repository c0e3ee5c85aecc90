"""Every page, as rendered with real data: it passes axe-core's WCAG 2 A and AA rules, it does not
scroll sideways at a phone's width, and the sidebar's background reaches the bottom of the page."""

import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import add_test_script
from tests.datasets.conftest import shared_csv

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
AXE_RUN = """() => axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
  .then((r) => r.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.length} nodes: ${[...new Set(v.nodes.map(
    (n) => `${n.target.join(" ")}${n.any[0]?.data?.fgColor ? ` ${n.any[0].data.fgColor} on ${n.any[0].data.bgColor}` : ""}`))].slice(0, 8).join("; ")})`))"""
PHONE = {"width": 390, "height": 844}
NARROW_PHONE = {"width": 340, "height": 740}
DESKTOP = {"width": 1280, "height": 800}
OVERFLOW = "() => document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
SIDEBAR_SHORT = """() => {
  const sidebar = document.getElementById("sidebar");
  return sidebar ? document.scrollingElement.scrollHeight - sidebar.getBoundingClientRect().bottom - window.scrollY : 0;
}"""


@pytest.fixture
def site(transactional_db, staff_user):
    """One object of each kind, so every page renders its tables, charts and widgets."""
    from datasets import services as datasets
    from pipelines import services as pipelines
    from training import services as training

    from tests.factories import ProjectFactory

    dataset = datasets.dataset_create_from_file(path=str(shared_csv("penguins.csv")), name="Penguins",
                                                target_column="species", user=staff_user, ingest=False,
                                                project=ProjectFactory())
    datasets.dataset_ingest(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    split = datasets.processing_job_create(dataset=dataset, operation="split", options={"test_ratio": 0.25}, user=staff_user)
    datasets.processing_job_run(job_id=split.pk)
    job = training.training_job_start(user=staff_user, dataset=dataset, target_column="species", algorithm="sgd", epochs=3,
                                      created_by=staff_user, enqueue=False)
    training.training_job_run(job_id=job.pk)
    pipeline = pipelines.pipeline_create(
        user=staff_user, project=dataset.project_id, name="Penguin checks", dataset=dataset, schedule="0 3 * * *",
        description="Checks the penguins every night before anything is trained on them.", steps=[
        {"kind": "validate_dataset", "options": {"required_columns": ["species"]}},
    ])
    run = pipelines.pipeline_run_start(user=staff_user, pipeline=pipeline)
    pipelines.pipeline_run_execute(run_id=run.pk)
    # Hosts on the dashboard and System: one reporting, one that stopped (drawn faded).
    from django.utils import timezone

    from monitoring import services as monitoring
    from monitoring import state
    from monitoring.models import MetricSample

    for host in ("worker-1", "worker-gone"):
        monitoring.metric_sample_record(host=host, role="worker", values={
            "cpu_percent": 35.0, "memory_percent": 72.0, "disk_percent": 91.0})
    MetricSample.objects.filter(host="worker-gone").update(timestamp=timezone.now() - timezone.timedelta(hours=1))
    latest = state.client()
    gone = json.loads(latest.hget(state.key("latest"), "worker-gone"))
    latest.hset(state.key("latest"), "worker-gone", json.dumps({**gone, "at": gone["at"] - 3600}))
    # Telemetry: a source with two metrics and an hour of readings.
    from telemetry import services as telemetry
    from telemetry.models import Source
    from telemetry.services import Reading

    now = timezone.now().replace(microsecond=0)
    telemetry.points_ingest(user=staff_user, project=dataset.project, readings=[
        Reading("press-07", metric, now - timezone.timedelta(minutes=i), value + i % 4)
        for i in range(60) for metric, value in (("temperature", 70.0), ("vibration", 1.0))])
    source = Source.objects.get(project=dataset.project, name="press-07")
    return {
        "telemetry": "/telemetry/",
        "telemetry source": f"/telemetry/sources/{source.pk}/",
        "dashboard": "/",
        "datasets": "/datasets/",
        "dataset": f"/datasets/{dataset.pk}/",
        "training": "/training/",
        "training job": f"/training/jobs/{job.pk}/",
        "models": "/training/models/",
        "pipelines": "/pipelines/",
        "pipeline": f"/pipelines/{pipeline.pk}/",
        "pipeline run": f"/pipelines/runs/{run.pk}/",
        "monitoring": "/monitoring/",
        "system": "/monitoring/system/",
        "live events": "/live/",
    }


def settle(page, path, viewport, signed_in):
    page.set_viewport_size(viewport)
    page.goto(path)
    if signed_in:
        expect(page.locator("#connection .label")).to_have_text("Live")
    page.wait_for_load_state("load")
    add_test_script(page, AXE)


def check(page, path, *, signed_in=True) -> list[str]:
    """What is wrong with the page at `path`: axe violations, sideways scroll, a short sidebar."""
    problems = []
    # A narrower phone too: fonts differ between machines, and a row of buttons that only just fits
    # at 390 px here (the dataset page's, before they could wrap) overflows elsewhere.
    for phone in (NARROW_PHONE, PHONE):
        settle(page, path, phone, signed_in)
        extra = page.evaluate(OVERFLOW)
        if extra > 0:
            problems.append(f"{path}: scrolls {extra} px sideways at {phone['width']} px")
    problems += [f"{path}: axe at {PHONE['width']} px {v}" for v in page.evaluate(AXE_RUN)]
    settle(page, path, DESKTOP, signed_in)
    problems += [f"{path}: axe {v}" for v in page.evaluate(AXE_RUN)]
    short = page.evaluate(SIDEBAR_SHORT)
    if short > 1:
        problems.append(f"{path}: the sidebar ends {short:.0f} px above the bottom of the page")
    problems += [f"{path}: console {e}" for e in page.console_errors]
    page.console_errors.clear()
    return problems


PAGES = ["dashboard", "datasets", "dataset", "training", "training job", "models", "pipelines", "pipeline",
         "pipeline run", "monitoring", "system", "live events", "telemetry", "telemetry source"]


@pytest.mark.parametrize("name", PAGES)
def test_the_page_is_accessible_fits_a_phone_and_has_a_full_height_sidebar(server, open_page, staff_user, site, name):
    problems = check(open_page(server, staff_user), site[name])
    assert not problems, "\n".join(problems)


def test_the_login_page_is_accessible_and_fits_a_phone(server, open_page):
    problems = check(open_page(server), "/login/", signed_in=False)
    assert not problems, "\n".join(problems)


def test_the_sidebar_reaches_the_bottom_of_a_long_page(server, open_page, staff_user, site):
    page = open_page(server, staff_user, path=site["dataset"])
    expect(page.locator("#connection .label")).to_have_text("Live")
    height = page.evaluate("document.scrollingElement.scrollHeight")
    assert height > 2 * DESKTOP["height"], "the page is not long enough to tell"
    bottom = page.evaluate("document.getElementById('sidebar').getBoundingClientRect().bottom + window.scrollY")
    assert bottom >= height
    page.evaluate("window.scrollTo(0, document.scrollingElement.scrollHeight)")
    expect(page.locator("#sidebar .nav")).to_be_in_viewport()  # the navigation still follows the scroll
