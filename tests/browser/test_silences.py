"""Silences on the Monitoring page in a real Chromium on the real server: silence an alert from its
row (the dialog prefilled from the alert), see it marked silenced, filter by it, snooze another,
and end the silence from the Silences section (the row is unsilenced live)."""

import re

import pytest
from playwright.sync_api import expect

from monitoring import services
from monitoring.models import Alert, Silence
from tests.factories import ProjectFactory

pytestmark = pytest.mark.browser


@pytest.fixture
def rules(transactional_db):
    """The default alert rules (a flushed test database has lost the data migration's rows)."""
    services.alert_rules_install_defaults()


def test_silence_an_alert_from_its_row_and_see_it_silenced(server, open_page, user, rules):
    project = ProjectFactory()
    alert = services.alert_raise(rule_kind="training_failed", subject="training_job.1", title="Training #1 failed",
                                 project=project)
    other = services.alert_raise(rule_kind="training_failed", subject="training_job.2", title="Training #2 failed",
                                 project=project)
    page = open_page(server, user, path="/monitoring/")
    row = page.locator(f'#alert-rows tr[data-alert-id="{alert.pk}"]')
    other_row = page.locator(f'#alert-rows tr[data-alert-id="{other.pk}"]')
    expect(row.locator('[data-field="silenced"]')).to_have_count(0)

    row.get_by_role("button", name="Silence").click()
    dialog = page.locator("#silence-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Rule")).to_have_value(alert.rule_key)
    expect(dialog.get_by_label("Subject (glob)")).to_have_value("training_job.1")
    expect(dialog.get_by_label("Project id")).to_have_value(str(project.pk))
    expect(dialog.get_by_label("Ends")).to_have_value(re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d$"))
    dialog.get_by_label("Comment").fill("rerunning it")
    dialog.get_by_role("button", name="Silence").click()
    expect(dialog).to_be_hidden()

    expect(row.locator('[data-field="silenced"]')).to_contain_text("Silenced until")
    expect(other_row.locator('[data-field="silenced"]')).to_have_count(0)
    silence = Silence.objects.get()
    assert silence.matchers == {"rule": alert.rule_key, "subject": "training_job.1", "project": project.pk}
    assert Alert.objects.get(pk=alert.pk).is_silenced
    section = page.locator(f'#silence-rows tr[data-silence-id="{silence.pk}"]')
    expect(section).to_contain_text("rerunning it")

    # The filter: silenced only, then not silenced.
    page.locator("#alerts-silenced-filter").select_option("true")
    expect(row).to_be_visible()
    expect(other_row).to_be_hidden()
    page.locator("#alerts-silenced-filter").select_option("false")
    expect(row).to_be_hidden()
    expect(other_row).to_be_visible()
    page.locator("#alerts-silenced-filter").select_option("")

    # Snooze the other for an hour.
    other_row.get_by_text("Snooze").click()
    other_row.get_by_role("button", name="1 h").click()
    expect(other_row.locator('[data-field="silenced"]')).to_contain_text("Silenced until")
    expect(other_row.locator("details.snooze-menu")).not_to_have_attribute("open", "")
    assert Silence.objects.filter(kind="snooze").count() == 1

    # End the silence: the alert's row is unsilenced live.
    section.get_by_role("button", name="Expire").click()
    expect(row.locator('[data-field="silenced"]')).to_have_count(0)
    expect(page.locator(f'#silence-rows tr[data-silence-id="{silence.pk}"]')).to_have_attribute("data-state", "expired")
    assert not page.console_errors
