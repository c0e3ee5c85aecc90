"""The Telemetry pages in a real Chromium: a source's chart moves while points arrive, a zoom holds
across live updates, and an anomaly of the source toasts and lands in its table. The charts publish
their state on their element (data-points, data-last-x, data-x-min, data-x-max)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from mlops_dashboard.events import catalog, publish
from mlops_dashboard.tokens import api_token_create
from monitoring.models import Anomaly
from telemetry import services
from telemetry.models import Source
from telemetry.selectors import epoch_ms
from telemetry.services import Reading
from tests.browser.conftest import drag_across
from tests.events import expect as expect_event
from tests.factories import ProjectFactory

pytestmark = pytest.mark.browser


def ingest(server, key: str, source: str, values: dict[str, float], at: datetime | None = None) -> int:
    """Readings of one moment through the real server's ingest API (a telemetry token): its process
    sends them live (telemetry/live.py)."""
    ms = epoch_ms(at or timezone.now())
    response = httpx.post(server.url + "/api/telemetry/", headers={"Authorization": f"Token {key}"}, timeout=60,
                          json={"points": [{"source": source, "metric": m, "value": v, "timestamp": ms}
                                           for m, v in values.items()]})
    assert response.status_code == 202, response.text
    return ms


def chart_state(page, metric: str) -> dict:
    return page.locator(f'.tl-chart-card[data-metric="{metric}"] [data-chart]').evaluate(
        "(el) => ({points: Number(el.dataset.points), lastX: Number(el.dataset.lastX || 0),"
        " xMin: Number(el.dataset.xMin), xMax: Number(el.dataset.xMax)})")


def wait_until(check, *, timeout=30.0, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {message}")


@pytest.fixture
def plant(user):
    """press-07 with an hour of temperature and vibration, a reading a minute; the temperature spikes
    to 150 half an hour ago."""
    project = ProjectFactory()
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=59)
    for i in range(60):
        services.points_ingest(user=user, project=project, readings=[
            Reading("press-07", "temperature", start + timedelta(minutes=i), 150.0 if i == 30 else 70.0 + (i % 5)),
            Reading("press-07", "vibration", start + timedelta(minutes=i), 1.0 + (i % 3) / 10)])
    key = api_token_create(user=user, name="plant", scope="telemetry", project=project)[1]
    return project, Source.objects.get(project=project, name="press-07"), key


def open_source(open_page, server, user, source):
    page = open_page(server, user, path=f"/telemetry/sources/{source.pk}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator('.tl-chart-card[data-metric="temperature"] [data-chart]')).to_have_attribute("data-points", "60")
    return page


def test_the_source_chart_moves_while_points_arrive(server, open_page, user, plant):
    project, source, key = plant
    page = open_source(open_page, server, user, source)
    before = chart_state(page, "temperature")
    # Points keep coming until the page shows one of them (the socket's subscription is in place by
    # then). Live points go out at most once a second, so the one shown may not be the newest yet.
    sent: list[int] = []

    def shown() -> bool:
        sent.append(ingest(server, key, "press-07", {"temperature": 80.0 + len(sent), "vibration": 2.0}))
        time.sleep(0.5)
        return chart_state(page, "temperature")["lastX"] in sent

    wait_until(shown, timeout=60, message="the chart to show a new point")
    # Subscribed: one more point, and the chart moves to it.
    sent.append(ingest(server, key, "press-07", {"temperature": 80.0 + len(sent), "vibration": 2.0}))
    page.wait_for_function("() => Number(document.querySelector("
                           "'.tl-chart-card[data-metric=\"temperature\"] [data-chart]').dataset.lastX) === "
                           f"{sent[-1]}", timeout=60_000)
    after = chart_state(page, "temperature")
    assert after["points"] > before["points"] and after["lastX"] > before["lastX"]
    assert after["xMax"] >= before["xMax"]  # following now: the window slid
    expect(page.locator('.tl-chart-card[data-metric="temperature"] [data-latest]')).to_have_text(str(80 + len(sent) - 1))
    # More arrive: the chart keeps growing, the vibration chart too.
    last = ingest(server, key, "press-07", {"temperature": 99.0, "vibration": 3.0})
    page.wait_for_function(f"() => Number(document.querySelector('.tl-chart-card[data-metric=\"vibration\"] [data-chart]').dataset.lastX) === {last}")
    expect(page.locator("#tl-status .badge")).to_have_attribute("data-status", "live")
    assert not page.console_errors


def test_a_zoom_holds_across_live_updates(server, open_page, user, plant):
    project, source, key = plant
    page = open_source(open_page, server, user, source)
    drag_across(page, page.locator('.tl-chart-card[data-metric="temperature"] .u-over'), 0.2, 0.5)
    expect(page.locator("#tl-reset-zoom")).to_be_visible()
    expect(page.locator("#tl-follow")).to_have_attribute("data-following", "false")
    zoomed = chart_state(page, "temperature")
    full = 3600 * 1000
    assert zoomed["xMax"] - zoomed["xMin"] < full * 0.5
    # Every chart follows the zoom.
    assert chart_state(page, "vibration")["xMin"] == zoomed["xMin"]
    # Points keep arriving: the data grows, the view stays where the user put it.
    sent: list[int] = []

    def grew() -> bool:
        sent.append(ingest(server, key, "press-07", {"temperature": 75.0, "vibration": 1.5}))
        time.sleep(0.5)
        return chart_state(page, "temperature")["lastX"] == sent[-1]

    wait_until(grew, message="live points to reach the zoomed chart")
    for _ in range(3):
        sent.append(ingest(server, key, "press-07", {"temperature": 76.0, "vibration": 1.6}))
    page.wait_for_function(f"() => Number(document.querySelector('.tl-chart-card[data-metric=\"temperature\"] [data-chart]').dataset.lastX) === {sent[-1]}")
    page.wait_for_timeout(5500)  # past the page's slide timer
    held = chart_state(page, "temperature")
    assert (held["xMin"], held["xMax"]) == (zoomed["xMin"], zoomed["xMax"])
    assert held["points"] > zoomed["points"] or held["lastX"] > zoomed["lastX"]
    # Reset: the range follows now again.
    page.locator("#tl-reset-zoom").click()
    expect(page.locator("#tl-follow")).to_have_attribute("data-following", "true")
    page.wait_for_function(
        "() => { const el = document.querySelector('.tl-chart-card[data-metric=\"temperature\"] [data-chart]');"
        f" return Number(el.dataset.xMax) - Number(el.dataset.xMin) >= {full - 1000}; }}")
    assert not page.console_errors


def test_an_anomaly_of_the_source_toasts_and_lands_in_its_table(server, open_page, user, plant):
    project, source, key = plant
    page = open_source(open_page, server, user, source)
    expect(page.locator("#tl-anomaly-rows")).to_have_attribute("data-count", "0")
    observed = timezone.now().replace(microsecond=0) - timedelta(minutes=10)
    anomaly = Anomaly.objects.create(source="telemetry", entity="press-07", metric="temperature", value=140.0, score=6.5,
                                     severity="high", project=project, telemetry_source=source, observed_at=observed)
    publish(catalog.AnomalyDetected(source="telemetry", entity="press-07", metric="temperature", value=140.0,
                                    anomaly_score=6.5, severity="high", anomaly_id=anomaly.pk, project_id=project.pk,
                                    source_id=source.pk, observed_at=observed.astimezone(UTC).isoformat()))
    toast = page.locator("#toasts .toast", has_text="press-07")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("temperature")
    expect(toast).to_contain_text("140")
    expect(page.locator(f'#tl-anomaly-rows tr[data-anomaly-id="{anomaly.pk}"]')).to_be_visible()
    expect(page.locator("#tl-anomaly-rows")).to_have_attribute("data-count", "1")
    # Marked on its metric's chart, not on the other.
    expect(page.locator('.tl-chart-card[data-metric="temperature"] [data-chart]')).to_have_attribute("data-marks", "1")
    expect(page.locator('.tl-chart-card[data-metric="vibration"] [data-chart]')).to_have_attribute("data-marks", "0")
    assert not page.console_errors


def test_the_index_shows_sources_and_moves_their_sparklines(server, open_page, user, plant):
    project, source, key = plant
    page = open_page(server, user, path="/telemetry/")
    card = page.locator(f"#tl-source-{source.pk}")
    expect(card.locator(".badge")).to_have_attribute("data-status", "live")
    spark = card.locator('[data-metric="temperature"] .tl-spark')
    expect(spark).to_have_attribute("data-points", "60")
    expect(spark.locator("canvas")).to_have_count(1)
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    sent: list[int] = []

    def moved() -> bool:
        sent.append(ingest(server, key, "press-07", {"temperature": 123.5, "vibration": 2.0}))
        time.sleep(0.5)
        return int(spark.get_attribute("data-points") or 0) > 60

    wait_until(moved, message="the sparkline to grow")
    # The card is re-rendered by the server (last value) and the sparkline survives the morph.
    expect(card.locator('[data-metric="temperature"] [data-field="last-value"]')).to_contain_text("123.5")
    expect(spark.locator("canvas")).to_have_count(1)
    assert not page.console_errors


def test_a_new_source_of_the_project_appears_on_the_index(server, open_page, user, plant):
    project, source, key = plant
    page = open_page(server, user, path="/telemetry/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator(".tl-card")).to_have_count(1)
    sent: list[int] = []

    def appeared() -> bool:
        sent.append(ingest(server, key, "gpu-node-2", {"temperature": 61.0 + len(sent)}))
        time.sleep(0.5)
        return page.locator(".tl-card").count() == 2

    wait_until(appeared, message="the new source's card")
    new = Source.objects.get(project=project, name="gpu-node-2")
    card = page.locator(f"#tl-source-{new.pk}")
    expect(card.locator(".badge")).to_have_attribute("data-status", "live")
    expect(card.locator('[data-metric="temperature"] .tl-spark canvas')).to_have_count(1)
    expect(page.locator("[data-live-count]")).to_have_text("2")
    assert not page.console_errors


def test_a_range_detection_from_the_page_toasts_its_anomalies_and_fills_the_table(server, worker, open_page, user, plant):
    project, source, key = plant
    page = open_source(open_page, server, user, source)
    form = page.locator("#tl-detect-form")
    form.locator('input[name="use_baseline"]').uncheck()  # an hour of history only: fit on the range
    expect(form.locator(".tl-detect__baseline")).to_be_hidden()
    form.locator('input[name="contamination"]').fill("0.05")
    form.locator("#tl-detect-run").click()
    # Accepted: the status names the detection. It says "queued" first, but a quick worker can be past
    # that before the assertion looks, so only the detection's number is waited for.
    expect(page.locator("#tl-detect-status")).to_contain_text("Detection #")
    # The worker runs it: each flagged reading toasts, the summary closes it, the table refreshes.
    expect(page.locator("#toasts .toast", has_text="Anomaly detection finished: press-07")).to_be_visible(timeout=90_000)
    expect(page.locator("#tl-detect-status")).to_contain_text("readings flagged")
    expect(page.locator('#tl-anomaly-rows tr[data-value="150.0"]')).to_have_count(1)
    flagged = Anomaly.objects.filter(telemetry_source=source, detection__isnull=False)
    assert flagged.filter(value=150.0).exists()
    expect(page.locator("#tl-anomaly-rows tr[data-anomaly-id]")).to_have_count(flagged.count())
    assert not page.console_errors


def test_a_bad_detection_request_says_why_on_the_page(server, open_page, user, plant):
    project, source, key = plant
    page = open_source(open_page, server, user, source)
    form = page.locator("#tl-detect-form")
    form.locator('input[name="use_baseline"]').uncheck()
    form.locator('input[name="start"]').fill("2026-01-01T00:00:00")
    form.locator('input[name="end"]').fill("2026-01-01T01:00:00")
    form.locator("#tl-detect-run").click()
    expect(page.locator("#tl-detect-error")).to_be_visible()
    expect(page.locator("#tl-detect-error")).to_contain_text("50")
    assert [e for e in page.console_errors if "400" not in e] == []


def test_a_truncated_event_makes_the_page_refetch_the_range(server, open_page, user, plant, events):
    project, source, key = plant
    page = open_source(open_page, server, user, source)
    page.locator('[data-range="15m"]').click()
    expect(page.locator('[data-range="15m"]')).to_have_attribute("aria-pressed", "true")
    # One request of 1,900 readings, 0.4 s apart, ending now: more than a frame holds (the live event
    # keeps the newest, `truncated`), fewer than a raw chart's cap (the series API answers them all).
    end = epoch_ms(timezone.now())
    points = [{"source": "press-07", "metric": "temperature", "value": 70.123456789 + i / 1e6, "timestamp": end - 400 * i}
              for i in range(1900)]
    response = httpx.post(server.url + "/api/telemetry/", headers={"Authorization": f"Token {key}"}, timeout=60,
                          json={"points": points})
    assert response.status_code == 202, response.text
    chart = page.locator('.tl-chart-card[data-metric="temperature"] [data-chart]')
    expect(chart).to_have_attribute("data-last-x", str(end))
    expect(chart).to_have_attribute("data-resolution", "raw")
    page.wait_for_function(
        "() => Number(document.querySelector('.tl-chart-card[data-metric=\"temperature\"] [data-chart]').dataset.points) >= 1900")
    # The event carried only the newest of them: the rest came from the series API.
    cut = expect_event(events(), "telemetry_points", source_id=source.pk, truncated=True)
    assert len(cut["points"]) < 1900 and cut["points"][-1][1] == end
    assert not page.console_errors
