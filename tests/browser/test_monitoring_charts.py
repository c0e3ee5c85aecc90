"""The Monitoring page's live charts (uPlot) in a real Chromium: they move as host samples arrive,
and a zoom holds across live updates. The charts publish their state on their element (data-points,
data-last-x, data-x-min, data-x-max)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from monitoring import services
from tests.browser.conftest import drag_across

pytestmark = pytest.mark.browser

HOUR_MS = 3600 * 1000
VALUES = {"cpu_percent": 20.0, "memory_percent": 40.0, "disk_percent": 50.0, "load_1": 0.5, "net_sent_rate": 1000.0,
          "net_recv_rate": 2000.0, "active_connections": 3, "api_response_time_ms": 20.0, "ws_response_time_ms": 5.0}


@pytest.fixture(autouse=True)
def clean_monitoring_state(redis_client):
    from django.conf import settings

    for key in redis_client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:monitoring:*", count=1000):
        redis_client.delete(key)


def sample(host="worker-1", at=None, **values) -> int:
    """A host's sample through the real service (stored, then chart_data on the bus): its time in ms."""
    row = services.metric_sample_record(host=host, role="worker", values={**VALUES, **values}, timestamp=at)
    return int(row.timestamp.timestamp() * 1000)


def chart_state(page, name: str) -> dict:
    return page.locator(f"#chart-{name}").evaluate(
        "(el) => ({points: Number(el.dataset.points), lastX: Number(el.dataset.lastX || 0),"
        " xMin: Number(el.dataset.xMin), xMax: Number(el.dataset.xMax)})")


def wait_last_x(page, name: str, t: int):
    page.wait_for_function(f"() => Number(document.getElementById('chart-{name}').dataset.lastX) === {t}")


def open_monitoring(open_page, server, user, points: int):
    page = open_page(server, user, path="/monitoring/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator("#chart-cpu")).to_have_attribute("data-points", str(points))
    return page


def test_the_charts_move_while_samples_arrive(server, open_page, user):
    now = timezone.now()
    for minutes, cpu in ((30, 10.0), (20, 20.0), (10, 30.0)):
        sample(at=now - timedelta(minutes=minutes), cpu_percent=cpu)
    page = open_monitoring(open_page, server, user, 3)
    before = chart_state(page, "cpu")
    assert abs(before["xMax"] - before["xMin"] - HOUR_MS) <= 1000  # the last hour, ending now

    t = sample(cpu_percent=55.0, net_sent_rate=4096.0, api_response_time_ms=42.0)
    for name in ("cpu", "memory", "disk", "network", "latency"):
        wait_last_x(page, name, t)
    after = chart_state(page, "cpu")
    assert after["points"] == 4
    assert after["xMax"] >= max(t, before["xMax"])  # following now: the window slid
    expect(page.locator('[data-chart="cpu"] [data-latest]')).to_have_text("55.0%")
    expect(page.locator('[data-chart="latency"] [data-latest]')).to_have_text("42 ms · 5 ms")
    expect(page.locator("#chart-cpu .u-legend")).to_contain_text("worker-1")
    expect(page.locator("#chart-network .u-legend")).to_contain_text("worker-1 ↓")

    # A new host gets its own series (and legend entry) on the charts it feeds.
    t2 = sample("worker-2", cpu_percent=70.0)
    wait_last_x(page, "cpu", t2)
    expect(page.locator("#chart-cpu .u-legend")).to_contain_text("worker-2")
    expect(page.locator('[data-chart="cpu"] [data-latest]')).to_have_text("55.0% · 70.0%")
    assert not page.console_errors


def test_a_zoom_holds_across_live_updates(server, open_page, user):
    now = timezone.now()
    for minutes in range(55, 0, -5):
        sample(at=now - timedelta(minutes=minutes), cpu_percent=float(minutes))
    page = open_monitoring(open_page, server, user, 11)
    drag_across(page, page.locator("#chart-cpu .u-over"), 0.2, 0.5)
    expect(page.locator("#mon-reset-zoom")).to_be_visible()
    expect(page.locator("#mon-follow")).to_have_attribute("data-following", "false")
    zoomed = chart_state(page, "cpu")
    assert zoomed["xMax"] - zoomed["xMin"] < HOUR_MS * 0.5
    assert zoomed["xMax"] < zoomed["lastX"]  # the zoomed span is in the past
    # Every chart follows the zoom.
    assert (chart_state(page, "network")["xMin"], chart_state(page, "network")["xMax"]) == (zoomed["xMin"], zoomed["xMax"])

    # Samples keep arriving: the data grows, the view stays where the user put it.
    for cpu in (61.0, 62.0):
        t = sample(cpu_percent=cpu)
    wait_last_x(page, "cpu", t)
    expect(page.locator('[data-chart="cpu"] [data-latest]')).to_have_text("62.0%")
    page.wait_for_timeout(15_500)  # past the page's slide timer
    held = chart_state(page, "cpu")
    assert (held["xMin"], held["xMax"]) == (zoomed["xMin"], zoomed["xMax"])
    assert held["points"] == zoomed["points"] + 2

    # Reset: the last hour, following now again.
    page.locator("#mon-reset-zoom").click()
    expect(page.locator("#mon-follow")).to_have_attribute("data-following", "true")
    expect(page.locator("#mon-reset-zoom")).to_be_hidden()
    following = chart_state(page, "cpu")
    assert abs(following["xMax"] - following["xMin"] - HOUR_MS) <= 1000 and following["xMax"] >= t
    assert not page.console_errors
