"""Training across processes: a real Celery worker trains, a real ASGI server relays the events to
a real WebSocket, the API deploys and predicts. Cancel, duplicate delivery, time limits, and a
worker killed with SIGKILL in the middle of training."""

from __future__ import annotations

import math
import time

import pytest

from mlops_dashboard.events import catalog
from tests import procs
from tests.conftest import session_cookie
from training import services, tasks
from training.models import ModelVersion, TrainingJob

from .conftest import titanic_instances

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

TERMINAL = ("training_completed", "training_failed")


def job_row(job_id) -> TrainingJob:
    return TrainingJob.objects.get(pk=job_id)


def wait_for_job(job_id, predicate, timeout=60, message="job state"):
    return procs.wait_for(lambda: (lambda j: j if predicate(j) else None)(job_row(job_id)), timeout=timeout,
                          interval=0.1, message=message)


def post(client, url, data=None):
    return client.post(url, data, content_type="application/json")


def test_a_job_trains_on_a_worker_and_the_socket_sees_it_live_then_deploy_and_predict(
    server, worker, client, user, open_socket, titanic, clean_prediction_counters
):
    sock = open_socket(cookie=session_cookie(client, user))
    sock.send({"type": "ping", "ts": 1})
    sock.recv_until(lambda e: e["type"] == "pong")

    response = post(client, "/api/training-jobs/", {"dataset": titanic.pk, "target_column": "survived",
                                                    "algorithm": "mlp", "epochs": 8, "name": "titanic-live"})
    assert response.status_code == 201 and response.json()["status"] == "queued"
    job_id = response.json()["id"]

    got = sock.recv_until(lambda e: e["type"] in TERMINAL and e.get("job_id") == job_id, timeout=90)
    mine = [e for e in got if e.get("job_id") == job_id]
    assert [e["id"] for e in got] == sorted(e["id"] for e in got)
    types = [e["type"] for e in mine]
    assert types[0] == "training_started" and types[-1] == "training_completed", types
    assert set(types[1:-1]) == {"training_progress"}
    assert mine[0]["model_name"] == "titanic-live" and mine[0]["total_epochs"] == 8 and mine[0]["dataset_id"] == titanic.pk
    progress = mine[1:-1]
    assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)
    assert [p["stage"] for p in progress][0] == "data_preparation"
    # Progress is coalesced per job (a few events a second, always the first and the last): these
    # epochs last milliseconds, so some are folded into later events, which carry the later epoch.
    epochs = [p for p in progress if p["current_epoch"] > 0]
    assert epochs and [p["current_epoch"] for p in epochs] == sorted(p["current_epoch"] for p in epochs)
    assert progress[-1]["current_epoch"] == 8 and progress[-1]["progress"] >= 90
    for p in epochs:  # real losses and validation accuracies
        assert math.isfinite(p["current_loss"]) and p["current_loss"] > 0 and 0.5 < p["live_accuracy"] <= 1
        assert p["total_epochs"] == 8 and p["estimated_time_remaining"] is not None

    done = mine[-1]
    job = job_row(job_id)
    assert job.status == "succeeded" and [h["epoch"] for h in job.history] == list(range(1, 9))
    version = ModelVersion.objects.get(pk=done["model_id"])
    assert (version.name, version.version, version.training_job_id) == ("titanic-live", 1, job_id)
    assert done["validation_score"] == pytest.approx(version.validation_score) and version.validation_score > 0.7
    assert done["model_size"] == version.artifact_size

    deployed = post(client, f"/api/models/{version.pk}/deploy/")
    assert deployed.status_code == 200 and deployed.json()["model"]["status"] == "active"
    seen = sock.recv_until(lambda e: e["type"] == "model_status_change" and e["model_id"] == version.pk, timeout=60)
    assert any(e["type"] == "model_deployed" and e["model_name"] == "titanic-live" for e in seen)

    instances, labels = titanic_instances(version, 100)
    served = post(client, "/api/models/by-name/titanic-live/predict/", {"instances": instances})
    assert served.status_code == 200
    predictions = served.json()["predictions"]
    assert sum(p == y for p, y in zip(predictions, labels)) >= 75
    volume = sock.recv_until(lambda e: e["type"] == "prediction_volume", timeout=60)[-1]
    assert volume["model_id"] == version.pk and volume["model_predictions"] == 100 and volume["total_predictions"] >= 100
    assert volume["milestone_reached"] == 100


def test_a_job_delivered_twice_trains_once(worker, titanic, user):
    job = services.training_job_start(user=user, dataset=titanic, target_column="survived", algorithm="sgd", epochs=3,
                                      created_by=user)  # enqueued once on commit
    tasks.training_job_run.delay(job.pk)  # and delivered again
    wait_for_job(job.pk, lambda j: j.status == "succeeded", message="the job to succeed")
    assert tasks.training_job_run(job.pk) is None  # a third, in this process: nothing to claim
    procs.wait_for(lambda: f"training job {job.pk}: already claimed" in worker.output(), timeout=30,
                   message="the duplicate delivery to run")
    assert ModelVersion.objects.filter(training_job_id=job.pk).count() == 1 and ModelVersion.objects.count() == 1
    assert job_row(job.pk).attempts == 1


def test_cancel_stops_a_running_job_within_one_epoch(server, worker, client, user, open_socket, big_dataset):
    sock = open_socket(cookie=session_cookie(client, user))
    job = services.training_job_start(user=None, dataset=big_dataset, target_column="label", algorithm="mlp", epochs=200)
    got = sock.recv_until(lambda e: e["type"] == "training_progress" and e["job_id"] == job.pk
                          and e["current_epoch"] >= 3, timeout=180)
    # Epochs here are longer than the coalescing interval: one training_progress per epoch.
    epochs = [e["current_epoch"] for e in got if e["type"] == "training_progress" and e["stage"] == "model_training"]
    assert epochs == list(range(epochs[0], epochs[-1] + 1)) and epochs[-1] >= 3

    response = post(client, f"/api/training-jobs/{job.pk}/cancel/")
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    finished_when_cancelled = response.json()["current_epoch"]
    failed = sock.recv_until(lambda e: e["type"] in TERMINAL and e.get("job_id") == job.pk, timeout=30)[-1]
    assert failed["type"] == "training_failed" and failed["error_code"] == "CANCELLED"
    job.refresh_from_db()
    assert job.status == "cancelled" and job.error_code == "CANCELLED"
    # The epoch that was running when the cancel landed is the last one.
    assert finished_when_cancelled <= len(job.history) <= finished_when_cancelled + 1
    assert not ModelVersion.objects.exists()


def test_a_job_past_its_soft_time_limit_fails_with_timeout(worker, big_dataset, settings, events):
    settings.TRAINING_SOFT_TIME_LIMIT = 3
    settings.TRAINING_HARD_TIME_LIMIT = 30
    job = services.training_job_start(user=None, dataset=big_dataset, target_column="label", algorithm="mlp", epochs=200)
    assert (job.soft_time_limit, job.time_limit) == (3, 30)
    job = wait_for_job(job.pk, lambda j: j.is_terminal, timeout=120, message="the time limit")
    assert (job.status, job.error_code) == ("failed", "TIMEOUT") and "3 s" in job.error
    assert job.duration < settings.TRAINING_HARD_TIME_LIMIT  # ended by the soft limit, not killed by the hard one
    failed = procs.wait_for(lambda: [e for e in events("training_failed") if e["job_id"] == job.pk], timeout=60,
                            message="training_failed")
    assert failed[0]["error_code"] == "TIMEOUT" and failed[0]["suggestions"]


def test_predictions_through_two_server_processes_are_counted_exactly_once(server, titanic, train_version, user,
                                                                          events, clean_prediction_counters):
    """Eight clients on two ASGI processes: the count is exact and each milestone is announced once."""
    import threading

    import httpx
    from tests.factories import api_token_for

    version = train_version(titanic, name="shared")
    services.model_version_deploy(user=None, version=version)
    token = api_token_for(user)
    instances, _ = titanic_instances(version, 5)
    second = procs.Server().start()
    failures = []

    def client(url):
        with httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=30) as http:
            for _ in range(30):
                response = http.post(f"{url}/api/models/by-name/shared/predict/", json={"instances": instances})
                if response.status_code != 200:
                    failures.append(response.text)

    try:
        threads = [threading.Thread(target=client, args=(s.url,)) for s in (server, second) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        second.stop()
    assert not failures
    services.prediction_counts_flush()
    assert ModelVersion.objects.get(pk=version.pk).prediction_count == 2 * 4 * 30 * 5
    milestones = procs.wait_for(
        lambda: (lambda m: m if 1000 in m else None)([e["milestone_reached"] for e in events("prediction_volume")
                                                     if e["milestone_reached"]]),
        timeout=60, message="the 1,000 milestone")
    assert milestones == [100, 500, 1000]


def test_a_worker_killed_mid_training_leaves_the_job_failed_with_worker_lost(live_worker_proc, big_dataset, events):
    """SIGKILL the worker's whole process group mid-training; beat (on another worker) runs the
    reaper, which fails the job with WORKER_LOST."""
    live_worker_proc.stop()  # the session's worker must not take the job (later tests restart it)
    victim = procs.Worker(concurrency=1).start()
    beat_host = None
    try:
        job = services.training_job_start(user=None, dataset=big_dataset, target_column="label", algorithm="mlp", epochs=300)
        wait_for_job(job.pk, lambda j: j.status == "running", timeout=60, message="the victim to claim the job")
        beat_host = procs.Worker(beat=True).start()  # only now: it must not take the job itself
        wait_for_job(job.pk, lambda j: j.current_epoch >= 1, timeout=90, message="training to make progress")
        victim.kill()
        killed_at = time.monotonic()
        assert job_row(job.pk).status == "running"

        job = wait_for_job(job.pk, lambda j: j.is_terminal, timeout=180, message="the reaper")
        took = time.monotonic() - killed_at
        assert (job.status, job.error_code) == ("failed", "WORKER_LOST")
        assert job.stage_failed == "model_training" and job.suggestions
        assert not ModelVersion.objects.filter(training_job_id=job.pk).exists()
        # Published on commit of that change: just after the row, from the reaper's process.
        failed = procs.wait_for(lambda: [e for e in events("training_failed") if e["job_id"] == job.pk], timeout=60,
                                message="training_failed")
        assert len(failed) == 1 and failed[0]["error_code"] == "WORKER_LOST"
        catalog.TrainingFailed(**{k: v for k, v in failed[0].items() if k not in ("type", "id", "timestamp")})
        print(f"WORKER_LOST {took:.1f} s after SIGKILL")
    finally:
        victim.stop()
        if beat_host is not None:
            beat_host.stop()
