"""The alert's page in a real Chromium: its deliveries appear as the session's worker sends them
(notification_sent morphs in the server's fragment), and the Monitoring page's row links to it."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from monitoring import services
from monitoring.models import Alert, AlertRule, Notification
from tests import procs
from tests.factories import NotificationChannelFactory

pytestmark = pytest.mark.browser


def test_the_alert_page_shows_a_delivery_as_it_is_sent(server, worker, open_page, staff_user, webhook_server):
    services.alert_rules_install_defaults()
    rule = AlertRule.objects.get(slug="cpu-high")
    alert = services.alert_raise(rule=rule, rule_kind="metric", subject="h1", title="CPU above 90% on h1",
                                 message="CPU 97.0% — CPU > 90% for 60 s.")
    # No channel yet: the group goes nowhere, the page says nothing was sent.
    procs.wait_for(lambda: Notification.objects.filter(alerts=alert, status="skipped").exists(), timeout=60,
                   message="the first group skipped")
    NotificationChannelFactory(name="hook", url=webhook_server.url())
    page = open_page(server, staff_user, path="/monitoring/")
    page.locator(f'#main a[href="/monitoring/alerts/{alert.pk}/"]').first.click()
    expect(page.locator("h1")).to_have_text("CPU above 90% on h1")
    expect(page.locator("#no-deliveries")).to_be_visible()
    # A repeat goes out through the worker: its delivery appears, sent, without reloading.
    Alert.objects.filter(pk=alert.pk).update(last_notified_at=timezone.now() - timedelta(minutes=rule.repeat_interval_minutes + 1))
    assert services.notifications_sweep()["repeats"] == 1
    row = page.locator("#deliveries tbody tr")
    expect(row).to_have_count(1, timeout=60_000)
    expect(row.first).to_have_attribute("data-status", "sent", timeout=60_000)
    expect(row.first).to_contain_text("hook")
    assert webhook_server.wait(1)[0]["json"]["title"].startswith("[STILL OPEN]")
    assert not page.console_errors
