"""Redis restarted while a training job runs on a worker and sockets follow it on a server.

With its data back (as with persistence), every socket ends with every logged event once, in
order, no gap: publishes retry while Redis is away, and the server's channel layer re-reads the log
after its subscription returns. Restarted empty, the log is gone: sockets are told `replay_gap`
(the page reloads from the API), then get every later event once, and the API shows the truth.
"""

from __future__ import annotations

import pytest

from tests import procs
from training.models import ModelVersion

from .conftest import api, assert_every_logged_event_once

CLOSING = ("training_completed", "training_failed")
# Enough epochs of the big dataset (each over the coalescing interval) to restart Redis between two of
# them, few enough that a loaded machine (each epoch several times slower) ends well inside the
# test's ceiling (pytest.ini's timeout).
EPOCHS = 6


@pytest.mark.parametrize("keep_data", [True, False], ids=["with-its-data", "empty"])
def test_redis_restarted_during_training(private_redis, stack, follow, token, user, big_dataset, keep_data):
    env = {"REDIS_URL": private_redis.url}
    server = stack.server(**env)
    stack.worker(concurrency=1, **env)
    user.is_staff = True  # to publish test events: history that a fresh socket must not be sent
    user.save()
    history = [api(server, token, "POST", "/api/events/test/").json()["id"] for _ in range(3)]
    follower = follow(server.ws_url)
    # A staff socket follows every project, and the staff topic (the test events' lines).
    topics = {"dashboard", f"user.{user.pk}", "staff", f"project.{big_dataset.project_id}"}

    response = api(server, token, "POST", "/api/training-jobs/", json={
        "dataset": big_dataset.pk, "target_column": "label", "algorithm": "mlp", "epochs": EPOCHS})
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    first = follower.wait_for(lambda e: e.get("job_id") == job_id, timeout=60, message="the job's first event")
    follower.wait_for(lambda e: e["type"] == "training_progress" and e["job_id"] == job_id
                      and e["current_epoch"] >= 1, timeout=150, message="training to make progress")

    private_redis.restart(keep_data=keep_data)

    done = follower.wait_for(lambda e: e["type"] in CLOSING and e["job_id"] == job_id, timeout=180,
                             message="the job's closing event")
    assert done["type"] == "training_completed", done
    ids = follower.ids
    assert ids == sorted(set(ids)), "out of order or duplicated"
    assert not set(history) & set(ids), "a socket that connected without last_event_id was sent history"
    gaps = [e for e in follower.errors if e["code"] == "replay_gap"]
    if keep_data:
        assert not follower.errors
        assert_every_logged_event_once(follower, private_redis.client(), topics, after=first["id"] - 1)
    else:
        assert len(gaps) == 1, follower.errors
        assert_every_logged_event_once(follower, private_redis.client(), topics, after=gaps[0]["latest_id"])
    # What a page reloads after a gap, and what the API says in any case: the truth.
    job = api(server, token, "GET", f"/api/training-jobs/{job_id}/").json()
    assert job["status"] == "succeeded" and job["current_epoch"] == EPOCHS
    versions = ModelVersion.objects.filter(training_job_id=job_id)
    assert versions.count() == 1 and done["model_id"] == versions.get().pk
    print(f"{len(ids)} events, {len(follower.connections)} connection(s), drops {follower.close_codes}, "
          f"gaps {len(gaps)}")


def test_a_publish_while_redis_restarts_waits_for_it(private_redis, settings):
    """Within EVENT_PUBLISH_RETRY_SECONDS a publish retries until Redis answers again: no event lost."""
    import threading
    import time

    from mlops_dashboard.events import bus, catalog, publish

    settings.REDIS_URL = private_redis.url
    settings.EVENT_PUBLISH_RETRY_SECONDS = 120  # however long redis-server takes to start again here
    bus.reset_clients()
    try:
        before = publish(catalog.DatasetCreated(project_id=1, dataset_id=1, name="before"))
        assert before is not None
        private_redis.client().shutdown(save=True)
        private_redis.proc.wait(timeout=10)
        back = threading.Timer(1.5, private_redis.start)  # back in 1.5 s, with its data
        back.start()
        started = time.monotonic()
        during = publish(catalog.DatasetCreated(project_id=1, dataset_id=2, name="during"))
        waited = time.monotonic() - started
        assert during == before + 1 and waited > 1.0
        assert [event_id for event_id, _, _ in bus.read_after(before).events] == [during]
        back.join(timeout=120)  # its start() is done before the fixture stops this Redis
    finally:
        bus.reset_clients()


def test_after_an_empty_restart_the_gap_says_where_the_new_log_begins(private_redis, stack, follow, user, project,
                                                                     settings):
    """Redis restarted empty, and the server's layer resyncs before anything is published again: the
    log and its sequence are gone. The socket stays open and is told `replay_gap`, whose resume point
    (`latest_id`) is at or above every id the socket was sent, after which the new log has every
    event: the client reloads from the API and carries on from there, without a second gap when it
    reconnects from it."""
    from mlops_dashboard.events import bus, catalog, publish

    settings.REDIS_URL = private_redis.url
    bus.reset_clients()
    try:
        server = stack.server(REDIS_URL=private_redis.url)
        follower = follow(server.ws_url)
        topics = {"dashboard", f"user.{user.pk}", f"project.{project.id}"}
        before = [publish(catalog.DatasetCreated(project_id=project.id, dataset_id=n, name="before"))
                  for n in range(1, 4)]
        follower.wait_for(lambda e: e["id"] == before[-1], message="the events before the restart")

        private_redis.restart(keep_data=False)  # nothing is published until the layer has resynced
        gap = procs.wait_for(lambda: next((e for e in follower.errors if e["code"] == "replay_gap"), None),
                             timeout=120, message=f"the replay_gap after the restart; {follower}")
        assert gap["latest_id"] >= before[-1], f"the sequence went backwards: {gap}, sent {follower.ids}"
        assert not bus.read_after(gap["latest_id"]).gap, "resuming from the gap's latest_id is another gap"

        after = [publish(catalog.DatasetCreated(project_id=project.id, dataset_id=n, name="after"))
                 for n in range(4, 7)]
        follower.wait_for(lambda e: e["id"] == after[-1], message="the events after the restart")
        assert follower.ids == before + after
        assert_every_logged_event_once(follower, private_redis.client(), topics, after=gap["latest_id"])
        assert [e["code"] for e in follower.errors] == ["replay_gap"], follower.errors
        # The same socket throughout: the server's layer resynced it from the log (its first read
        # after the restart goes out on a pooled connection that the old Redis closed).
        assert len(follower.connections) == 1, f"the socket was dropped: {follower}"
    finally:
        bus.reset_clients()


def test_a_publish_retrying_through_an_outage_does_not_hold_up_other_jobs(private_redis, settings):
    """The progress throttle sends outside its lock: while job 1's publish retries (Redis is down),
    job 2's coalesced progress is held at once instead of waiting out job 1's retries; once Redis is
    back, job 1's event is sent, then job 2's closing event after its held progress."""
    import json
    import threading

    from mlops_dashboard.events import bus, catalog, publish
    from tests import procs

    def progress(job, pct):
        return catalog.JobProgress(job_id=job, dataset_id=1, project_id=1, progress=float(pct), status="running",
                                   current_step="step")

    settings.REDIS_URL = private_redis.url
    settings.EVENT_PUBLISH_RETRY_SECONDS = 600  # job 1's publish stays in its retries for the whole test
    settings.EVENT_PROGRESS_INTERVAL = 3600  # job 2's second progress is held, not sent
    bus.reset_clients()
    try:
        first = publish(progress(2, 10))
        assert first is not None
        private_redis.client().shutdown(save=True)
        private_redis.proc.wait(timeout=10)
        results = {}
        stuck = threading.Thread(target=lambda: results.update(job1=publish(progress(1, 10))), daemon=True)
        stuck.start()
        procs.wait_for(lambda: ("job_progress", 1) in bus.throttle().last_sent and stuck.is_alive(), timeout=60,
                       message="job 1's publish to be retrying")
        other = threading.Thread(target=lambda: results.update(job2=publish(progress(2, 20))), daemon=True)
        other.start()
        other.join(timeout=60)
        assert not other.is_alive(), "job 2's publish waited behind job 1's retries"
        assert results["job2"] is None and stuck.is_alive()  # held by the throttle; job 1 still retrying
        private_redis.start()
        stuck.join(timeout=120)
        assert not stuck.is_alive() and results["job1"] is not None
        closed = publish(catalog.JobCompleted(job_id=2, dataset_id=1, project_id=1, status="succeeded", duration=1.0))
        logged = [json.loads(text) for _, _, text in bus.read_after(first).events]
        assert [(e["type"], e["job_id"], e.get("progress")) for e in logged] == [
            ("job_progress", 1, 10.0), ("job_progress", 2, 20.0), ("job_completed", 2, None)]
        assert logged[-1]["id"] == closed
    finally:
        bus.reset_clients()
