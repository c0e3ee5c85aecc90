"""A telemetry series' anomaly, found by the worker as readings arrive, pops up as a toast on the
project's pages (Chromium); a host metric's anomaly does not (the Monitoring page lists those)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from playwright.sync_api import expect

from mlops_dashboard.events import catalog, publish
from telemetry import services as telemetry_services

pytestmark = pytest.mark.browser

T0 = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)


def test_a_telemetry_anomaly_toasts_on_the_projects_pages(server, worker, open_page, user, project):
    from monitoring import services

    services.alert_rules_install_defaults()
    page = open_page(server, user, path="/")
    expect(page.locator("#connection .label, #connection").first).to_contain_text("Live")
    publish(catalog.AnomalyDetected(source="metrics", entity="host-a", metric="cpu_percent", value=99.0,
                                    anomaly_score=9.0, severity="medium", project_id=None))
    values = np.round(62.0 + np.random.default_rng(3).normal(0, 0.4, 110), 1).tolist()
    values[100:] = [v + 10.0 for v in values[100:]]

    def reading(i):
        return telemetry_services.Reading(source="press-07", metric="temperature",
                                          timestamp=T0 + timedelta(minutes=i), value=float(values[i]))

    telemetry_services.points_ingest(user=user, project=project, readings=[reading(i) for i in range(100)])
    for i in range(100, 110):
        telemetry_services.points_ingest(user=user, project=project, readings=[reading(i)])

    toast = page.locator("#toasts .toast").filter(has_text="press-07 · temperature:")
    expect(toast).to_be_visible(timeout=60_000)
    expect(toast).to_contain_text("anomaly")
    expect(toast).to_contain_text("usually 61.")  # the baseline, rounded
    # The alert it opened toasts under its own title.
    expect(page.locator("#toasts .toast").filter(has_text="Anomaly: temperature on press-07")).to_be_visible()
    expect(page.locator("#toasts .toast").filter(has_text="cpu_percent")).to_have_count(0)
