"""Service checks: every component with a status and a latency; service_health and
integration_status on each check, component_health when one component's status changes, and the
components in the system's health. The collector's choice of processes."""

import pytest

from monitoring import checks, collector, services

pytestmark = pytest.mark.django_db(transaction=True)


def fake_result(**statuses):
    def item(name):
        return checks.component(name, statuses.get(name, "healthy"), 1.0, "")

    return {"services": [item(n) for n in checks.SERVICES], "integrations": [item(n) for n in checks.INTEGRATIONS],
            "workers": [], "checked_at": checks.now_iso()}


def test_real_checks_answer_every_component_with_a_status_and_latency():
    result = checks.run_all()
    by_name = {c["name"]: c for c in result["services"] + result["integrations"]}
    assert set(by_name) == set(checks.SERVICES) | set(checks.INTEGRATIONS)
    for name in ("database", "redis", "channel_layer", "event_bus", "broker"):
        assert by_name[name]["status"] == "healthy" and by_name[name]["latency_ms"] >= 0, by_name[name]
    celery = by_name["celery"]  # healthy with the session's worker up, critical without one
    assert (celery["status"] == "healthy") == bool(celery["workers"]) == bool(result["workers"])
    assert by_name["model_serving"]["status"] == "inactive" and by_name["socket_server"]["status"] == "unknown"
    assert all(c["checked_at"] and c["label"] for c in by_name.values())


def test_a_slow_check_is_a_warning():
    assert checks.component("redis", "healthy", 1500.0)["status"] == "warning"


def test_component_health_is_published_when_a_status_changes(monkeypatch, events):
    results = iter([fake_result(), fake_result(), fake_result(redis="critical"), fake_result()])
    monkeypatch.setattr(checks, "run_all", lambda known_workers=0: next(results))
    for _ in range(4):
        services.services_check()
    assert len(events("service_health")) == 4 and len(events("integration_status")) == 4
    changes = [(e["component"], e["status"], e["metrics"]["previous"]) for e in events("component_health")]
    assert changes == [("redis", "critical", "healthy"), ("redis", "healthy", "critical")]
    health = [(e["previous_health"], e["current_health"]) for e in events("health_change")]
    assert health == [("healthy", "critical"), ("critical", "healthy")]
    assert "Redis is critical" in events("health_change")[0]["reason"]
    events.expect("component_health", component="redis", status="healthy", metrics={"previous": "critical"})
    events.expect("health_change", previous_health="critical", current_health="healthy")
    events.expect("service_health", services=[{"name": name, "status": "healthy"} for name in checks.SERVICES])
    events.expect("integration_status",
                  integrations=[{"name": name, "status": "healthy"} for name in checks.INTEGRATIONS])


def test_the_services_api_answers_the_last_check(client, user, monkeypatch):
    monkeypatch.setattr(checks, "run_all", lambda known_workers=0: fake_result(broker="warning"))
    services.services_check()
    client.force_login(user)
    body = client.get("/api/monitoring/services/").json()
    assert {c["name"]: c["status"] for c in body["integrations"]}["broker"] == "warning"


@pytest.mark.parametrize("argv, role", [
    (["/srv/.venv/bin/uvicorn", "mlops_dashboard.asgi:application"], "asgi"),
    (["/srv/.venv/lib/python3.11/site-packages/uvicorn/__main__.py", "x"], "asgi"),
    (["/usr/bin/daphne", "x"], "asgi"),
    (["/srv/.venv/lib/python3.11/site-packages/daphne/__main__.py", "x"], "asgi"),
    (["manage.py", "runserver", "--noreload"], "asgi"),
    (["manage.py", "migrate"], None),
    (["/srv/.venv/bin/celery", "-A", "mlops_dashboard", "worker"], None),  # worker_ready starts it
    (["/srv/.venv/bin/pytest"], None),
])
def test_only_server_processes_start_a_collector_on_their_own(settings, argv, role):
    settings.MONITORING_COLLECTOR_ROLE = "auto"
    assert collector.server_process_role(argv) == role
    assert role is None or collector.samples_host(role)
    # `make run`'s servers leave the host's samples to the workers, and still report their figures.
    settings.MONITORING_COLLECTOR_ROLE = "worker"
    assert collector.server_process_role(argv) == role
    assert role is None or not collector.samples_host(role)
    assert collector.samples_host("worker")
    settings.MONITORING_COLLECTOR_ROLE = "off"
    assert collector.server_process_role(argv) is None


def test_the_collector_does_not_start_while_monitoring_is_disabled(settings):
    settings.MONITORING_ENABLED = False
    assert collector.start("asgi") is False and not collector.running()
