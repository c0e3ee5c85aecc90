"""Pipelines end to end: a real server, real Celery workers (and beat), a real socket, real files,
real scikit-learn. Runs are started through the API, as the Run button does."""

from __future__ import annotations

import time

import pytest

from datasets.models import Dataset
from pipelines.models import Pipeline, PipelineRun, StepRun
from tests import procs
from tests.conftest import session_cookie
from training.models import ModelVersion, TrainingJob

pytestmark = [pytest.mark.stack]

RUN_END = ("pipeline_completed", "pipeline_failed")


def api_post(client, user, path, data=None):
    client.force_login(user)
    return client.post(path, data or {}, content_type="application/json")


def run_pipeline(client, user, pipeline) -> int:
    response = api_post(client, user, f"/api/pipelines/{pipeline.pk}/run/")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def wait_run(run_id, predicate, timeout=90, message="the run"):
    return procs.wait_for(lambda: (r := PipelineRun.objects.get(pk=run_id)) and predicate(r) and r,
                          timeout=timeout, interval=0.2, message=message)


def step_statuses(run_id):
    return list(StepRun.objects.filter(run_id=run_id).order_by("index").values_list("status", flat=True))


def set_step(pipeline, index, step, *, user):
    steps = [dict(s) for s in pipeline.steps]
    steps[index] = step
    from pipelines import services

    return services.pipeline_update(user=user, pipeline=pipeline, steps=steps)


def test_the_demo_pipeline_runs_in_the_worker_with_its_events_in_order(
    server, worker, client, user, open_socket, demo_pipeline
):
    sock = open_socket(cookie=session_cookie(client, user))
    sock.send({"type": "ping", "ts": 0})
    sock.recv()
    run_id = run_pipeline(client, user, demo_pipeline)
    got = sock.recv_until(lambda e: e["type"] in RUN_END and e.get("run_id") == run_id, timeout=120)
    mine = [e for e in got if e["type"].startswith("pipeline_") and e.get("run_id") == run_id]
    types = [e["type"] for e in mine]
    assert [e["id"] for e in got] == sorted(e["id"] for e in got)
    assert [e["status"] for e in mine if e["type"] == "pipeline_status"] == ["queued", "running", "succeeded"]
    assert types[0] == "pipeline_status" and types[-1] == "pipeline_completed"
    assert types.index("pipeline_progress") > 1 and "pipeline_step" not in types  # steps go to the run topic only
    progress = [e for e in mine if e["type"] == "pipeline_progress"]
    assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress) and progress[-1]["progress"] == 100
    # Coalesced per run (a fast step may not show), but always in step order, first and last included.
    assert [p["step_index"] for p in progress] == sorted(p["step_index"] for p in progress) and len(progress) >= 2
    assert progress[0]["current_step"] == "validate_dataset" and progress[-1]["current_step"] == "deploy_model"
    assert all(p["total_steps"] == 5 for p in progress)
    assert mine[-1]["status"] == "succeeded" and mine[-1]["duration"] > 0

    run = PipelineRun.objects.get(pk=run_id)
    assert run.status == "succeeded" and step_statuses(run_id) == ["succeeded"] * 5
    deploy = StepRun.objects.get(run_id=run_id, kind="deploy_model")
    assert ModelVersion.objects.get(pk=deploy.model_version_id).status == "active"


def test_the_run_topic_carries_each_step_and_its_log(server, worker, client, user, open_socket, demo_pipeline):
    sock = open_socket(cookie=session_cookie(client, user))
    # A page that follows one run subscribes to its topic once the id is known: replay fills the gap.
    run_id = run_pipeline(client, user, demo_pipeline)
    sock.send({"type": "subscribe", "topics": [f"pipeline_run.{run_id}"]})
    got = sock.recv_until(lambda e: e["type"] in RUN_END and e.get("run_id") == run_id, timeout=120)
    steps = [e for e in got if e["type"] == "pipeline_step" and e["run_id"] == run_id]
    seen = [(e["step_index"], e["status"]) for e in steps]
    for index in range(5):
        assert seen.index((index, "running")) < seen.index((index, "succeeded"))
    changes = [e for e in steps if not e["log"]]  # state changes; the others carry new log lines
    assert [e["kind"] for e in changes if e["status"] == "succeeded"] == [s["kind"] for s in demo_pipeline.steps]
    train_done = next(e for e in steps if e["kind"] == "train_model" and e["status"] == "succeeded")
    assert train_done["output"]["model_version_id"] and train_done["output"]["training_job_id"]
    assert any("Registered" in line for e in steps for line in e["log"])


def test_a_failing_gate_fails_the_run_at_evaluate_and_skips_deploy(server, worker, client, user, open_socket,
                                                                   demo_pipeline):
    set_step(demo_pipeline, 3, {"kind": "evaluate", "options": {"metric": "accuracy", "threshold": 0.999}}, user=user)
    sock = open_socket(cookie=session_cookie(client, user))
    run_id = run_pipeline(client, user, demo_pipeline)
    got = sock.recv_until(lambda e: e["type"] in RUN_END and e.get("run_id") == run_id, timeout=120)
    failed = got[-1]
    assert failed["type"] == "pipeline_failed" and failed["failed_step"] == "evaluate"
    assert "Quality gate failed" in failed["error"]
    statuses = [e["status"] for e in got if e["type"] == "pipeline_status" and e["run_id"] == run_id]
    assert statuses == ["queued", "running", "failed"]
    assert step_statuses(run_id) == ["succeeded", "succeeded", "succeeded", "failed", "skipped"]
    assert not ModelVersion.objects.filter(status="active").exists()


def test_retry_after_a_fixed_gate_reuses_outputs_and_succeeds(worker, client, user, demo_pipeline):
    from datasets.models import Dataset, ProcessingJob

    set_step(demo_pipeline, 3, {"kind": "evaluate", "options": {"metric": "accuracy", "threshold": 0.999}}, user=user)
    first = run_pipeline(client, user, demo_pipeline)
    wait_run(first, lambda r: r.is_terminal)
    assert api_post(client, user, f"/api/pipeline-runs/{first}/cancel/").status_code == 409
    counts = (ProcessingJob.objects.count(), TrainingJob.objects.count(), Dataset.objects.count())

    set_step(Pipeline.objects.get(pk=demo_pipeline.pk), 3,
             {"kind": "evaluate", "options": {"metric": "accuracy", "threshold": 0.9}}, user=user)
    response = api_post(client, user, f"/api/pipeline-runs/{first}/retry/")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["retry_of"] == first and [s["reused"] for s in body["step_runs"]] == [True, True, True, False, False]
    second = wait_run(body["id"], lambda r: r.is_terminal)
    assert second.status == "succeeded", second.error
    assert (ProcessingJob.objects.count(), TrainingJob.objects.count(), Dataset.objects.count()) == counts
    assert api_post(client, user, f"/api/pipeline-runs/{second.pk}/retry/").status_code == 409


def test_cancel_during_training_cancels_the_training_job_and_skips_the_rest(
    server, worker, client, user, open_socket, big_dataset
):
    from pipelines import services

    pipeline = services.pipeline_create(user=user, name="long", dataset=big_dataset, steps=[
        {"kind": "validate_dataset", "options": {}},
        {"kind": "train_model", "options": {"algorithm": "mlp", "epochs": 300}},
        {"kind": "evaluate", "options": {"metric": "accuracy", "threshold": 0.5}},
        {"kind": "deploy_model", "options": {}},
    ])
    sock = open_socket(cookie=session_cookie(client, user))
    run_id = run_pipeline(client, user, pipeline)
    sock.recv_until(lambda e: e["type"] == "training_progress" and e["current_epoch"] >= 2, timeout=90)
    response = api_post(client, user, f"/api/pipeline-runs/{run_id}/cancel/")
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    got = sock.recv_until(lambda e: e["type"] in RUN_END and e.get("run_id") == run_id, timeout=60)
    assert got[-1]["type"] == "pipeline_completed" and got[-1]["status"] == "cancelled"
    assert any(e["type"] == "training_failed" and e["error_code"] == "CANCELLED" for e in got)
    run = PipelineRun.objects.get(pk=run_id)
    assert run.status == "cancelled" and step_statuses(run_id) == ["succeeded", "cancelled", "skipped", "skipped"]
    train = StepRun.objects.get(run_id=run_id, index=1)
    assert TrainingJob.objects.get(pk=train.training_job_id).status == "cancelled"
    assert not ModelVersion.objects.exists()


def test_a_second_run_waits_queued_until_the_first_ends(worker, client, user, demo_pipeline):
    assert demo_pipeline.max_concurrent_runs == 1
    first = run_pipeline(client, user, demo_pipeline)
    second = run_pipeline(client, user, demo_pipeline)
    wait_run(first, lambda r: r.status == "running", message="the first run to start")
    run = PipelineRun.objects.get(pk=second)
    assert run.status == "queued"
    first_run = wait_run(first, lambda r: r.is_terminal)
    # While the first ran, the second never started.
    second_run = wait_run(second, lambda r: r.is_terminal, message="the second run")
    assert first_run.status == second_run.status == "succeeded"
    assert second_run.started_at >= first_run.finished_at


def test_a_worker_killed_mid_run_leaves_the_run_failed_naming_the_step(live_worker_proc, client, user, big_dataset,
                                                                        events):
    from pipelines import services

    live_worker_proc.stop()  # the session's worker must not take the run (later tests restart it)
    pipeline = services.pipeline_create(user=user, name="doomed", dataset=big_dataset, steps=[
        {"kind": "validate_dataset", "options": {}},
        {"kind": "train_model", "options": {"algorithm": "mlp", "epochs": 300}},
        {"kind": "deploy_model", "options": {}},
    ])
    victim = procs.Worker(beat=True, REAPER_INTERVAL=2).start()
    survivor = None
    try:
        run_id = run_pipeline(client, user, pipeline)
        procs.wait_for(lambda: TrainingJob.objects.filter(current_epoch__gte=1).exists(), timeout=90,
                       message="training to make progress")
        victim.kill()
        killed_at = time.monotonic()
        assert PipelineRun.objects.get(pk=run_id).status == "running"
        survivor = procs.Worker(beat=True, REAPER_INTERVAL=2).start()
        run = wait_run(run_id, lambda r: r.is_terminal, timeout=180, message="the reaper")
        took = time.monotonic() - killed_at
        assert run.status == "failed" and run.failed_step == "train_model"
        assert "train_model" in run.error and "worker" in run.error
        assert step_statuses(run_id) == ["succeeded", "failed", "skipped"]
        # The inner training job ends too (its own reaper), with no model version.
        procs.wait_for(lambda: not TrainingJob.objects.filter(status__in=("queued", "running")).exists(),
                       timeout=180, message="the inner training job to end")
        assert not ModelVersion.objects.exists()
        failed = [e for e in events("pipeline_failed") if e["run_id"] == run_id]
        assert len(failed) == 1 and failed[0]["failed_step"] == "train_model"
        print(f"pipeline run reaped {took:.1f} s after SIGKILL")
    finally:
        victim.stop()
        if survivor is not None:
            survivor.stop()



def test_a_run_delivered_twice_executes_once(worker, client, user, demo_pipeline):
    """As a broker may after a visibility timeout: a second delivery of a running run does nothing."""
    from pipelines import tasks
    from training.models import Deployment

    run_id = run_pipeline(client, user, demo_pipeline)
    tasks.pipeline_run_execute.delay(run_id)  # delivered again while the first runs
    run = wait_run(run_id, lambda r: r.is_terminal)
    assert run.status == "succeeded" and run.attempts == 1
    procs.wait_for(lambda: f"pipeline run {run_id}: already claimed" in worker.output(), timeout=30,
                   message="the second delivery to run and skip")
    assert step_statuses(run_id) == ["succeeded"] * len(demo_pipeline.steps)
    assert TrainingJob.objects.count() == 1 and ModelVersion.objects.count() == 1
    assert Deployment.objects.count() == 1
    produced = [s.output.get("dataset_id") for s in StepRun.objects.filter(run_id=run_id) if s.output.get("dataset_id")]
    assert Dataset.objects.exclude(pk=demo_pipeline.dataset_id).count() == len(set(produced)) == len(produced)
