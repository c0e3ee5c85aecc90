"""Fixtures of the monitoring tests: default alert rules, a clean monitoring state in Redis, ready
datasets, and samples fed through the real services."""

from __future__ import annotations

import pytest
from django.conf import settings


# Environment of the server and worker processes a monitoring test starts: monitoring on, fast.
FAST = {"MONITORING_ENABLED": "1", "MONITORING_INTERVAL": "1", "MONITORING_CHECK_INTERVAL": "1",
        "MONITORING_ROLLUP_INTERVAL": "2"}


@pytest.fixture(autouse=True)
def monitoring_state(redis_client):
    """Each test starts with no monitoring state in Redis (health, windows, locks, workers seen)."""

    def purge():
        for key in redis_client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:monitoring:*", count=1000):
            redis_client.delete(key)

    purge()
    yield
    purge()


@pytest.fixture
def rules(db):
    """The default alert rules (a flushed test database has lost the data migration's rows)."""
    from monitoring import services
    from monitoring.models import AlertRule

    services.alert_rules_install_defaults()
    return {rule.slug: rule for rule in AlertRule.objects.all()}



@pytest.fixture
def ready_dataset(user):
    """ready_dataset("titanic.csv", project=None) -> a ready Dataset of the project (default: the
    default one) with its profile, as the datasets app leaves it (profiled by its pure package)."""
    from datasets import profiling
    from tests.data import shared_csv
    from tests.factories import DatasetFactory, ProjectFactory

    def _make(name: str = "titanic.csv", project=None):
        profile = profiling.profile_csv(str(shared_csv(name)), encoding="utf-8", delimiter=",")
        return DatasetFactory(csv=name, created_by=user, project=project or ProjectFactory(),
                              profile=profile.to_json(), row_count=profile.rows)

    return _make


BASE = {"cpu_percent": 20.0, "memory_percent": 40.0, "disk_percent": 50.0, "load_1": 0.5, "net_sent_rate": 1000.0,
        "net_recv_rate": 2000.0, "active_connections": 1, "api_response_time_ms": 20.0, "ws_response_time_ms": 5.0,
        "predictions_per_minute": 0.0, "model_accuracy": None}


@pytest.fixture
def feed():
    """feed(host="h1", **values) -> a MetricSample stored through metric_sample_record (the collector's
    path after psutil): health, events, anomalies and rules included."""
    from monitoring import services

    def _feed(host: str = "h1", **values):
        return services.metric_sample_record(host=host, role="worker", values={**BASE, **values})

    return _feed
