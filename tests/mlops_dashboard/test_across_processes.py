"""An event published inside a real Celery worker reaches a socket served by a real daphne process."""

import pytest

from mlops_dashboard.tasks import publish_test_event
from tests import procs
from tests.conftest import Socket, session_cookie


@pytest.fixture
def daphne(transactional_db):
    server = procs.Server(kind="daphne").start()
    yield server
    server.stop()


def test_event_from_a_worker_task_reaches_a_daphne_socket(daphne, worker, client, staff_user):
    from websockets.sync.client import connect

    cookie = session_cookie(client, staff_user)  # a test line belongs to no project: staff read it
    with connect(daphne.ws_url, origin=daphne.url, additional_headers={"Cookie": f"sessionid={cookie}"}) as conn:
        sock = Socket(conn)
        sock.send({"type": "ping", "ts": 1})
        assert sock.recv()["type"] == "pong"
        publish_test_event.delay("alice")
        event = sock.recv(timeout=30)
    assert event["type"] == "activity_update"
    assert event["activity"]["metadata"] == {"via": "a Celery worker"}
    assert isinstance(event["id"], int)


def test_staff_can_publish_through_the_worker_from_the_api(server, worker, client, staff_user, open_socket):
    sock = open_socket(cookie=session_cookie(client, staff_user))
    sock.send({"type": "ping", "ts": 1})
    sock.recv()
    response = client.post("/api/events/test/", {"via": "worker"}, content_type="application/json")
    assert response.status_code == 202
    event = sock.recv(timeout=30)
    assert event["activity"]["metadata"]["via"] == "a Celery worker"
