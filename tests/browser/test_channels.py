"""Notification channels as a user sees them: a real Chromium on the real server, the real session
worker sending to a real HTTP server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from monitoring.models import Delivery, NotificationChannel
from tests.factories import NotificationChannelFactory

pytestmark = pytest.mark.browser


def record_toasts(page) -> None:
    """Keep the text of every toast shown in `window.__toasts` (they fade after a few seconds)."""
    page.evaluate("""() => { window.__toasts = []; new MutationObserver((changes) => { for (const c of changes)
        for (const n of c.addedNodes) if (n.nodeType === 1) window.__toasts.push(n.textContent); })
        .observe(document.getElementById("toasts"), { childList: true }); }""")


def test_create_a_channel_send_a_test_and_see_it_delivered(server, worker, open_page, user, project, webhook_server):
    """alice (a maintainer of the current project) creates a channel pointing at a real HTTP server,
    clicks Send test, and sees the delivery marked sent in the row, live, with a toast; the server
    got the message. The URL is never shown again."""
    page = open_page(server, user, path="/monitoring/")
    expect(page.locator("#connection .label")).to_have_text("Live")
    section = page.locator("#channels")
    expect(section.get_by_role("heading", name="Notification channels")).to_be_visible()

    url = webhook_server.url("browser-path-s3cret")
    page.fill("#id_channel-name", "Browser hook")
    page.fill("#id_channel-url", url)
    page.select_option("#id_channel-min_priority", "medium")
    expect(page.locator("#id_channel-project")).to_have_value(str(project.pk))
    page.click("#channel-submit")
    expect(page).to_have_url(re.compile(r"/monitoring/(#channels)?$"))

    channel = NotificationChannel.objects.get(name="Browser hook")
    assert channel.project_id == project.pk and channel.url == url
    row = page.locator(f'#channel-rows tr[data-channel-id="{channel.pk}"]')
    expect(row.locator('[data-field="url"]')).to_have_text(f"json://127.0.0.1:{webhook_server.port}/***")
    assert "browser-path-s3cret" not in page.content()
    expect(row.locator('[data-field="delivery"]')).to_contain_text("No delivery yet")
    expect(page.locator("#connection .label")).to_have_text("Live")

    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    record_toasts(page)
    row.get_by_role("button", name="Send test").click()
    expect(row.locator("[data-delivery-status]")).to_have_attribute("data-delivery-status", "sent", timeout=60_000)
    expect(row.locator('[data-field="delivery"]')).to_contain_text("1 attempt")
    page.wait_for_function("() => window.__toasts.some((t) => t.includes('Test notification sent'))")
    assert page.evaluate("window.__sameDocument") is True

    (received,) = webhook_server.wait(1)
    assert received["path"] == "/browser-path-s3cret"
    assert "Test from the MLOps dashboard: Browser hook" in received["json"]["title"]
    delivery = Delivery.objects.get(channel=channel)
    assert (delivery.status, delivery.attempts, delivery.notification.kind) == ("sent", 1, "test")
    assert not page.console_errors


def test_a_failing_test_shows_a_toast_and_the_scrubbed_error_in_the_row(server, worker, open_page, staff_user, project):
    """A global channel pointing at a closed port: staff click Send test; the row shows the failure
    without the URL's secrets, and a toast says so (once when it first fails, once when it gives up)."""
    from tests.receivers import closed_port

    channel = NotificationChannelFactory(name="Dead hook",
                                         url=f"jsons://hookuser:pa55word@127.0.0.1:{closed_port()}/t0k3n")
    page = open_page(server, staff_user, path="/monitoring/")
    expect(page.locator("#connection .label")).to_have_text("Live")
    row = page.locator(f'#channel-rows tr[data-channel-id="{channel.pk}"]')
    record_toasts(page)
    row.get_by_role("button", name="Send test").click()
    expect(row.locator("[data-delivery-status]")).to_have_attribute("data-delivery-status", "failed", timeout=60_000)
    expect(row.locator('[data-field="delivery"]')).to_contain_text("3 attempts")
    expect(row.locator('[data-field="error"]')).to_contain_text("failures in a row")
    # One toast when it first fails (retrying), one when it gives up: none for the retry between.
    page.wait_for_function("() => window.__toasts.filter((t) => t.includes('Dead hook failed')).length >= 2")
    shown = [t for t in page.evaluate("window.__toasts") if "Dead hook failed" in t]
    assert len(shown) == 2 and "retrying" in shown[0] and "retrying" not in shown[1], shown
    # 3 failed attempts in a row: its own system alert, shown like any other.
    page.wait_for_function("() => window.__toasts.some((t) => t.includes('Notification channel failing: Dead hook'))")
    html = page.content()
    assert "pa55word" not in html and "t0k3n" not in html and "hookuser" not in html
