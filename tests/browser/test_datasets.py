"""The datasets pages in a real browser, on a real server and worker: upload with progress, the row
going live to Ready, the profile page with its charts, and a split job completing live."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from datasets.models import Dataset, ProcessingJob
from tests.datasets.conftest import shared_csv

pytestmark = pytest.mark.browser

# docs/screenshot-dataset.png is refreshed only with UPDATE_SCREENSHOT=1 (as docs/screenshot.png);
# otherwise the page is still rendered to a file, under .run/, so a test run leaves the tree clean.
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / ("docs" if os.environ.get("UPDATE_SCREENSHOT") else ".run") / "screenshot-dataset.png"


def test_upload_profile_and_split_live(server, worker, open_page, user):
    penguins = shared_csv("penguins.csv")
    page = open_page(server, user, path="/datasets/")
    expect(page.locator("#connection .label")).to_have_text("Live")
    expect(page.locator("#datasets-empty")).to_be_visible()
    page.evaluate("window.__samePage = true")  # gone if anything reloads the page

    # Upload through the file picker, with a target column.
    page.set_input_files("#upload-file", str(penguins))
    expect(page.locator("#upload-file-name")).to_have_text("penguins.csv")
    expect(page.locator("#upload-columns option[value='species']")).to_have_count(1)  # read from the header
    page.fill("#upload-name", "Penguins")
    page.fill("#upload-target", "species")
    page.click("#upload-submit")

    bar = page.locator("#upload-progress .progress")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(bar.locator(".progress__value")).to_have_text("100%")
    # Bytes of the request body sent (the file plus the form's other fields): all of them.
    expect(page.locator("#upload-bytes")).to_have_text(re.compile(r"^(\d+\.\d KB) of \1$"))
    expect(page.locator("#upload-done")).to_contain_text("Uploaded Penguins")
    # The server's own count of the body (upload_progress events to this user) is shown too.
    expect(page.locator("#upload-server")).to_contain_text("Server received")

    dataset = Dataset.objects.get(name="Penguins")
    row = page.locator(f'#dataset-rows tr[data-dataset-id="{dataset.pk}"]')
    expect(row).to_have_count(1)
    expect(page.locator("#datasets-empty")).to_be_hidden()
    # Validating → Ready, live: the badge, then the numbers of the refreshed row.
    expect(row.locator(".badge")).to_have_text("Ready", timeout=30_000)
    expect(row.locator(".ds-rows")).to_have_text("344")
    expect(row.locator(".ds-columns")).to_have_text("7")
    expect(row.locator(".score__value")).to_have_text(f"{Dataset.objects.get(pk=dataset.pk).quality_score:.1f}")
    assert page.evaluate("window.__samePage === true"), "the page reloaded"

    # The dataset's page: quality, profile table, histograms.
    row.locator(".ds-name__link").click()
    page.wait_for_url(f"**/datasets/{dataset.pk}/")
    expect(page.locator("#dataset-status .badge")).to_have_text("Ready")
    dataset.refresh_from_db()
    expect(page.locator("#quality-score")).to_have_text(f"{dataset.quality_score:.1f}")
    expect(page.locator(".meter")).to_have_count(4)
    expect(page.locator("#profile-table tbody tr")).to_have_count(7)
    expect(page.locator('#profile-table tr[data-column="species"]')).to_contain_text("categorical")
    canvases = page.locator(".chart-tile canvas")
    expect(canvases).to_have_count(7)
    page.wait_for_function("() => window.Chart && Object.keys(window.Chart.instances).length === 7")
    expect(page.locator("#preview-table tbody tr")).to_have_count(50)
    expect(page.locator("#connection .label")).to_have_text("Live")

    # A bad option is refused with the server's explanation.
    page.locator(".segmented__item", has_text="Split").click()
    page.fill("#job-test-ratio", "1.5")
    page.click("#job-submit")
    expect(page.locator("#job-form-error")).to_contain_text("test_ratio")
    assert ProcessingJob.objects.count() == 0

    # A split job: its row appears, progresses and succeeds live, with links to its two outputs.
    page.fill("#job-test-ratio", "0.25")
    page.check("input[name=stratify]")
    page.click("#job-submit")
    expect(page.locator("#job-form-error")).to_be_hidden()
    job_row = page.locator("#job-rows tr").first
    expect(job_row.locator(".job-status .badge")).to_have_text("Succeeded", timeout=30_000)
    expect(job_row.locator(".progress")).to_have_attribute("aria-valuenow", "100")
    outputs = job_row.locator("a.output-link")
    expect(outputs).to_have_count(2)
    expect(outputs.first).to_have_text("Penguins (train)")
    expect(outputs.last).to_have_text("Penguins (test)")
    expect(page.locator("#lineage-children .children__item")).to_have_count(2)
    job = ProcessingJob.objects.get()
    assert job.status == "succeeded" and job.options["stratify"] is True

    page.evaluate("document.querySelectorAll('.toast').forEach((t) => t.remove())")  # they would cover the jobs
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(500)  # let the row highlight and the toasts fade
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # An output's page shows where it came from.
    outputs.first.click()
    expect(page.locator("#lineage-chain")).to_contain_text("Penguins")
    expect(page.locator("#lineage-chain .lineage__edge").first).to_contain_text("split")
    # The refused job's 400 is the only error the browser may log.
    errors = [e for e in page.console_errors if "status of 400" not in e]
    assert not errors, errors


def test_detail_page_follows_its_dataset_live(server, worker, open_page, user):
    from datasets import services
    from datasets.tasks import dataset_ingest

    titanic = shared_csv("titanic.csv")
    dataset = services.dataset_create_from_file(path=str(titanic), name="Titanic", user=user, ingest=False)
    page = open_page(server, user, path=f"/datasets/{dataset.pk}/")
    expect(page.locator("#connection .label")).to_have_text("Live")
    expect(page.locator("#dataset-busy")).to_be_visible()
    expect(page.locator('#busy-steps [data-step="validating"]')).to_have_attribute("data-state", "current")
    expect(page.locator("[data-action=reprofile]")).to_be_disabled()
    page.evaluate("window.__samePage = true")

    # The worker validates and profiles it: the page fills in by itself.
    dataset_ingest.delay(dataset.pk)
    expect(page.locator("#dataset-status .badge")).to_have_text("Ready", timeout=30_000)
    expect(page.locator("#dataset-busy")).to_have_count(0)
    expect(page.locator("#profile-table tbody tr")).to_have_count(15)
    expect(page.locator("#quality-findings")).to_contain_text("duplicate rows")
    page.wait_for_function("() => Object.keys(window.Chart.instances).length === 15")
    expect(page.locator("#job-form")).to_be_visible()

    # Edit: the header follows.
    page.click("[data-action=edit]")
    page.fill("#edit-name", "Titanic passengers")
    page.select_option("#edit-target", "survived")
    page.click("#edit-form button[type=submit]")
    expect(page.locator("#dataset-name")).to_have_text("Titanic passengers")
    expect(page.locator("#dataset-target")).to_have_text("survived")

    # Re-profile: it goes back through validation and comes back ready, live.
    page.click("[data-action=reprofile]")
    expect(page.locator(".toast", has_text="Re-profiling")).to_be_visible()
    expect(page.locator("#dataset-status .badge")).to_have_text("Ready", timeout=30_000)
    expect(page.locator("#profile-table tbody tr")).to_have_count(15)
    expect(page.locator('#profile-table tr[data-column="survived"] .chip--target')).to_have_count(1)
    assert page.evaluate("window.__samePage === true"), "the page reloaded"

    # Delete, confirmed in a dialog: back to the list, which no longer has it.
    page.click("[data-action=delete]")
    expect(page.locator("#delete-dialog")).to_be_visible()
    page.click("#delete-form button[type=submit]")
    page.wait_for_url("**/datasets/")
    expect(page.locator(".toast", has_text="Dataset deleted")).to_be_visible()
    expect(page.locator(f'#dataset-rows tr[data-dataset-id="{dataset.pk}"]')).to_have_count(0)
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert not page.console_errors, page.console_errors


def test_upload_errors_are_shown(server, open_page, user):
    """The server's refusals (problem details) reach the user: 413 too large, 400 with field errors."""
    import json

    page = open_page(server, user, path="/datasets/")
    answers = [
        (413, {"title": "Payload too large", "status": 413, "code": "too_large",
               "detail": "The file is larger than the 512 MB upload limit (DATASET_MAX_UPLOAD_MB)."}),
        (400, {"title": "Invalid request", "status": 400, "code": "invalid",
               "detail": "name: Ensure this field has no more than 200 characters.; file: The submitted file is empty.",
               "errors": {"name": ["Ensure this field has no more than 200 characters."],
                          "file": ["The submitted file is empty."]}}),
    ]

    def answer(route):
        status, body = answers.pop(0)
        route.fulfill(status=status, content_type="application/problem+json", body=json.dumps(body))

    page.route(re.compile(r"/api/datasets/(\?project=\d+)?$"), answer)  # the form posts to its project
    page.set_input_files("#upload-file", str(shared_csv("penguins.csv")))
    page.click("#upload-submit")
    error = page.locator("#upload-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("larger than the 512 MB upload limit")
    expect(page.locator("#upload-progress .progress")).to_have_attribute("data-status", "failed")

    page.click("#upload-submit")  # the file is still chosen: try again
    expect(page.locator("#upload-error-list li")).to_have_count(2)
    expect(page.locator("#upload-error-list")).to_contain_text("file: The submitted file is empty.")
    expect(page.locator("#upload-done")).to_be_hidden()
    assert not Dataset.objects.exists()


def test_anomaly_detection_result_is_morphed_in_live(server, worker, open_page, user):
    from datasets import services

    dataset = services.dataset_create_from_file(path=str(shared_csv("penguins.csv")), name="Penguins", user=user,
                                                ingest=False)
    services.dataset_ingest(dataset_id=dataset.pk)
    page = open_page(server, user, path=f"/datasets/{dataset.pk}/")
    expect(page.locator("#connection .label")).to_have_text("Live")
    section = page.locator("#dataset-anomalies")
    expect(section).to_contain_text("No detection has run on this dataset yet.")
    page.evaluate("window.__samePage = true")
    page.fill("#anomaly-contamination", "0.1")
    section.get_by_role("button", name="Detect anomalies").click()
    expect(section.locator('[data-field="status"] .badge')).to_have_text("Succeeded", timeout=60_000)
    expect(section.locator(".anomaly-rows tbody tr")).to_have_count(20)
    expect(section.locator(".anomalies-summary")).to_contain_text("rows flagged")
    expect(page.locator("#anomaly-contamination")).to_have_value("0.1")  # the form is not re-rendered
    assert page.evaluate("window.__samePage === true"), "the page reloaded"
    assert not page.console_errors, page.console_errors
