"""Streaming anomalies: a robust baseline (median, MAD) per series, kept in Redis; a spike is found,
scored, stored and announced, and a severe one opens an alert that clears when the series calms."""

import numpy as np
import pytest

from monitoring import anomaly
from monitoring.models import Alert, Anomaly


def normal_series(n=60, mean=50.0, sd=1.0, seed=3):
    return list(np.random.default_rng(seed).normal(mean, sd, size=n).round(2))


def test_robust_score_waits_for_enough_samples():
    assert anomaly.robust_score([50.0] * 5, 90, metric="cpu_percent", min_samples=20) is None


def test_a_spike_scores_high_and_ordinary_values_low():
    window = normal_series()
    assert anomaly.robust_score(window, 50.5, metric="cpu_percent").score < 1
    spike = anomaly.robust_score(window, 95, metric="cpu_percent")
    assert spike.score > 10 and abs(spike.median - 50) < 1
    assert anomaly.severity(spike.score, 6.0) in ("high", "critical")


def test_outliers_in_the_window_barely_move_the_baseline():
    window = normal_series() + [400.0, 500.0]
    result = anomaly.robust_score(window, 95, metric="cpu_percent")
    assert abs(result.median - 50) < 1 and result.score > 10


def test_a_flat_series_uses_the_floor_not_a_zero_mad():
    flat = [30.0] * 40
    assert anomaly.robust_score(flat, 31.0, metric="cpu_percent").score < 1  # 1 point on a 2-point floor
    assert anomaly.robust_score(flat, 60.0, metric="cpu_percent").score > 6


def test_severity_bands():
    assert [anomaly.severity(s, 6.0) for s in (5.9, 6, 9, 12, 18)] == [None, "low", "medium", "high", "critical"]
    assert [anomaly.share_severity(s) for s in (0.005, 0.02, 0.06, 0.2)] == ["low", "medium", "high", "critical"]


@pytest.mark.django_db(transaction=True)
def test_a_spike_in_a_streamed_series_is_found_announced_and_alerted(feed, events, rules):
    for value in normal_series(40):
        feed(cpu_percent=float(value))
    assert not Anomaly.objects.exists()
    feed(cpu_percent=99.0)
    item = Anomaly.objects.get()
    assert (item.source, item.entity, item.metric, item.value) == ("metrics", "h1", "cpu_percent", 99.0)
    assert item.severity in ("high", "critical") and item.score > 12 and abs(item.baseline - 50) < 1
    [event] = events("anomaly_detected")
    events.expect("anomaly_detected", anomaly_id=item.pk, severity=item.severity, source="metrics", entity="h1",
                  metric="cpu_percent", anomaly_score=item.score)
    alert = Alert.objects.get(rule=rules["severe-anomaly"])
    assert alert.subject == "h1:cpu_percent" and item.alert == alert and alert.alert_type == "anomaly"

    feed(cpu_percent=99.5)  # within the cooldown, not more severe: not recorded again
    assert Anomaly.objects.count() == 1
    feed(cpu_percent=50.2)  # back to normal: the alert clears
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.auto_resolved
    assert [e["alert"]["status"] for e in events("system_alert")] == ["open", "resolved"]


@pytest.mark.django_db(transaction=True)
def test_the_same_series_without_a_spike_finds_nothing(feed, events, rules):
    for value in normal_series(80, seed=11):
        feed(cpu_percent=float(value), memory_percent=float(value) - 10)
    assert not Anomaly.objects.exists() and not events("anomaly_detected")
    assert not Alert.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_mild_anomaly_is_recorded_without_an_alert(feed, rules):
    for value in normal_series(40):
        feed(memory_percent=float(value))
    feed(memory_percent=59.0)  # ~9 points on a 1-point floor: score ~6, low
    item = Anomaly.objects.get()
    assert item.severity in ("low", "medium") and item.alert is None and not Alert.objects.exists()
