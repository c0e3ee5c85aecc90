"""Alerts: dedupe per rule and subject, acknowledge, resolve, automatic resolve, and their events;
metric rules that must hold for a while; failed, stalled and missing things."""

import time

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from monitoring import services, state
from mlops_dashboard.models import Activity
from monitoring.models import Alert, AlertRule

pytestmark = pytest.mark.django_db(transaction=True)


def raise_training_failed(job_id=7, **extra):
    """A training job's failure: an alert of its project (the default one)."""
    from tests.factories import ProjectFactory

    extra.setdefault("project", ProjectFactory())
    return services.alert_raise(rule_kind="training_failed", subject=f"training_job.{job_id}",
                                title=f"Training job #{job_id} failed", message="target is constant", **extra)


def test_the_data_migration_installs_the_default_rules(rules):
    assert {"cpu-high", "memory-high", "disk-high", "worker-missing", "training-failed", "pipeline-failed",
            "job-stalled", "processing-job-failed", "severe-anomaly"} <= set(rules)
    cpu = rules["cpu-high"]
    assert (cpu.metric, cpu.comparison, cpu.threshold, cpu.duration_seconds) == ("cpu_percent", "gt", 90.0, 60)
    assert cpu.condition == "CPU > 90% for 60 s"
    assert services.alert_rules_install_defaults() == 0  # idempotent


def test_a_repeat_updates_the_open_alert_instead_of_adding_rows(rules, events):
    first = raise_training_failed()
    again = raise_training_failed(value=2.0)
    assert first.pk == again.pk and Alert.objects.count() == 1
    again.refresh_from_db()
    assert again.occurrences == 2 and again.value == 2.0 and again.priority == "high"  # the rule's priority
    assert again.suggested_actions == rules["training-failed"].suggested_actions
    opened = events("system_alert")
    assert len(opened) == 1 and opened[0]["alert"]["status"] == "open"
    assert opened[0]["alert"]["actions"] == ["acknowledge", "resolve"] and opened[0]["alert"]["id"] == first.pk
    assert raise_training_failed(job_id=8).pk != first.pk  # another subject, another alert
    assert Activity.objects.filter(action_type="alert").count() == 2


def test_the_database_refuses_a_second_unresolved_alert_for_a_rule_and_subject(rules):
    alert = raise_training_failed()
    with pytest.raises(IntegrityError):
        Alert.objects.create(rule_key=alert.rule_key, subject=alert.subject, title="dup")


def test_acknowledge_then_resolve_publish_and_record(rules, user, events):
    alert = raise_training_failed()
    services.alert_acknowledge(alert=alert, user=user)
    assert alert.status == "acknowledged" and alert.acknowledged_by == user and alert.acknowledged_at
    raise_training_failed()  # a repeat while acknowledged updates it, still acknowledged
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.occurrences == 2
    with pytest.raises(services.Conflict):
        services.alert_acknowledge(alert=alert, user=user)
    services.alert_resolve(alert=alert, user=user, note="fixed the target")
    assert alert.status == "resolved" and alert.resolved_by == user and not alert.auto_resolved
    with pytest.raises(services.Conflict):
        services.alert_resolve(alert=alert, user=user)
    statuses = [e["alert"]["status"] for e in events("system_alert")]
    assert statuses == ["open", "acknowledged", "resolved"]
    events.expect("system_alert", alert={"id": alert.pk, "status": "resolved", "resolved_by": "alice"})
    # After a resolve the same condition opens a new alert.
    assert raise_training_failed().pk != alert.pk
    assert set(Activity.objects.values_list("action_type", flat=True)) >= {"alert", "alert_acknowledge", "alert_resolve"}


def test_disabled_rules_raise_nothing_and_unknown_kinds_are_refused(rules):
    services.alert_rule_set_enabled(user=None, rule=rules["training-failed"], enabled=False)
    assert raise_training_failed() is None and not Alert.objects.exists()
    with pytest.raises(ValidationError):
        services.alert_raise(rule_kind="volcano", subject="x", title="x")
    # A kind with no rule at all still raises, deduplicated by kind and subject.
    AlertRule.objects.filter(kind="custom").delete()
    alert = services.alert_raise(rule_kind="custom", subject="pipelines", title="Custom", priority="low")
    assert alert.rule is None and alert.rule_key == "kind:custom"
    assert services.alert_raise(rule_kind="custom", subject="pipelines", title="Custom").pk == alert.pk


def test_disabling_a_rule_resolves_its_open_alerts(rules, events):
    alert = raise_training_failed()
    services.alert_rule_update(user=None, rule=rules["training-failed"], enabled=False)
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.auto_resolved
    assert events("system_alert")[-1]["alert"]["status"] == "resolved"


def test_a_metric_rule_alerts_after_holding_and_resolves_itself_when_it_clears(rules, feed, events):
    rule = rules["cpu-high"]
    services.alert_rule_update(user=None, rule=rule, duration_seconds=2)
    feed(cpu_percent=95)
    assert not Alert.objects.exists()  # not held long enough yet
    time.sleep(2.1)
    feed(cpu_percent=96)
    alert = Alert.objects.get()
    assert (alert.rule, alert.subject, alert.status, alert.value) == (rule, "h1", "open", 96.0)
    assert "CPU 96.0%" in alert.message and alert.title == "CPU above 90% on h1"
    feed(cpu_percent=97)
    alert.refresh_from_db()
    assert alert.occurrences == 2 and Alert.objects.count() == 1
    feed(cpu_percent=40)  # the condition cleared
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.auto_resolved and "back within" in alert.resolution_note
    assert [e["alert"]["status"] for e in events("system_alert")] == ["open", "resolved"]
    feed(cpu_percent=95)  # holding starts over
    assert Alert.objects.filter(status="open").count() == 0


def test_system_metric_rules_use_the_subject_system(rules):
    rule = services.alert_rule_create(user=None, name="API slow", kind="metric", metric="api_response_time_ms",
                                      comparison="gte", threshold=500, priority="medium")
    services.alert_rules_check_system(values={"api_response_time_ms": 800.0})
    alert = Alert.objects.get(rule=rule)
    assert alert.subject == "system" and rule.slug == "api-slow"
    services.alert_rules_check_system(values={"api_response_time_ms": 100.0})
    alert.refresh_from_db()
    assert alert.status == "resolved"


def test_rule_validation_names_the_field(rules):
    with pytest.raises(ValidationError) as info:
        services.alert_rule_create(user=None, name="No metric", kind="metric", threshold=1)
    assert "metric" in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        services.alert_rule_create(user=None, name="Stall", kind="job_stalled", threshold=0.5)
    assert "threshold" in info.value.message_dict


def test_failed_jobs_alert_once_each(rules, ready_dataset, user):
    from datasets.models import ProcessingJob
    from django.utils import timezone

    dataset = ready_dataset("penguins.csv")
    job = ProcessingJob.objects.create(dataset=dataset, project=dataset.project, operation="clean", status="failed", error="boom",
                                       finished_at=timezone.now())
    assert services.jobs_check()["failed"] == 1
    alert = Alert.objects.get(subject=f"processing_job.{job.pk}")
    assert alert.rule == rules["processing-job-failed"] and "boom" in alert.message
    services.alert_resolve(alert=alert, user=user)
    assert services.jobs_check()["failed"] == 0  # a resolved failure stays resolved
    assert Alert.objects.filter(subject=f"processing_job.{job.pk}").count() == 1


def test_training_failures_alert_through_the_job_registry(rules, ready_dataset):
    from django.utils import timezone

    from training.models import TrainingJob

    dataset = ready_dataset("titanic.csv")
    job = TrainingJob.objects.create(name="t", dataset=dataset, project=dataset.project, target_column="survived", algorithm="sgd", epochs=3,
                                     status="failed", error="Target column is constant.", error_code="INVALID_TARGET",
                                     finished_at=timezone.now())
    TrainingJob.objects.create(name="c", dataset=dataset, project=dataset.project, target_column="survived", algorithm="sgd", epochs=3,
                               status="cancelled", error_code="CANCELLED", finished_at=timezone.now())
    services.jobs_check()
    alert = Alert.objects.get(rule=rules["training-failed"])
    assert alert.subject == f"training_job.{job.pk}" and alert.message.startswith("[INVALID_TARGET]")


def test_a_running_job_without_progress_for_three_usual_intervals_is_stalled(rules, ready_dataset, events):
    from datasets.models import ProcessingJob

    services.alert_rule_update(user=None, rule=rules["job-stalled"], duration_seconds=0)
    dataset = ready_dataset("penguins.csv")
    job = ProcessingJob.objects.create(dataset=dataset, project=dataset.project, operation="clean", status="running", progress=10,
                                       current_step="removing duplicates")
    t0 = 1_000_000.0
    for i, progress in enumerate([10, 20, 30]):  # progress every 10 s: its usual interval
        ProcessingJob.objects.filter(pk=job.pk).update(progress=progress)
        services.jobs_check(now=t0 + 10 * i)
    ProcessingJob.objects.filter(pk=job.pk).update(current_step="filling missing values")
    services.jobs_check(now=t0 + 30)
    assert services.jobs_check(now=t0 + 55)["stalled"] == 0  # 25 s of silence: under 3 × 10 s
    assert services.jobs_check(now=t0 + 65)["stalled"] == 1  # 35 s: stalled
    alert = Alert.objects.get(rule=rules["job-stalled"])
    assert alert.subject == f"processing_job.{job.pk}" and "filling missing values" in alert.message
    assert alert.metadata["last_step"] == "filling missing values"
    ProcessingJob.objects.filter(pk=job.pk).update(progress=40)  # it moves again
    services.jobs_check(now=t0 + 70)
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.auto_resolved
    assert [e["alert"]["status"] for e in events("system_alert")] == ["open", "resolved"]


def test_a_stalled_alert_clears_when_the_job_ends(rules, ready_dataset):
    from datasets.models import ProcessingJob

    services.alert_rule_update(user=None, rule=rules["job-stalled"], duration_seconds=0)
    job = ProcessingJob.objects.create(dataset=(d := ready_dataset("penguins.csv")), project=d.project, operation="clean",
                                       status="running")
    services.jobs_check(now=1000.0)
    services.jobs_check(now=1000.0 + 3 * 60 + 1)  # default usual interval 60 s
    assert Alert.objects.get().status == "open"
    ProcessingJob.objects.filter(pk=job.pk).update(status="succeeded")
    services.jobs_check(now=1300.0)
    assert Alert.objects.get().status == "resolved"


def test_a_worker_that_stops_answering_is_missing_until_it_answers_again(rules, staff_user):
    services.alert_rule_update(user=None, rule=rules["worker-missing"], duration_seconds=1)
    worker = {"name": "w1@host", "queues": ["celery"], "active": [], "active_count": 0}
    services.workers_check(workers=[worker])
    services.workers_check(workers=[])
    assert not Alert.objects.exists()  # not missing for long enough
    time.sleep(1.1)
    services.workers_check(workers=[])
    alert = Alert.objects.get()
    assert alert.subject == "worker:w1@host" and alert.priority == "critical"
    services.workers_check(workers=[worker])
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.auto_resolved
    # Resolved by hand while still missing: the worker is forgotten, not re-alerted.
    time.sleep(1.1)
    services.workers_check(workers=[])
    services.alert_resolve(alert=Alert.objects.get(status="open"), user=staff_user)  # a system alert: staff's
    services.workers_check(workers=[])
    assert not Alert.objects.filter(status="open").exists()
    assert "w1@host" not in state.workers_seen([], time.time())
