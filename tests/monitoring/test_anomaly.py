"""Streaming anomalies: a robust baseline (median, MAD) per series, kept in Redis; an anomaly is a
move the bad way, by more than the metric's minimum change, on most of its last samples; it is
stored and announced, and on an alerting metric opens a low or medium alert that clears when the
series is back."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from monitoring import anomaly
from monitoring.models import Alert, AlertRule, Anomaly


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



# --- the decision (pure) -----------------------------------------------------------------------------


def decide(metric, window, values, **kw):
    """Feed `values` after `window` through evaluate; the verdicts, one per value."""
    window, out = list(window), []
    for value in values:
        out.append(anomaly.evaluate(metric, window[-60:], value, **kw))
        window.append(value)
    return out


def test_only_the_bad_direction_is_an_anomaly():
    cpu = normal_series(50, mean=60.0, sd=1.0)
    assert not any(v.confirmed for v in decide("cpu_percent", cpu, [5.0] * 10))  # CPU dropping: fine
    assert decide("cpu_percent", cpu, [99.0] * 8)[-1].confirmed  # CPU up: an anomaly
    flowing = list(np.random.default_rng(1).poisson(120, 50).astype(float))
    assert not any(v.confirmed for v in decide("predictions_per_minute", flowing, [900.0] * 10))  # more traffic
    assert decide("predictions_per_minute", flowing, [0.0] * 8)[-1].confirmed  # traffic gone
    both = {"x": anomaly.MetricSpec(anomaly.BOTH, agree=1, of=1, floor=1.0)}
    assert decide("x", [10.0] * 30, [100.0], table=both)[0].confirmed
    assert decide("x", [100.0] * 30, [10.0], table=both)[0].confirmed


def test_a_change_below_the_minimum_is_nothing_whatever_its_score():
    quiet = list(np.random.default_rng(2).normal(15_000, 2_000, 50))  # loopback chatter, 15 kB/s
    verdicts = decide("net_recv_rate", quiet, [4_000_000.0] * 10)  # an upload of a few MB per sample
    assert verdicts[-1].score.score > 100 and not any(v.confirmed for v in verdicts)
    assert decide("net_recv_rate", quiet, [60_000_000.0] * 8)[-1].confirmed  # 60 MB/s for 40 s
    # Prediction traffic rising from zero never is; losing 80% of 10/min (5/min or more) is.
    assert not any(v.confirmed for v in decide("predictions_per_minute", [0.0] * 50, [30.0] * 20))
    assert not any(v.confirmed for v in decide("predictions_per_minute", [3.0] * 50, [0.0] * 20))
    assert decide("predictions_per_minute", [10.0] * 50, [0.0] * 8)[-1].confirmed


def test_an_anomaly_needs_most_of_the_last_samples_to_agree():
    latency = list(np.random.default_rng(4).normal(30, 3, 50))
    spec = anomaly.METRICS["api_response_time_ms"]
    assert (spec.agree, spec.of) == (18, 20)
    verdicts = decide("api_response_time_ms", latency, [900.0] * 20)
    assert [v.confirmed for v in verdicts].index(True) == spec.agree - 1  # the 18th sample confirms it
    assert verdicts[spec.agree - 1].agreeing == spec.agree
    # Slow for 17 samples (two cold starts held in the minute's p95), then back: never confirmed.
    assert not any(v.confirmed for v in decide("api_response_time_ms", latency, [900.0] * 17 + [30.0] * 10))
    # A disk step of 3 of 4 samples is enough for the disk; a single sample is not.
    disk = [50.0] * 50
    assert [v.confirmed for v in decide("disk_percent", disk, [60.0] * 3)] == [False, False, True]
    assert not any(v.confirmed for v in decide("disk_percent", disk, [60.0, 50.0, 50.0, 60.0, 50.0]))


def test_an_open_anomaly_clears_against_its_own_baseline():
    window = [30.0] * 20 + [900.0] * 40  # the window has absorbed the incident
    still = anomaly.evaluate("api_response_time_ms", window, 900.0, opened=30.0)
    assert not still.confirmed and not still.cleared  # not new any more, but not back either
    back = anomaly.evaluate("api_response_time_ms", window + [31.0], 30.0, opened=30.0)
    assert back.cleared


def test_anomaly_alerts_are_low_or_medium_unless_the_rule_says_otherwise():
    assert [anomaly.alert_priority(s) for s in ("low", "medium", "high", "critical")] == \
        ["low", "medium", "medium", "medium"]
    assert anomaly.alert_priority("low", "critical") == "critical"
    assert anomaly.alert_priority("critical", "low") == "low"


def test_metric_settings_are_overridable_and_checked():
    table = anomaly.specs({"cpu_percent": {"alerts": True, "min_change": 30}, "new_metric": {"direction": "down"}})
    assert table["cpu_percent"].alerts and table["cpu_percent"].min_change == 30
    assert table["cpu_percent"].agree == anomaly.METRICS["cpu_percent"].agree  # the rest kept
    assert table["new_metric"].direction == "down"
    for bad, field in (({"cpu_percent": {"direction": "sideways"}}, "direction"),
                       ({"cpu_percent": {"agree": 9}}, "agree"), ({"cpu_percent": {"colour": 1}}, "colour"),
                       ({"cpu_percent": {"min_change": -1}}, "min_change"), ({"cpu_percent": 3}, "cpu_percent"),
                       ([1], "JSON object")):
        with pytest.raises(ValueError, match=field):
            anomaly.specs(bad)


def test_an_invalid_setting_fails_the_system_check(settings):
    from monitoring.apps import anomaly_metrics_setting

    assert anomaly_metrics_setting() == []
    settings.MONITORING_ANOMALY_METRICS = {"disk_percent": {"of": 0}}
    [error] = anomaly_metrics_setting()
    assert error.id == "monitoring.E001" and "disk_percent" in error.msg


# --- through the service (Redis windows, records, alerts) ---------------------------------------------


def anomaly_alerts():
    return Alert.objects.filter(alert_type="anomaly")


@pytest.mark.django_db(transaction=True)
def test_an_upload_of_a_few_mb_on_a_quiet_loopback_host_raises_nothing(feed, rules):
    """Issue 15: CRITICAL "Anomaly: Network received on vm" and "Network sent on vm" for uploads."""
    for value in normal_series(40, mean=2000.0, sd=200.0):
        feed(net_sent_rate=float(value), net_recv_rate=float(value))
    for _ in range(3):  # 12 MB over 15 s, both counters (loopback)
        feed(net_sent_rate=4_000_000.0, net_recv_rate=4_000_000.0)
    feed()
    assert not anomaly_alerts().exists() and not Anomaly.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_prediction_traffic_rising_from_zero_raises_nothing(feed, rules):
    """Issue 15: HIGH "Predictions per minute on vm" when prediction traffic started from zero."""
    from monitoring import services
    from tests.factories import ProjectFactory

    rates = [0.0] * 40 + [12.0, 40.0, 60.0, 60.0, 61.0, 59.0, 60.0, 60.0]
    for value in rates:  # as a host's figure (where it was streamed when the issue was filed)
        feed(predictions_per_minute=value)
    assert not anomaly_alerts().exists() and not Anomaly.objects.exists()
    project = ProjectFactory()
    for value in rates:  # as the project's serving figure (where it is streamed now)
        services.anomalies_check_project(project_id=project.pk, values={"predictions_per_minute": value})
    assert not anomaly_alerts().exists() and not Anomaly.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_latency_incident_is_found_announced_alerted_at_medium_and_cleared(feed, events, rules):
    for value in normal_series(40, mean=30.0, sd=2.0):
        feed(api_response_time_ms=float(value))
    for _ in range(17):
        feed(api_response_time_ms=900.0)
    assert not Anomaly.objects.exists()  # 17 slow samples: not yet 18 of 20
    feed(api_response_time_ms=900.0)
    item = Anomaly.objects.get()
    assert (item.source, item.entity, item.metric, item.value) == ("metrics", "h1", "api_response_time_ms", 900.0)
    assert item.details["agreeing"] == 18 and abs(item.baseline - 30) < 3
    events.expect("anomaly_detected", anomaly_id=item.pk, severity=item.severity, entity="h1",
                  metric="api_response_time_ms")
    alert = anomaly_alerts().get()
    assert alert.rule == rules["severe-anomaly"] and alert.subject == "h1:api_response_time_ms" and item.alert == alert
    assert alert.priority == "medium" and alert.metadata["baseline"] == item.baseline

    for _ in range(20):  # it lasts: the window absorbs it, the alert stays open (gate: one record a minute)
        feed(api_response_time_ms=900.0)
    alert.refresh_from_db()
    assert alert.status == "open" and Anomaly.objects.count() == 1
    feed(api_response_time_ms=31.0)
    feed(api_response_time_ms=30.0)  # two samples back near the baseline it opened against
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.auto_resolved
    assert [e["alert"]["status"] for e in events("system_alert")] == ["open", "resolved"]


@pytest.mark.django_db(transaction=True)
def test_prediction_traffic_that_stops_while_a_model_serves_alerts_its_project(rules):
    from monitoring import services
    from tests.factories import ProjectFactory

    project = ProjectFactory()
    check = lambda v: services.anomalies_check_project(project_id=project.pk, values={"predictions_per_minute": v})  # noqa: E731
    for value in np.random.default_rng(5).poisson(120, 40):
        check(float(value))
    found = [check(0.0) for _ in range(8)]
    assert [bool(f) for f in found].index(True) == 5  # 6 of the last 8
    alert = anomaly_alerts().get()
    assert alert.subject == f"project.{project.pk}:predictions_per_minute" and alert.project_id == project.pk
    assert alert.priority in ("low", "medium") and Anomaly.objects.get().project_id == project.pk
    check(118.0)
    check(121.0)
    alert.refresh_from_db()
    assert alert.status == "resolved"


@pytest.mark.django_db(transaction=True)
def test_a_cpu_anomaly_is_recorded_without_an_alert_and_staff_may_raise_the_priority(feed, rules, settings):
    for value in normal_series(40, mean=10.0, sd=1.0):
        feed(cpu_percent=float(value))
    for _ in range(6):  # a training wave: CPU up for minutes; cpu-high (90% for a minute) owns alerting
        feed(cpu_percent=75.0)
    item = Anomaly.objects.get()
    assert item.metric == "cpu_percent" and item.alert is None and not anomaly_alerts().exists()

    # Staff turn CPU anomaly alerts on and make the anomaly rule high: that priority applies.
    settings.MONITORING_ANOMALY_METRICS = {"cpu_percent": {"alerts": True}}
    AlertRule.objects.filter(slug="severe-anomaly").update(priority="high")
    for value in normal_series(40, mean=10.0, sd=1.0, seed=8):
        feed(host="h2", cpu_percent=float(value))
    for _ in range(6):
        feed(host="h2", cpu_percent=75.0)
    assert anomaly_alerts().get(subject="h2:cpu_percent").priority == "high"


@pytest.mark.django_db(transaction=True)
def test_the_anomaly_rule_migration_updates_stock_values_only(rules):
    from django.apps import apps

    migration = importlib.import_module("monitoring.migrations.0010_anomaly_rule_priority")
    rule = rules["severe-anomaly"]
    AlertRule.objects.filter(pk=rule.pk).update(**migration.OLD)
    migration.forwards(apps, None)
    rule.refresh_from_db()
    assert (rule.threshold, rule.priority) == (None, "medium") and "minimum change" in rule.description
    AlertRule.objects.filter(pk=rule.pk).update(threshold=20.0, priority="critical", description="Ours.")
    migration.forwards(apps, None)  # edited by staff: kept
    rule.refresh_from_db()
    assert (rule.threshold, rule.priority, rule.description) == (20.0, "critical", "Ours.")


def test_file_uploads_are_not_timed_in_the_api_latency(rf):
    from mlops_dashboard import runtime
    from mlops_dashboard.middleware import ApiTimingMiddleware

    runtime.reset()
    timed = ApiTimingMiddleware(lambda request: None)
    timed(rf.post("/api/datasets/", {"file": "x"}))  # multipart
    assert runtime.snapshot()["api_ms"] == []
    timed(rf.post("/api/datasets/", {"a": 1}, content_type="application/json"))
    assert len(runtime.snapshot()["api_ms"]) == 1
    runtime.reset()


# --- the labelled evaluation ---------------------------------------------------------------------------


def test_the_labelled_evaluation_meets_its_targets_and_the_old_detector_did_not():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench import anomaly_eval

    result = anomaly_eval.evaluate(seed=7, runs=2)
    after, before = result["after"], result["before"]
    assert after["precision"] >= 0.95 and after["recall"] >= 0.9 and after["normal_alerts"] == 0, \
        anomaly_eval.report(result)
    assert anomaly_eval.targets_met(result)
    assert all(i["detected"] == i["runs"] == 2 for i in after["incidents"].values())
    assert after["incidents"]["prediction_drop"]["by"]["anomaly:predictions_per_minute"] == 2
    assert after["incidents"]["latency_spike"]["by"]["anomaly:api_response_time_ms"] == 2
    # The old detector paged for uploads and training waves, at high and critical.
    assert before["normal_alerts"] > 0 and before["normals"]["upload_wave"] and before["precision"] < 0.95
    assert set(before["anomaly_priorities"]) <= {"high", "critical"}
    assert set(after["anomaly_priorities"]) <= {"low", "medium"} and after["anomaly_priorities"]
