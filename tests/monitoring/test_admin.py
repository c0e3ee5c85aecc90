"""The admin: alert actions go through the services (events included); rules are edited through them."""

import pytest

from monitoring import services
from monitoring.models import Alert, AlertRule

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_actions_acknowledge_and_resolve(client, staff_user, rules, events):
    a = services.alert_raise(rule_kind="training_failed", subject="training_job.1", title="one")
    b = services.alert_raise(rule_kind="training_failed", subject="training_job.2", title="two")
    client.force_login(staff_user)
    url = "/admin/monitoring/alert/"
    assert client.get(url).status_code == 200 and client.get(f"{url}{a.pk}/change/").status_code == 200
    client.post(url, {"action": "acknowledge_alerts", "_selected_action": [a.pk]})
    client.post(url, {"action": "resolve_alerts", "_selected_action": [a.pk, b.pk]})
    a.refresh_from_db(), b.refresh_from_db()
    assert (a.status, a.acknowledged_by, a.resolved_by) == ("resolved", staff_user, staff_user)
    assert b.status == "resolved"
    assert [e["alert"]["status"] for e in events("system_alert")] == ["open", "open", "acknowledged", "resolved",
                                                                       "resolved"]


def test_admin_edits_rules_through_the_services(client, staff_user, rules):
    client.force_login(staff_user)
    rule = AlertRule.objects.get(slug="cpu-high")
    alert = services.alert_raise(rule=rule, rule_kind="metric", subject="h1", title="CPU high on h1")
    client.post("/admin/monitoring/alertrule/", {"action": "disable_rules", "_selected_action": [rule.pk]})
    rule.refresh_from_db()
    alert.refresh_from_db()
    assert not rule.enabled and alert.status == "resolved"  # disabling resolved its alert
    response = client.post("/admin/monitoring/alertrule/add/", {
        "slug": "load", "name": "Load", "kind": "metric", "metric": "load_1", "comparison": "gt", "threshold": "4",
        "duration_seconds": "0", "priority": "low", "enabled": "on", "description": "", "suggested_actions": "[]"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AlertRule.objects.get(slug="load").threshold == 4
    for url in ("/admin/monitoring/metricsample/", "/admin/monitoring/anomaly/", "/admin/monitoring/anomalydetection/",
                "/admin/mlops_dashboard/activity/"):
        assert client.get(url).status_code == 200, url
