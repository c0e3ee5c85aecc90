"""Two ASGI servers and two Celery workers on one machine, sharing Redis and the database, as
`make run WEB_PROCESSES=2 WORKERS=2` or several machines would run them."""

from __future__ import annotations

import pytest
from websockets.sync.client import connect

from monitoring import state
from tests import procs
from training.models import TrainingJob

from .conftest import api, assert_every_logged_event_once, log_latest

CLOSING = ("training_completed", "training_failed")
# The servers' own collectors report their sockets every second (see tests/monitoring).
MONITORED = {"MONITORING_ENABLED": "1", "MONITORING_INTERVAL": "1", "MONITORING_CHECK_INTERVAL": "1"}


@pytest.fixture
def only_our_workers(live_worker_proc):
    """The session's worker must not take these jobs (later tests start it again)."""
    live_worker_proc.stop()


def test_a_socket_on_server_a_gets_every_event_of_jobs_run_on_both_workers_once_in_order(
        only_our_workers, stack, follow, token, user, big_dataset, redis_client):
    a = stack.server(**MONITORED, MONITORING_HOST="host-a")
    b = stack.server(**MONITORED, MONITORING_HOST="host-b")
    stack.worker(concurrency=1)
    stack.worker(concurrency=1)
    on_a = follow(a.ws_url)
    after = log_latest(redis_client)
    jobs = []
    for server in (b, a):  # started through either server's API
        response = api(server, token, "POST", "/api/training-jobs/", json={
            "dataset": big_dataset.pk, "target_column": "label", "algorithm": "mlp", "epochs": 6})
        assert response.status_code == 201, response.text
        jobs.append(response.json()["id"])
    # One slot per worker and both jobs running at once: one on each worker.
    procs.wait_for(lambda: TrainingJob.objects.filter(pk__in=jobs, status="running").count() == 2, timeout=60,
                   message="both jobs running at once")

    # The deployment-wide count of open sockets: 2 on A (on_a and this one), 1 on B.
    headers = {"Authorization": f"Token {token}"}
    with connect(a.ws_url, additional_headers=headers), connect(b.ws_url, additional_headers=headers):
        stats = procs.wait_for(lambda: (lambda s: s if s["active_connections"] == 3 else None)(state.process_stats()),
                               timeout=60, message="3 open sockets counted across both servers")
        assert stats["asgi_processes"] == 2
        reported = on_a.wait_for(lambda e: e["type"] == "system_metrics" and e["active_connections"] == 3,
                                 timeout=60, message="system_metrics counting both servers' sockets")
        assert reported["host"] in ("host-a", "host-b")

    for job_id in jobs:
        done = on_a.wait_for(lambda e: e["type"] in CLOSING and e["job_id"] == job_id, timeout=180,
                             message=f"job {job_id}'s closing event")
        assert done["type"] == "training_completed"
    topics = {"dashboard", f"user.{user.pk}", f"project.{big_dataset.project_id}"}
    assert_every_logged_event_once(on_a, redis_client, topics, after=after)
    for job_id in jobs:
        mine = [e for e in on_a.events if e.get("job_id") == job_id]
        assert [e["type"] for e in mine][0] == "training_started" and mine[-1]["type"] == "training_completed"
        epochs = [e["current_epoch"] for e in mine if e["type"] == "training_progress"]
        assert epochs == sorted(epochs) and epochs[-1] == 6
    assert not on_a.errors and on_a.connections == [a.ws_url]
