"""training/services.py in-process: real CSVs, real scikit-learn, the real database and Redis bus."""

from __future__ import annotations

import math
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.utils import timezone

from mlops_dashboard import jobs
from mlops_dashboard.events import bus
from training import models as training_models
from training import services, trainer
from training.models import Deployment, ModelVersion, TrainingJob

from .conftest import enqueued, titanic_instances

pytestmark = pytest.mark.django_db(transaction=True)


def start(dataset, **kw):
    """A queued job that this process runs (a worker of the session, if any, never sees it)."""
    kw.setdefault("enqueue", False)
    kw.setdefault("target_column", dataset.target_column)
    kw.setdefault("algorithm", "sgd")
    kw.setdefault("epochs", 4)
    kw.setdefault("user", None)
    return services.training_job_start(dataset=dataset, **kw)


def test_algorithms_match_the_trainer():
    assert training_models.ALGORITHMS == trainer.ALGORITHMS
    assert training_models.STAGES == trainer.STAGES


# --- starting -----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=False)
def test_start_records_a_queued_job_and_enqueues_it_on_commit(titanic, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = start(titanic, epochs=7, test_size=0.25, enqueue=True)
    assert enqueued(callbacks) == 1
    job.refresh_from_db()
    assert job.status == "queued" and job.name == "titanic-sgd" and job.epochs == 7 and job.test_size == 0.25
    assert job.soft_time_limit == settings.TRAINING_SOFT_TIME_LIMIT and job.time_limit == settings.TRAINING_HARD_TIME_LIMIT
    assert job.task == "" and job.dataset_name == "titanic"


@pytest.mark.django_db(transaction=False)
@pytest.mark.parametrize(
    "change, field",
    [
        (dict(target_column="no_such_column"), "target_column"),
        (dict(epochs=0), "epochs"),
        (dict(epochs=501), "epochs"),
        (dict(test_size=1.0), "test_size"),
        (dict(algorithm="xgboost"), "algorithm"),
        (dict(name="a/b"), "name"),
    ],
)
def test_start_refuses_bad_parameters_and_writes_nothing(titanic, change, field, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationError) as caught:
        start(titanic, enqueue=True, **change)
    assert field in caught.value.message_dict
    assert TrainingJob.objects.count() == 0 and callbacks == []


@pytest.mark.django_db(transaction=False)
def test_start_refuses_a_dataset_that_is_not_ready(make_dataset):
    dataset = make_dataset(status="profiling", target_column="survived")
    with pytest.raises(ValidationError, match="not ready"):
        start(dataset)
    assert not TrainingJob.objects.exists()


# --- running ------------------------------------------------------------------------------------------


def test_run_trains_registers_a_version_and_publishes_in_order(titanic, events):
    job = start(titanic, algorithm="mlp", epochs=6)
    version = services.training_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == "succeeded" and job.progress == 100.0 and job.task == "classification"
    assert [h["epoch"] for h in job.history] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(h["loss"]) and 0 <= h["accuracy"] <= 1 for h in job.history)
    assert job.validation_score > 0.7 and set(job.metrics) >= {"accuracy", "f1_macro", "log_loss"}

    assert (version.name, version.version, version.status) == ("titanic-mlp", 1, "inactive")
    assert version.training_job_id == job.pk and version.dataset_id == titanic.pk
    assert version.artifact.name.startswith("models/") and version.artifact.name.endswith(".joblib")
    path = Path(settings.MEDIA_ROOT) / version.artifact.name
    assert path.is_file() and path.stat().st_size == version.artifact_size
    assert trainer.load_artifact(path.read_bytes(), version.artifact_sha256) is not None
    assert {c["name"] for c in version.feature_schema} >= {"sex", "age", "pclass"} and version.classes == [0, 1]

    sent = events("training_started", "training_progress", "training_completed", "training_failed")
    types = [e["type"] for e in sent]
    assert types[0] == "training_started" and types[-1] == "training_completed" and "training_failed" not in types
    events.expect("training_started", job_id=job.pk, model_name="titanic-mlp", dataset_id=titanic.pk, total_epochs=6)
    progress = [e for e in sent if e["type"] == "training_progress"]
    assert progress[0]["stage"] == "data_preparation"
    # Coalesced (these epochs take milliseconds): epochs only go up, and the last event has the last one.
    epochs = [e["current_epoch"] for e in progress]
    assert epochs == sorted(epochs) and epochs[-1] == 6 and progress[-1]["current_loss"] > 0
    events.expect("training_progress", job_id=job.pk, current_epoch=6, total_epochs=6)
    done = events.expect("training_completed", job_id=job.pk, model_id=version.pk, total_epochs=6)
    assert done["model_size"] == version.artifact_size and done["validation_score"] == pytest.approx(job.validation_score)


def test_a_dataset_over_training_max_rows_trains_on_a_stratified_sample_and_says_so(titanic, events, settings,
                                                                                      client, user):
    settings.TRAINING_MAX_ROWS = 300
    job = start(titanic, algorithm="sgd", epochs=2)
    version = services.training_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == "succeeded" and job.task == "classification"
    assert (job.sampling, job.rows_total) == ("stratified", 891) and abs(job.rows_used - 300) <= 2
    assert version.n_train + version.n_test == job.rows_used
    text = f"Trained on a stratified sample of {job.rows_used:,} of 891 rows"
    events.expect("training_completed", job_id=job.pk, rows_used=job.rows_used, rows_total=891, sampling="stratified")
    client.force_login(user)
    assert text in client.get(f"/training/jobs/{job.pk}/").content.decode()


def test_a_regression_over_training_max_rows_trains_on_a_random_sample(titanic, events, settings):
    settings.TRAINING_MAX_ROWS = 200
    job = start(titanic, algorithm="sgd", epochs=1, target_column="fare")
    services.training_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert (job.status, job.task, job.sampling, job.rows_used, job.rows_total) == (
        "succeeded", "regression", "random", 200, 891)
    events.expect("training_completed", job_id=job.pk, rows_used=200, rows_total=891, sampling="random")


def test_a_dataset_within_training_max_rows_trains_on_all_its_rows(titanic, events, client, user):
    job = start(titanic, algorithm="sgd", epochs=1)
    services.training_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert (job.sampling, job.rows_used, job.rows_total) == ("all", 891, 891)
    events.expect("training_completed", job_id=job.pk, rows_used=891, rows_total=891, sampling="all")
    client.force_login(user)
    assert "Trained on all 891 rows." in client.get(f"/training/jobs/{job.pk}/").content.decode()


def test_every_epoch_is_published_when_progress_is_not_coalesced(titanic, events, settings, monkeypatch):
    settings.EVENT_PROGRESS_INTERVAL = 0
    monkeypatch.setattr(bus.throttle(), "interval", 0)
    job = start(titanic, algorithm="sgd", epochs=8)
    services.training_job_run(job_id=job.pk)
    progress = [e for e in events("training_progress") if e["stage"] == "model_training" and e["current_epoch"]]
    assert [e["current_epoch"] for e in progress] == list(range(1, 9))
    job.refresh_from_db()
    for event, epoch in zip(progress, job.history):
        assert event["current_loss"] == pytest.approx(epoch["loss"]) and event["current_loss"] > 0
        assert event["live_accuracy"] == pytest.approx(epoch["accuracy"])
        assert event["current_stage"] == f"Epoch {epoch['epoch']} of 8" and event["estimated_time_remaining"] >= 0
    assert [e["progress"] for e in progress] == sorted(e["progress"] for e in progress)


def test_a_second_delivery_of_the_same_job_does_nothing(titanic):
    job = start(titanic)
    first = services.training_job_run(job_id=job.pk)
    assert services.training_job_run(job_id=job.pk) is None
    assert first is not None and ModelVersion.objects.count() == 1
    assert TrainingJob.objects.get(pk=job.pk).attempts == 1


def test_versions_are_numbered_per_name(titanic, penguins, train_version):
    a1 = train_version(titanic, name="survival")
    a2 = train_version(titanic, name="survival", algorithm="random_forest", epochs=2)
    b1 = train_version(penguins)
    assert (a1.version, a2.version, b1.version) == (1, 2, 1)
    assert b1.name == "penguins-sgd" and a2.algorithm == "random_forest"


def test_a_version_number_taken_by_a_concurrent_job_of_the_same_name_gets_the_next_one(titanic, train_version):
    """Found by the load bench: two jobs named alike finishing together. The second read the same
    highest version, and the first committed that number before the second saved: the second job
    failed ('Model version with this Name and Version already exists'). It takes the next number."""
    from django.db import connection
    from django.db.models.signals import post_init

    if connection.vendor == "sqlite":
        pytest.skip("SQLite has one writer at a time: the other job cannot commit between the two steps")
    first = train_version(titanic, name="survival")
    raced = []

    def a_concurrent_job_commits_the_next_number(sender, instance, **kwargs):
        # Called when registration builds its ModelVersion, just after it read the highest number:
        # another job (another connection, its own commit) registers that number now.
        if instance.name == "survival" and instance.version == 2 and instance.pk is None and not raced:
            raced.append(True)

            def other_job():
                ModelVersion.objects.create(
                    project_id=first.project_id, name="survival", version=2, algorithm="sgd", task="classification", feature_schema=[],
                    training_job=None, dataset=first.dataset, artifact_sha256="0" * 64,
                )
                connection.close()

            thread = threading.Thread(target=other_job)
            thread.start()
            thread.join()

    post_init.connect(a_concurrent_job_commits_the_next_number, sender=ModelVersion)
    try:
        version = train_version(titanic, name="survival")
    finally:
        post_init.disconnect(a_concurrent_job_commits_the_next_number, sender=ModelVersion)
    assert raced, "the concurrent registration must have happened"
    assert version.version == 3 and TrainingJob.objects.get(pk=version.training_job_id).status == "succeeded"
    assert sorted(ModelVersion.objects.filter(name="survival").values_list("version", flat=True)) == [1, 2, 3]


def test_cancelling_a_queued_job_ends_it_at_once_and_its_task_does_nothing(titanic, events):
    job = start(titanic)
    job = services.training_job_cancel(user=None, job=job)
    assert job.status == "cancelled" and job.error_code == "CANCELLED" and job.finished_at
    assert services.training_job_run(job_id=job.pk) is None
    assert TrainingJob.objects.get(pk=job.pk).status == "cancelled" and not ModelVersion.objects.exists()
    failed = events("training_failed")
    assert [(e["job_id"], e["error_code"], e["stage_failed"]) for e in failed] == [(job.pk, "CANCELLED", "queued")]
    assert events("activity_update")[-1]["activity"]["title"] == "Training cancelled: titanic-sgd"
    with pytest.raises(services.Conflict):
        services.training_job_cancel(user=None, job=job)


def test_cancelling_a_running_job_stops_it_before_the_next_epoch(titanic, events, monkeypatch):
    """The cancel lands while epoch 3 is reported: epoch 4 never starts. (These epochs last a few
    milliseconds, less than CANCEL_CHECK_INTERVAL: every epoch is checked when it is 0, as it is
    for epochs longer than the interval.)"""
    monkeypatch.setattr(services.jobs, "CANCEL_CHECK_INTERVAL", 0)
    record = services.ProgressRecorder.__call__

    def cancel_at_epoch_3(self, update):
        record(self, update)
        if update.stage == "model_training" and update.current_epoch == 3:
            services.training_job_cancel(user=None, job=TrainingJob.objects.get(pk=self.job_id))

    monkeypatch.setattr(services.ProgressRecorder, "__call__", cancel_at_epoch_3)
    job = start(titanic, algorithm="mlp", epochs=50)
    assert services.training_job_run(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.status == "cancelled" and job.error_code == "CANCELLED" and job.stage_failed == "model_training"
    assert [h["epoch"] for h in job.history] == [1, 2, 3]
    assert not ModelVersion.objects.exists()
    assert events("training_failed")[-1]["error_code"] == "CANCELLED"


def test_a_job_whose_dataset_is_deleted_while_it_trains_still_registers_its_version(titanic, monkeypatch):
    """Its version named the dataset id the job had read at its start: the deleted dataset's. The
    version's insert broke the foreign key at commit, was taken for a version number clash and
    retried, and the job failed. It names the dataset the job has now (none)."""
    from datasets import services as dataset_services
    from datasets.models import Dataset

    record = services.ProgressRecorder.__call__

    def delete_at_epoch_2(self, update):
        record(self, update)
        if update.stage == "model_training" and update.current_epoch == 2 and Dataset.objects.exists():
            dataset_services.dataset_delete(user=None, dataset=Dataset.objects.get(pk=titanic.pk))

    monkeypatch.setattr(services.ProgressRecorder, "__call__", delete_at_epoch_2)
    job = start(titanic, algorithm="sgd", epochs=5)
    version = services.training_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert version is not None and version.dataset_id is None and job.dataset_id is None
    assert not Dataset.objects.filter(pk=titanic.pk).exists()


def test_millisecond_epochs_are_cancelled_within_the_check_interval(titanic, monkeypatch):
    record = services.ProgressRecorder.__call__
    cancelled = []

    def cancel_at_epoch_3(self, update):
        record(self, update)
        if update.stage == "model_training" and update.current_epoch == 3:
            services.training_job_cancel(user=None, job=TrainingJob.objects.get(pk=self.job_id))
            cancelled.append(update.current_epoch)

    monkeypatch.setattr(services.ProgressRecorder, "__call__", cancel_at_epoch_3)
    job = start(titanic, algorithm="sgd", epochs=500)
    services.training_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "cancelled" and 3 <= len(job.history) < 500
    assert job.finished_at and cancelled
    # Epochs after the cancel start without reading the row only within the interval of the last
    # read, so all of them but the last (however long it took) fit in it.
    durations = sum(h["duration"] for h in job.history[3:-1])
    assert durations <= services.jobs.CANCEL_CHECK_INTERVAL


def test_a_target_the_trainer_refuses_fails_with_its_code_and_suggestions(make_dataset, write_csv, events):
    path = write_csv("constant.csv", "x,y\n" + "".join(f"{i},1\n" for i in range(30)))
    dataset = make_dataset(csv=path, name="constant")
    job = start(dataset, target_column="y")
    assert services.training_job_run(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.status == "failed" and job.error_code == "INVALID_TARGET" and "single value" in job.error
    assert job.suggestions and job.stage_failed == "data_preparation"
    events.expect("training_failed", job_id=job.pk, error_code="INVALID_TARGET", suggestions=job.suggestions,
                  stage_failed="data_preparation")


def test_data_without_usable_features_fails_with_invalid_data(make_dataset, write_csv):
    path = write_csv("ids.csv", "id,y\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    job = start(make_dataset(csv=path, name="ids"), target_column="y")
    services.training_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.error_code) == ("failed", "INVALID_DATA")


def test_a_dataset_that_stopped_being_ready_fails_the_run(titanic, events):
    job = start(titanic)
    titanic.status = "invalid"
    titanic.save()
    assert services.training_job_run(job_id=job.pk) is None
    job.refresh_from_db()
    assert (job.status, job.error_code) == ("failed", "DATASET_NOT_READY")
    assert [e["type"] for e in events("training_started", "training_failed")] == ["training_failed"]


# --- the reaper -----------------------------------------------------------------------------------------


def _running(dataset, *, started_ago: float, **fields):
    job = start(dataset)
    assert jobs.claim(TrainingJob, job.pk)
    then = timezone.now() - timedelta(seconds=started_ago)
    TrainingJob.objects.filter(pk=job.pk).update(started_at=then, heartbeat_at=then, **fields)
    return job


def test_the_reaper_fails_jobs_whose_worker_died(titanic, events):
    lost = _running(titanic, started_ago=60)
    late = _running(titanic, started_ago=4000, time_limit=3600)
    stopping = _running(titanic, started_ago=60, cancel_requested=True)
    alive = _running(titanic, started_ago=2)
    assert jobs.reap_all()["training.services.jobs.training_jobs_reap_stale"] == 3
    status = dict(TrainingJob.objects.values_list("pk", "error_code"))
    assert status == {lost.pk: "WORKER_LOST", late.pk: "TIMEOUT", stopping.pk: "CANCELLED", alive.pk: ""}
    assert TrainingJob.objects.get(pk=stopping.pk).status == "cancelled"
    codes = {e["job_id"]: e["error_code"] for e in events("training_failed")}
    assert codes == {lost.pk: "WORKER_LOST", late.pk: "TIMEOUT", stopping.pk: "CANCELLED"}
    assert services.training_jobs_reap_stale() == 0  # once


# --- deployment ---------------------------------------------------------------------------------------


def test_deploy_then_rollback(titanic, train_version, user, events):
    v1 = train_version(titanic, name="survival")
    v2 = train_version(titanic, name="survival")
    first = services.model_version_deploy(version=v1, user=user)
    assert (first.action, first.previous, first.deployed_by) == ("deploy", None, user)
    second = services.model_version_deploy(version=v2, user=user)
    assert (second.action, second.previous_id) == ("deploy", v1.pk)
    assert services.model_version_deploy(version=v2, user=user) is None  # already serving
    back = services.model_version_deploy(version=v1, user=user)
    assert (back.action, back.previous_id) == ("rollback", v2.pk)
    statuses = dict(ModelVersion.objects.values_list("version", "status"))
    assert statuses == {1: "active", 2: "inactive"} and Deployment.objects.count() == 3

    deployed = events("model_deployed")
    assert [(e["model_id"], e["model_version"]) for e in deployed] == [(v1.pk, 1), (v2.pk, 2), (v1.pk, 1)]
    assert "rolled back to v1" in deployed[-1]["message"]
    events.expect("model_deployed", model_id=v2.pk, model_name="survival", model_version=2)
    changes = [(e["model_id"], e["status"]) for e in events("model_status_change")]
    assert changes == [(v1.pk, "active"), (v2.pk, "active"), (v1.pk, "inactive"), (v1.pk, "active"), (v2.pk, "inactive")]
    events.expect("model_status_change", model_id=v2.pk, status="inactive")
    feed = [e["activity"]["title"] for e in events("activity_update")]
    assert feed[-3:] == ["Model deployed: survival v1", "Model deployed: survival v2", "Model rolled back: survival v1"]
    assert "Training completed: survival v2" in feed
    events.expect("activity_update", activity={"title": "Model rolled back: survival v1", "user": "alice"})


def test_a_tampered_artifact_is_never_deployed_nor_loaded(titanic, train_version, events):
    version = train_version(titanic)
    path = Path(default_storage.path(version.artifact.name))
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(services.Conflict, match="checksum"):
        services.model_version_deploy(user=None, version=version)
    version.refresh_from_db()
    assert version.status == "error"
    assert [(e["model_id"], e["status"]) for e in events("model_status_change")] == [(version.pk, "error")]
    with pytest.raises(services.ArtifactError):
        services.model_version_predict(version=version, instances=[{}])


def test_a_tampered_artifact_is_caught_before_it_is_loaded_for_predictions(titanic, train_version):
    version = train_version(titanic)
    Path(default_storage.path(version.artifact.name)).write_bytes(b"not a model")
    instances, _ = titanic_instances(version, 1)
    with pytest.raises(services.ArtifactError):
        services.model_version_predict(version=version, instances=instances)
    assert ModelVersion.objects.get(pk=version.pk).status == "error"


# --- predictions ----------------------------------------------------------------------------------------


def test_predictions_are_sensible_and_counted(titanic, train_version, clean_prediction_counters):
    version = train_version(titanic, algorithm="random_forest", epochs=3)
    instances, labels = titanic_instances(version)
    result = services.model_version_predict(version=version, instances=instances)
    accuracy = sum(int(p == y) for p, y in zip(result["predictions"], labels)) / len(labels)
    assert accuracy > 0.8
    assert all(set(p) == {"0", "1"} and sum(p.values()) == pytest.approx(1) for p in result["probabilities"])
    services.prediction_counts_flush()
    assert ModelVersion.objects.get(pk=version.pk).prediction_count == len(instances)


def test_milestones(titanic, train_version, events, clean_prediction_counters):
    version = train_version(titanic)
    services.model_version_record_predictions(version=version, count=60)  # the first: opens the 10 s window
    services.model_version_record_predictions(version=version, count=30)  # within 10 s, no milestone: quiet
    services.model_version_record_predictions(version=version, count=20)  # crosses 100
    services.model_version_record_predictions(version=version, count=1000)  # crosses 500 and 1,000: says 1,000
    sent = events("prediction_volume")
    assert [(e["total_predictions"], e["milestone_reached"]) for e in sent] == [(60, None), (110, 100), (1110, 1000)]
    assert all(e["model_id"] == version.pk and e["model_name"] == version.name for e in sent)
    assert sent[-1]["model_predictions"] == 1110 and sent[-1]["predictions_per_minute"] > 0
    assert "1,000 predictions" in sent[-1]["message"]
    events.expect("prediction_volume", model_id=version.pk, total_predictions=1110, milestone_reached=1000)
    services.prediction_counts_flush()
    assert ModelVersion.objects.get(pk=version.pk).prediction_count == 1110


def test_milestones_are_counted_across_every_version(titanic, train_version, events, clean_prediction_counters):
    a, b = train_version(titanic, name="a"), train_version(titanic, name="b")
    services.model_version_record_predictions(version=a, count=99)
    services.model_version_record_predictions(version=b, count=1)
    last = events("prediction_volume")[-1]
    assert (last["total_predictions"], last["milestone_reached"], last["model_id"], last["model_predictions"]) == (100, 100, b.pk, 1)


@pytest.mark.parametrize(
    "old, new, milestone",
    [(0, 99, None), (99, 100, 100), (0, 10_000, 10_000), (9_999, 10_001, 10_000), (10_000, 19_999, None),
     (19_999, 20_000, 20_000), (15_000, 45_000, 40_000), (100, 499, None), (4_000, 6_000, 5_000)],
)
def test_milestone_between(old, new, milestone):
    assert services.milestone_between(old, new) == milestone


def test_the_model_cache_follows_the_deployed_version(titanic, train_version):
    v1 = train_version(titanic, name="m")
    v2 = train_version(titanic, name="m", algorithm="random_forest", epochs=2)
    instances, _ = titanic_instances(v1, 3)
    services.model_version_predict(version=v1, instances=instances)
    services.model_version_predict(version=v2, instances=instances)
    assert (v1.pk, v1.artifact_sha256) in services.serving._models and (v2.pk, v2.artifact_sha256) in services.serving._models
    assert services.model_version_load(version=v1) is services.model_version_load(version=v1)
    assert services.model_version_load(version=v1) is not services.model_version_load(version=v2)
