"""Downsampling and retention: raw samples become per-minute averages; old rows go."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import selectors, services
from monitoring.models import Anomaly, MetricSample

pytestmark = pytest.mark.django_db


def raw(host, at, cpu, health="healthy"):
    return MetricSample.objects.create(host=host, role="worker", timestamp=at, cpu_percent=cpu, memory_percent=cpu / 2,
                                       disk_percent=50, active_connections=2, health=health, net_bytes_sent=int(cpu))


def test_raw_samples_roll_up_into_one_row_per_host_and_minute(settings):
    now = timezone.now().replace(second=30, microsecond=0)
    minute = now.replace(second=0) - timedelta(minutes=3)
    for i, cpu in enumerate([10, 20, 30, 40]):
        raw("a", minute + timedelta(seconds=5 * i), cpu, health="warning" if cpu == 30 else "healthy")
    raw("b", minute + timedelta(seconds=1), 80)
    raw("a", now, 99)  # the current minute is not complete: not rolled up yet

    result = services.metrics_rollup(now=now)
    assert result["minutes_created"] == 2
    a = MetricSample.objects.get(resolution="minute", host="a")
    assert (a.timestamp, a.cpu_percent, a.memory_percent, a.sample_count, a.health) == (minute, 25.0, 12.5, 4, "warning")
    assert a.net_bytes_sent == 40 and a.active_connections == 2
    assert MetricSample.objects.get(resolution="minute", host="b").cpu_percent == 80

    again = services.metrics_rollup(now=now)  # idempotent
    assert again["minutes_created"] == 0 and MetricSample.objects.filter(resolution="minute").count() == 2
    later = services.metrics_rollup(now=now + timedelta(minutes=1))  # the next minute is complete now
    assert later["minutes_created"] == 1
    assert MetricSample.objects.get(resolution="minute", host="a", timestamp=now.replace(second=0)).cpu_percent == 99


def test_retention_keeps_raw_for_a_day_and_minutes_for_thirty_days(settings):
    settings.MONITORING_RAW_RETENTION_HOURS = 24
    settings.MONITORING_MINUTE_RETENTION_DAYS = 30
    now = timezone.now()
    old_raw = raw("a", now - timedelta(hours=25), 10)
    recent_raw = raw("a", now - timedelta(hours=23), 20)
    services.metrics_rollup(now=now)
    assert not MetricSample.objects.filter(pk=old_raw.pk).exists()
    assert MetricSample.objects.filter(pk=recent_raw.pk).exists()
    # The old raw sample was rolled up before it was deleted.
    assert MetricSample.objects.filter(resolution="minute", timestamp=old_raw.timestamp.replace(second=0, microsecond=0)).exists()

    MetricSample.objects.create(host="a", resolution="minute", timestamp=now - timedelta(days=31), cpu_percent=1,
                                memory_percent=1, disk_percent=1)
    Anomaly.objects.create(source="metrics", entity="a", metric="cpu_percent", value=1, score=9, severity="medium",
                           detected_at=now - timedelta(days=31))
    result = services.metrics_rollup(now=now)
    assert result["minutes_deleted"] == 1 and result["anomalies_deleted"] == 1


def test_retention_is_configurable(settings):
    settings.MONITORING_RAW_RETENTION_HOURS = 1
    now = timezone.now()
    raw("a", now - timedelta(hours=2), 10)
    assert services.metrics_rollup(now=now)["raw_deleted"] == 1


def test_chart_series_read_raw_within_the_raw_window_and_minutes_beyond(settings):
    now = timezone.now()
    for i in range(10):
        raw("a", now - timedelta(seconds=5 * i), 10 + i)
    series = selectors.metric_series(minutes=60)
    assert series["resolution"] == "raw" and len(series["hosts"]["a"]["t"]) == 10
    assert series["hosts"]["a"]["t"] == sorted(series["hosts"]["a"]["t"])
    assert selectors.metric_series(minutes=60, max_points=4)["hosts"]["a"]["cpu_percent"][-1] == 10  # newest kept
    MetricSample.objects.create(host="a", resolution="minute", timestamp=now - timedelta(days=2), cpu_percent=5,
                                memory_percent=5, disk_percent=5)
    week = selectors.metric_series(minutes=60 * 24 * 7)
    assert week["resolution"] == "minute" and week["hosts"]["a"]["cpu_percent"] == [5.0]
