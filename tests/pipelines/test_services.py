"""pipelines/services.py in-process: definitions, schedules, runs executed in this process on the
real database, real files, real scikit-learn and the real Redis bus (Celery is not involved: runs
that would be enqueued are recorded by `no_enqueue` and executed here)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from datasets.models import Dataset, ProcessingJob
from mlops_dashboard import jobs
from mlops_dashboard.models import Activity
from pipelines import demo, services
from pipelines.models import Pipeline, PipelineRun, StepRun
from training.models import ModelVersion, TrainingJob

pytestmark = pytest.mark.django_db(transaction=True)


def steps_of(run):
    return list(StepRun.objects.filter(run=run).order_by("index"))


def statuses(run):
    return [s.status for s in steps_of(run)]


def execute(run):
    services.pipeline_run_execute(run_id=run.pk)
    run.refresh_from_db()
    return run


# --- definitions ----------------------------------------------------------------------------------


def test_create_checks_and_fills_in_the_steps_and_announces_it(breast_cancer, events, user):
    pipeline = services.pipeline_create(
        user=user, name="p1", dataset=breast_cancer,
        steps=[{"kind": "train_model", "options": {"algorithm": "sgd"}}, {"kind": "evaluate",
                                                                          "options": {"metric": "f1_macro", "threshold": 0.5}}],
    )
    train = pipeline.steps[0]["options"]
    assert train["target_column"] == "target" and train["epochs"] == 10  # defaults: the dataset's target, 10 epochs
    assert [e["type"] for e in events("pipeline_created")] == ["pipeline_created"]
    events.expect("pipeline_created", pipeline_id=pipeline.pk, name="p1")
    assert Activity.objects.filter(action_type="pipeline_create", metadata__pipeline_id=pipeline.pk).exists()


@pytest.mark.parametrize(
    "steps, message",
    [
        ([{"kind": "train_model", "options": {"algorithm": "sgd", "epochs": 0}}],
         "steps[0] (train_model): epochs must be between 1 and 500"),
        ([{"kind": "validate_dataset"}, {"kind": "train_model", "options": {"algorithm": "xgb"}}],
         "steps[1] (train_model): algorithm must be one of"),
        ([{"kind": "evaluate", "options": {"metric": "accuracy", "threshold": 0.9}}],
         "steps[0] (evaluate): must come after a train_model step"),
        ([{"kind": "deploy_model"}], "steps[0] (deploy_model): must come after a train_model step"),
        ([{"kind": "process_dataset", "options": {"operation": "clean", "columns": ["nope"]}}],
         "steps[0] (process_dataset): columns: not columns of this dataset: nope"),
        ([{"kind": "process_dataset", "options": {"operation": "melt"}}],
         "steps[0] (process_dataset): operation must be one of clean, split, scale"),
        ([{"kind": "validate_dataset", "options": {"min_quality_score": 101}}],
         "steps[0] (validate_dataset): min_quality_score must be a number between 0 and 100"),
        ([{"kind": "train_model", "options": {"algorithm": "sgd", "target_column": "nope"}}],
         "steps[0] (train_model): target_column 'nope' is not a column of the dataset"),
        ([{"kind": "detect_anomalies", "options": {"contamination": 2}}],
         "steps[0] (detect_anomalies): contamination must be a number"),
        ([{"kind": "explode"}], "steps[0]: kind must be one of"),
        ([], "a pipeline needs at least one step"),
    ],
)
def test_bad_steps_are_refused_naming_the_step_and_nothing_is_saved(breast_cancer, steps, message, user):
    with pytest.raises(ValidationError) as caught:
        services.pipeline_create(user=user, name="bad", dataset=breast_cancer, steps=steps)
    assert any(m.startswith(message) for m in caught.value.message_dict["steps"]), caught.value.message_dict
    assert not Pipeline.objects.exists()


def test_a_dataset_not_profiled_yet_gets_its_columns_checked_when_it_runs(breast_cancer_csv, user):
    from tests.factories import DatasetFactory

    dataset = DatasetFactory(csv=str(breast_cancer_csv), name="later", target_column="target", status="validating",
                             column_names=[], column_count=None, row_count=None)
    pipeline = services.pipeline_create(user=user, name="early", dataset=dataset, steps=demo.STEPS)
    assert pipeline.steps[2]["options"]["target_column"] == "target"


def test_schedule_creates_updates_and_deletes_its_periodic_task(breast_cancer, events, user):
    with pytest.raises(ValidationError) as caught:
        services.pipeline_create(user=user, name="s", dataset=breast_cancer, steps=demo.STEPS, schedule="61 * * * *")
    assert "schedule" in caught.value.message_dict and not PeriodicTask.objects.filter(task=services.SCHEDULED_TASK).exists()

    pipeline = services.pipeline_create(user=user, name="s", dataset=breast_cancer, steps=demo.STEPS, schedule="0 3 * * *")
    task = PeriodicTask.objects.get(task=services.SCHEDULED_TASK)
    assert task.args == f"[{pipeline.pk}]" and task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "3", "*")

    services.pipeline_update(user=user, pipeline=pipeline, schedule="*/15 2 * * 1-5")
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("*/15", "2", "1-5")
    assert CrontabSchedule.objects.filter(minute="0", hour="3").count() == 0  # the old one, unused, is gone
    events.expect("pipeline_updated", pipeline_id=pipeline.pk, name="s")

    services.pipeline_update(user=user, pipeline=pipeline, schedule="")
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()
    services.pipeline_update(user=user, pipeline=pipeline, schedule="5 * * * *")
    task = PeriodicTask.objects.get(task=services.SCHEDULED_TASK)
    pipeline_id = pipeline.pk
    services.pipeline_delete(user=user, pipeline=pipeline)
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()
    events.expect("pipeline_deleted", pipeline_id=pipeline_id, name="s")


def test_the_scheduled_task_starts_a_run(breast_cancer, no_enqueue, user):
    pipeline = services.pipeline_create(user=user, name="s", dataset=breast_cancer, steps=demo.STEPS, schedule="0 3 * * *")
    run = services.pipeline_run_scheduled(pipeline_id=pipeline.pk)
    assert run.trigger == "schedule" and run.status == "queued" and no_enqueue == [run.pk]


def test_demo_load_is_idempotent(breast_cancer):
    pipeline = demo.load()
    assert pipeline.dataset == breast_cancer and [s["kind"] for s in pipeline.steps] == [
        "validate_dataset", "process_dataset", "train_model", "evaluate", "deploy_model"]
    assert demo.load() is None and Pipeline.objects.count() == 1


# --- running --------------------------------------------------------------------------------------


@pytest.fixture
def fast_progress(settings):
    """Progress coalesced every 20 ms, not 250: the in-process demo run can take under half a second."""
    from mlops_dashboard.events import bus

    settings.EVENT_PROGRESS_INTERVAL = 0.02
    bus.reset_clients()  # a new throttle, with that interval
    yield
    bus.reset_clients()


def test_the_demo_pipeline_runs_every_step_and_deploys(demo_pipeline, no_enqueue, events, user, fast_progress):
    run = services.pipeline_run_start(user=user, pipeline=demo_pipeline)
    assert run.status == "queued" and statuses(run) == ["queued"] * 5 and no_enqueue == [run.pk]
    run = execute(run)
    assert run.status == "succeeded", run.error
    assert run.progress == 100.0 and run.finished_at and not run.error
    validate, clean, train, gate, deploy = steps_of(run)
    assert all(s.status == "succeeded" and s.started_at and s.finished_at and s.log for s in steps_of(run))
    assert clean.processing_job.status == "succeeded" and clean.output_dataset.parent_id == demo_pipeline.dataset_id
    assert train.input_dataset == clean.output_dataset  # each step works on what the one before produced
    assert train.training_job.status == "succeeded" and train.model_version.training_job == train.training_job
    assert gate.metrics["metric"] == "accuracy" and gate.metrics["passed"] and gate.metrics["value"] >= 0.9
    version = ModelVersion.objects.get(pk=deploy.model_version_id)
    assert version.status == "active" and version.name == demo.MODEL_NAME
    assert run.context["model_version_id"] == version.pk

    types = [e["type"] for e in events() if e["type"].startswith("pipeline_") and e.get("run_id") == run.pk]
    assert types[0] == "pipeline_status" and types[-1] == "pipeline_completed"
    assert [e["status"] for e in events("pipeline_status") if e["run_id"] == run.pk] == ["queued", "running", "succeeded"]
    progress = [e["progress"] for e in events("pipeline_progress") if e["run_id"] == run.pk]
    # Coalesced per run (a few a second), so fast steps may share one: the first and the last always come.
    assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 100.0 and len(progress) >= 3
    step_events = events("pipeline_step")
    assert {(e["step_index"], e["status"]) for e in step_events} >= {(i, s) for i in range(5) for s in ("running", "succeeded")}
    assert any("Epoch" in line for e in step_events if e["step_index"] == 2 for line in e["log"])
    assert Activity.objects.filter(action_type="pipeline_run", metadata__run_id=run.pk).count() == 2
    events.expect("pipeline_status", pipeline_id=demo_pipeline.pk, run_id=run.pk, status="succeeded")
    events.expect("pipeline_progress", pipeline_id=demo_pipeline.pk, run_id=run.pk, progress=100.0, total_steps=5)
    events.expect("pipeline_step", run_id=run.pk, step_index=4, kind="deploy_model", status="succeeded")
    events.expect("pipeline_completed", pipeline_id=demo_pipeline.pk, run_id=run.pk, status="succeeded")


def test_a_failing_gate_fails_the_run_and_skips_deploy(demo_pipeline, no_enqueue, events, user):
    steps = [dict(s) for s in demo_pipeline.steps]
    steps[3] = {"kind": "evaluate", "options": {"metric": "accuracy", "threshold": 0.999}}
    services.pipeline_update(user=user, pipeline=demo_pipeline, steps=steps)
    run = execute(services.pipeline_run_start(user=user, pipeline=demo_pipeline))
    assert run.status == "failed" and run.failed_step == "evaluate"
    assert statuses(run) == ["succeeded", "succeeded", "succeeded", "failed", "skipped"]
    assert "Quality gate failed" in run.error
    assert not ModelVersion.objects.filter(status="active").exists()
    failed = [e for e in events("pipeline_failed") if e["run_id"] == run.pk]
    assert len(failed) == 1 and failed[0]["failed_step"] == "evaluate" and "accuracy" in failed[0]["error"]
    events.expect("pipeline_failed", pipeline_id=demo_pipeline.pk, run_id=run.pk, failed_step="evaluate")


def test_an_error_metric_passes_when_at_most_the_threshold(demo_pipeline, no_enqueue, user):
    steps = [dict(s) for s in demo_pipeline.steps]
    steps[3] = {"kind": "evaluate", "options": {"metric": "log_loss", "threshold": 5.0}}
    services.pipeline_update(user=user, pipeline=demo_pipeline, steps=steps)
    run = execute(services.pipeline_run_start(user=user, pipeline=demo_pipeline))
    assert run.status == "succeeded", run.error
    assert steps_of(run)[3].metrics["passed"] is True


def test_retry_reuses_succeeded_steps_and_runs_the_current_definition(demo_pipeline, no_enqueue, user):
    steps = [dict(s) for s in demo_pipeline.steps]
    steps[3] = {"kind": "evaluate", "options": {"metric": "accuracy", "threshold": 0.999}}
    services.pipeline_update(user=user, pipeline=demo_pipeline, steps=steps)
    failed = execute(services.pipeline_run_start(user=user, pipeline=demo_pipeline))
    assert failed.status == "failed"
    jobs_before = (ProcessingJob.objects.count(), TrainingJob.objects.count(), Dataset.objects.count())

    with pytest.raises(services.Conflict):
        services.pipeline_run_retry(user=user, run=execute(services.pipeline_run_start(user=user, pipeline=Pipeline.objects.create(
            project=demo_pipeline.project, name="other", dataset=demo_pipeline.dataset, steps=[{"kind": "validate_dataset", "options": {}}]))))

    steps[3] = {"kind": "evaluate", "options": {"metric": "accuracy", "threshold": 0.9}}  # the fix
    services.pipeline_update(user=user, pipeline=demo_pipeline, steps=steps)
    retry = services.pipeline_run_retry(user=user, run=failed)
    assert retry.retry_of == failed and retry.trigger == "retry"
    reused = steps_of(retry)
    assert [s.reused for s in reused] == [True, True, True, False, False]
    assert [s.status for s in reused[:3]] == ["succeeded"] * 3
    old = steps_of(failed)
    assert reused[1].output_dataset_id == old[1].output_dataset_id and reused[2].model_version_id == old[2].model_version_id
    retry = execute(retry)
    assert retry.status == "succeeded", retry.error
    assert (ProcessingJob.objects.count(), TrainingJob.objects.count(), Dataset.objects.count()) == jobs_before
    assert ModelVersion.objects.get(pk=old[2].model_version_id).status == "active"


def test_cancel_of_a_queued_run_is_immediate_and_a_running_one_is_flagged(demo_pipeline, no_enqueue, events, user):
    run = services.pipeline_run_start(user=user, pipeline=demo_pipeline)
    run = services.pipeline_run_cancel(user=user, run=run)
    assert run.status == "cancelled" and statuses(run) == ["skipped"] * 5
    assert [e["status"] for e in events("pipeline_completed") if e["run_id"] == run.pk] == ["cancelled"]
    with pytest.raises(services.Conflict):
        services.pipeline_run_cancel(user=user, run=run)
    services.pipeline_run_execute(run_id=run.pk)  # a late delivery does nothing
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_concurrency_limit_keeps_extra_runs_queued_until_a_slot_frees(demo_pipeline, no_enqueue, user):
    first = services.pipeline_run_start(user=user, pipeline=demo_pipeline)
    second = services.pipeline_run_start(user=user, pipeline=demo_pipeline)
    assert no_enqueue == [first.pk]  # the limit is 1
    second.refresh_from_db()
    assert second.status == "queued" and second.enqueued_at is None
    assert services.pipeline_runs_kick() == 0 and no_enqueue == [first.pk]
    execute(first)
    assert no_enqueue == [first.pk, second.pk]  # its end handed the next run to a worker


@pytest.fixture
def unread_queue():
    """Task messages go to a queue of this test's own on the real Redis broker, one no worker reads
    (a session worker may be running): they stay there to be counted. Yields its message count."""
    import uuid

    from celery import current_app

    name, default = f"unread-{uuid.uuid4().hex[:8]}", current_app.conf.task_default_queue
    current_app.conf.task_default_queue = name
    with current_app.connection_for_write() as conn:  # its binding, so that messages sent to it stay
        current_app.amqp.queues[name].bind(conn.default_channel).declare()

    def count() -> int:
        with current_app.connection_for_write() as conn:
            return conn.default_channel.client.llen(name)  # the client adds the key prefix

    def purge():
        with current_app.connection_for_write() as conn:
            conn.default_channel.queue_purge(name)

    count.purge = purge
    try:
        yield count
    finally:
        purge()
        current_app.conf.task_default_queue = default


def test_the_kick_does_not_send_again_a_run_whose_message_still_waits(unread_queue, user):
    """The kick sent a run again whenever it had been handed to a worker over two minutes ago, even
    with its message still waiting behind others: the queue grew by one message per kick. It sends
    one again only when nothing waits in the broker (the message was lost)."""
    from tests.factories import PipelineFactory

    run = services.pipeline_run_start(user=user, pipeline=PipelineFactory())
    assert unread_queue() == 1  # handed to a worker on commit

    def long_ago():  # as if workers had been busy elsewhere for minutes
        PipelineRun.objects.filter(pk=run.pk).update(enqueued_at=timezone.now() - timedelta(minutes=5))

    for _ in range(3):
        long_ago()
        services.pipeline_runs_kick()
    assert unread_queue() == 1
    unread_queue.purge()  # the message is lost (Redis restarted without its data)
    long_ago()
    assert services.pipeline_runs_kick() == 1
    assert unread_queue() == 1
    assert PipelineRun.objects.get(pk=run.pk).status == "queued"  # a redelivery finds it and claims it once


def test_a_step_that_ends_after_its_run_was_reaped_does_not_write_over_it(no_enqueue, monkeypatch, user):
    """A worker slow enough to be taken for dead finishes its step after the reaper failed the run:
    it wrote the step back as succeeded (a failed run with a succeeded step where it failed). Step
    writes are guarded by the run still running; the worker stops there."""
    from pipelines import execution
    from tests.factories import PipelineFactory

    validate = execution.RUNNERS["validate_dataset"]

    def reaped_while_it_validates(ex, step):
        validate(ex, step)
        PipelineRun.objects.filter(pk=ex.run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
        assert services.pipeline_runs_reap_stale() == 1

    monkeypatch.setitem(execution.RUNNERS, "validate_dataset", reaped_while_it_validates)
    run = execute(services.pipeline_run_start(user=user, pipeline=PipelineFactory()))
    assert run.status == "failed" and "stopped responding" in run.error
    assert statuses(run) == ["failed", "skipped"]


def test_the_reaper_fails_a_stale_run_naming_its_step(demo_pipeline, no_enqueue, events, user):
    run = services.pipeline_run_start(user=user, pipeline=demo_pipeline)
    assert jobs.claim(PipelineRun, run.pk)
    StepRun.objects.filter(run=run, index=0).update(status="succeeded")
    StepRun.objects.filter(run=run, index=1).update(status="running", started_at=timezone.now())
    PipelineRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert services.pipeline_runs_reap_stale() == 1
    run.refresh_from_db()
    assert run.status == "failed" and run.failed_step == "process_dataset" and "worker" in run.error
    assert statuses(run) == ["succeeded", "failed", "skipped", "skipped", "skipped"]
    assert [e["failed_step"] for e in events("pipeline_failed") if e["run_id"] == run.pk] == ["process_dataset"]
    assert services.pipeline_runs_reap_stale() == 0


def test_detect_anomalies_runs_the_monitoring_apps_detection(breast_cancer, no_enqueue, user):
    pipeline = services.pipeline_create(user=user, name="anomalies", dataset=breast_cancer, steps=[
        {"kind": "detect_anomalies", "options": {"contamination": 0.1, "columns": ["mean_radius", "mean_area"]}}])
    run = execute(services.pipeline_run_start(user=user, pipeline=pipeline))
    assert run.status == "succeeded", run.error
    step = steps_of(run)[0]
    assert step.metrics["rows"] == breast_cancer.row_count and step.metrics["flagged"] > 0
    assert step.output["anomaly_detection_id"] and step.output["columns"] == ["mean_radius", "mean_area"]


def test_a_failed_run_raises_a_monitoring_alert_through_the_job_failed_signal(demo_pipeline, no_enqueue, user):
    from monitoring.models import Alert

    steps = [dict(s) for s in demo_pipeline.steps]
    steps[3] = {"kind": "evaluate", "options": {"metric": "accuracy", "threshold": 0.999}}
    services.pipeline_update(user=user, pipeline=demo_pipeline, steps=steps)
    run = execute(services.pipeline_run_start(user=user, pipeline=demo_pipeline))
    assert run.status == "failed"
    alert = Alert.objects.get(subject=f"pipeline_run.{run.pk}")
    assert alert.status == "open" and alert.alert_type == "job" and "evaluate" in alert.title
    assert alert.metadata["pipeline_id"] == demo_pipeline.pk and alert.metadata["failed_step"] == "evaluate"
