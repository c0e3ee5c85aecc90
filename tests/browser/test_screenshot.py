"""docs/screenshot.png: the Live events page after a few events (run with UPDATE_SCREENSHOT=1)."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from mlops_dashboard.events import catalog, publish

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.environ.get("UPDATE_SCREENSHOT"), reason="set UPDATE_SCREENSHOT=1 to refresh docs/screenshot.png"),
]


def test_live_events_screenshot(server, open_page, staff_user):
    from tests.factories import ProjectFactory

    project = ProjectFactory(slug="churn").pk  # before the page: its socket follows it from the start
    # Ping every second, so the latency shown is the steady one, not the page's busy first second.
    page = open_page(server, staff_user, overrides={"pingIntervalMs": 1000}, path="/live/")
    expect(page.locator("#connection .label")).to_have_text("Live")
    events = [
        catalog.TrainingStarted(project_id=project, job_id=12, model_name="churn-classifier", dataset_id=3, total_epochs=20),
        catalog.TrainingProgress(project_id=project, job_id=12, progress=35.0, stage="model_training", current_stage="Epoch 7 of 20",
                                 estimated_time_remaining=42.0, current_epoch=7, total_epochs=20, current_loss=0.412,
                                 live_accuracy=0.861, message="Epoch 7: loss 0.412"),
        catalog.DatasetProcessed(project_id=project, dataset_id=3, status="ready", data={"rows": 48210, "columns": 17}),
        catalog.PipelineProgress(project_id=project, pipeline_id=2, run_id=41, progress=60.0, status="running", current_step="evaluate",
                                 step_index=3, total_steps=5),
        catalog.SystemMetrics(host="worker-1", cpu_percent=37.5, memory_percent=61.2, disk_percent=44.0,
                              active_connections=12, current_health="healthy", api_response_time_ms=24.0,
                              ws_response_time_ms=3.1),
        catalog.TrainingCompleted(project_id=project, job_id=12, model_id=7, final_accuracy=0.934, validation_score=0.921,
                                  training_time=184.2, model_size=1843200, total_epochs=20, rows_used=48210,
                                  rows_total=48210, sampling="all", message="churn-classifier v3 reached 93.4% accuracy."),
    ]
    for event in events:
        publish(event)
    expect(page.locator("#event-log tr")).to_have_count(len(events))
    page.locator("#event-log tr").nth(1).locator("details").evaluate("d => d.open = true")
    expect(page.locator("#toasts .toast")).to_have_count(0, timeout=60_000)  # success toasts leave after 5 s
    page.get_by_role("button", name="Publish test event").click()
    expect(page.locator("#publish-status")).to_contain_text("Delivered in")
    expect(page.locator("#toasts .toast")).to_have_count(1)
    page.wait_for_timeout(1300)  # let the new row's highlight fade
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert not page.console_errors
