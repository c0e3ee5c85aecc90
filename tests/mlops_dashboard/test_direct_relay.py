"""On the server `make run` starts (uvicorn, websockets-sansio, no per-message deflate), a socket
takes the direct relay: its live events are written as one prebuilt frame (events/fastpath.py,
`FrameWriter`). Should a uvicorn or websockets upgrade change what that relies on, the server logs
one warning at start-up and keeps the slower ASGI path; this test fails instead."""

from __future__ import annotations

import json
import threading

import pytest
import uvicorn
from channels.layers import get_channel_layer
from websockets.sync.client import connect

from mlops_dashboard.events import catalog, publish
from tests import procs
from tests.factories import api_token_for


@pytest.fixture
def in_process_server(transactional_db):
    """uvicorn with `make run`'s WebSocket flags, in a thread of this process: its channel layer is
    this process's, so the test can see which consumers registered a direct relay."""
    from mlops_dashboard.asgi import application

    port = procs.free_port()
    server = uvicorn.Server(uvicorn.Config(
        application, host="127.0.0.1", port=port, lifespan="off", log_level="warning", loop="uvloop",
        http="httptools", ws="websockets-sansio", ws_per_message_deflate=False, ws_max_size=1048576,
    ))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    procs.wait_for(lambda: server.started, timeout=60, message="the in-process uvicorn to start")
    yield f"ws://127.0.0.1:{port}/ws/"
    server.should_exit = True
    thread.join(timeout=10)


def test_a_socket_on_the_shipped_server_takes_the_direct_relay(in_process_server, user, project):
    token = api_token_for(user)
    relays = get_channel_layer().relays
    with connect(in_process_server, additional_headers={"Authorization": f"Token {token}"}) as ws:
        procs.wait_for(lambda: len(relays) == 1, timeout=60, message="the consumer's direct relay")
        ids = [publish(catalog.ActivityUpdate(activity={
            "id": None, "title": f"direct {n}", "description": "", "user": "tests", "action_type": "test",
            "status": "info", "severity_level": "info", "duration": None, "metadata": {"n": n},
        }, project_id=project.id)) for n in range(20)]
        got = []
        while not got or got[-1] < ids[-1]:
            event = json.loads(ws.recv(timeout=60))
            if event.get("id") is not None:
                got.append(event["id"])
        assert [i for i in got if i >= ids[0]] == ids
    procs.wait_for(lambda: not relays, timeout=60, message="the relay to be dropped with its socket")
