"""Health levels from thresholds, with hysteresis: a value hovering at a line changes the level once."""

import pytest

from monitoring import thresholds
from monitoring.thresholds import CRITICAL, HEALTHY, WARNING

LIMITS = (80.0, 95.0)


def levels_of(values, hysteresis=0.05):
    level, out = None, []
    for v in values:
        level = thresholds.next_level(v, LIMITS, level, hysteresis)
        out.append(level)
    return out


def test_levels_rise_at_each_threshold():
    assert levels_of([10, 79.9, 80, 94.9, 95, 100]) == [HEALTHY, HEALTHY, WARNING, WARNING, CRITICAL, CRITICAL]


def test_a_value_hovering_at_the_line_changes_the_level_once():
    hovering = [79.5, 80.5, 79.2, 80.1, 79.8, 80.3, 78.0, 80.9, 79.0]
    got = levels_of(hovering)
    changes = sum(1 for a, b in zip(got, got[1:]) if a != b)
    assert got[0] == HEALTHY and set(got[1:]) == {WARNING} and changes == 1


def test_a_level_is_left_only_below_threshold_minus_hysteresis():
    # warning at 80 with 5%: stays warning down to 76, healthy below
    assert levels_of([85, 76.1, 75.9]) == [WARNING, WARNING, HEALTHY]
    # critical at 95: stays critical down to 90.25, then warning
    assert levels_of([96, 90.3, 90.2, 75]) == [CRITICAL, CRITICAL, WARNING, HEALTHY]


def test_without_hysteresis_the_same_series_flaps():
    got = levels_of([79.5, 80.5, 79.2, 80.1, 79.8], hysteresis=0.0)
    assert sum(1 for a, b in zip(got, got[1:]) if a != b) == 4


def test_unknown_values_keep_the_previous_level_and_worst_wins():
    assert thresholds.next_level(None, LIMITS, WARNING, 0.05) == WARNING
    assert thresholds.worst([HEALTHY, CRITICAL, WARNING]) == CRITICAL
    assert thresholds.worst([]) == HEALTHY


@pytest.mark.django_db(transaction=True)
def test_hovering_cpu_through_the_services_makes_one_health_change(feed, events, rules):
    from mlops_dashboard.models import Activity
    from monitoring.models import MetricSample

    for cpu in [50, 50, 81, 79, 80.5, 78.5, 80.2, 79.9, 81]:  # hovers at the 80% warning line
        feed(cpu_percent=cpu)
    changes = events("health_change")
    assert [(c["previous_health"], c["current_health"]) for c in changes] == [("healthy", "warning")]
    change = changes[0]
    assert "CPU 81.0%" in change["reason"] and "h1" in change["reason"]
    assert change["recommended_action"] and change["metrics"]["hosts"]["h1"]["cpu_percent"] == 81
    assert list(MetricSample.objects.values_list("health", flat=True).order_by("id"))[-1] == "warning"
    assert Activity.objects.filter(action_type="health", status="warning").count() == 1

    feed(cpu_percent=60)  # well below 76: healthy again, once
    feed(cpu_percent=97)  # critical
    got = [(c["previous_health"], c["current_health"]) for c in events("health_change")]
    assert got == [("healthy", "warning"), ("warning", "healthy"), ("healthy", "critical")]
    metrics = events("system_metrics")
    assert len(metrics) == 11 and metrics[-1]["current_health"] == "critical" and metrics[-1]["host"] == "h1"


@pytest.mark.django_db(transaction=True)
def test_system_health_is_the_worst_fresh_host(feed, events, rules):
    feed("a", memory_percent=90)  # warning on a
    feed("b", disk_percent=96)  # critical on b
    feed("a", memory_percent=40)
    assert [c["current_health"] for c in events("health_change")] == ["warning", "critical"]
    feed("b", disk_percent=50)
    assert events("health_change")[-1]["current_health"] == "healthy"
