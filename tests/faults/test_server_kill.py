"""An ASGI server SIGKILLed while a training job runs, then started again: the sockets it held
reconnect, to the other server or to it once it is back, and miss nothing."""

from __future__ import annotations

import time

from training import services

from .conftest import assert_every_logged_event_once, log_latest

CLOSING = ("training_completed", "training_failed")


def test_a_killed_server_s_sockets_reconnect_and_miss_nothing(stack, worker, follow, user, big_dataset, redis_client):
    a, b = stack.server(), stack.server()
    fails_over = follow(a.ws_url, b.ws_url)  # reconnects to B while A is down
    waits = follow(a.ws_url)  # only knows A: reconnects when it is back
    stays = follow(b.ws_url)  # on the other server all along
    after = log_latest(redis_client)

    job = services.training_job_start(user=None, dataset=big_dataset, target_column="label", algorithm="mlp", epochs=10)
    for follower in (fails_over, waits):
        follower.wait_for(lambda e: e["type"] == "training_progress" and e["job_id"] == job.pk
                          and e["current_epoch"] >= 1, timeout=90, message="training to make progress")
    a.kill()
    time.sleep(2)  # events published meanwhile: on B live, for A's sockets in the log
    a.start()

    topics = {"dashboard", f"user.{user.pk}", f"project.{big_dataset.project_id}"}
    for follower in (fails_over, waits, stays):
        done = follower.wait_for(lambda e: e["type"] in CLOSING and e["job_id"] == job.pk, timeout=120,
                                 message="the job's closing event")
        assert done["type"] == "training_completed"
        assert not follower.errors
        assert_every_logged_event_once(follower, redis_client, topics, after=after)
    assert b.ws_url in fails_over.connections[1:] and waits.connections == [a.ws_url] * 2
    assert stays.connections == [b.ws_url]
    # All three saw the same events.
    assert fails_over.ids == waits.ids == [i for i in stays.ids if i > after]
