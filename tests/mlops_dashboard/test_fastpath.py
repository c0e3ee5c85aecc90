"""The fast path, fenced (events/fastpath.py): the live-event wire format is the layer's, a relay
that raises sends its socket the queued path without delaying the others, a dependency that lacks
what the fast path needs turns it off with one warning, and asgi.py tunes the GC at start-up.

The faults are injected in real uvicorn servers by fastpath_server.py (see there)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from websockets.sync.client import connect

from mlops_dashboard.events import bus, catalog, layer, publish
from tests import procs
from tests.factories import api_token_for

EVENTS = 20


class FaultyServer(procs.Server):
    """procs.Server, run by fastpath_server.py with the fault FASTPATH_FAULT names."""

    def command(self):
        python, flag, module, *args = super().command()
        assert (flag, module) == ("-m", "uvicorn")
        return [python, "-m", f"{__package__}.fastpath_server", *args]


@pytest.fixture
def faulty_server(transactional_db):
    started = []

    def _start(fault: str) -> FaultyServer:
        server = FaultyServer(FASTPATH_FAULT=fault).start()
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


@pytest.fixture
def token(transactional_db, user) -> str:
    return api_token_for(user)


def activity(n: int) -> catalog.ActivityUpdate:
    """An activity line of the default project, of which the sockets' user (alice) is a member."""
    from tests.factories import ProjectFactory

    return catalog.ActivityUpdate(activity={
        "id": None, "title": f"fastpath {n}", "description": "", "user": "tests", "action_type": "test",
        "status": "info", "severity_level": "info", "duration": None, "metadata": {"n": n},
    }, project_id=ProjectFactory().id)


def connected(sockets: contextlib.ExitStack, server: procs.Server, token: str, client_port: int = 0):
    """A connected socket (from `client_port`, if given) whose consumer has joined its topics (it
    answered a ping), closed with `sockets`."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=("127.0.0.1", client_port))
    ws = sockets.enter_context(connect(server.ws_url, sock=sock, additional_headers={"Authorization": f"Token {token}"}))
    ws.send(json.dumps({"type": "ping", "ts": 1}))
    while json.loads(ws.recv(timeout=30))["type"] != "pong":
        pass
    return ws


def publish_and_receive(sockets) -> tuple[list[int], list[list[int]]]:
    """Publish EVENTS events one at a time, each read by every socket before the next (so every
    socket is idle when an event arrives: a working direct relay takes all of them)."""
    ids, received = [], [[] for _ in sockets]
    for n in range(EVENTS):
        ids.append(publish(activity(n)))
        for ws, got in zip(sockets, received, strict=True):
            while not got or got[-1] < ids[-1]:
                event = json.loads(ws.recv(timeout=30))
                if event.get("id") is not None:
                    got.append(event["id"])
    ours = set(ids)
    return ids, [[i for i in got if i in ours] for got in received]


def test_the_bus_publishes_the_layers_live_event_message(redis_client):
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    pubsub = redis_client.pubsub()
    pubsub.subscribe(layer.group_channel(prefix, "dashboard"))

    def published(event_id: int):
        message = pubsub.get_message(timeout=0.5)
        if message is not None and message["type"] == "message":  # (a server's host metrics too)
            decoded = layer.EventsChannelLayer.deserialize(message["data"])
            return decoded if decoded["id"] == event_id else None

    try:
        confirmed = procs.wait_for(lambda: pubsub.get_message(timeout=0.5), timeout=10, message="the subscription")
        assert confirmed["type"] == "subscribe"
        event_id = publish(catalog.ServiceHealth(services=[{"name": "redis", "status": "ok"}]))  # on dashboard
        message = procs.wait_for(lambda: published(event_id), timeout=10, message="the published event")
    finally:
        pubsub.close()
    logged_id, _, text = bus.read_after(event_id - 1).events[0]
    assert logged_id == event_id
    assert message == layer.relay_message(event_id, text)


@pytest.mark.parametrize("option", [{"serializer_format": "json"}, {"symmetric_encryption_keys": ["k"]}])
def test_the_layer_refuses_a_serializer_the_bus_does_not_speak(option):
    with pytest.raises(ImproperlyConfigured, match="plain msgpack"):
        layer.EventsChannelLayer(hosts=[settings.REDIS_URL], **option)


def test_a_relay_that_raises_sends_its_socket_the_queued_path_and_delays_no_other(faulty_server, token):
    failing_port = procs.free_port()
    server = faulty_server(f"raise:{failing_port}")
    with contextlib.ExitStack() as sockets:
        failing = connected(sockets, server, token, client_port=failing_port)
        healthy = [connected(sockets, server, token) for _ in range(2)]
        healthy_ports = [ws.socket.getsockname()[1] for ws in healthy]
        ids, received = publish_and_receive([failing, *healthy])
    assert received == [ids] * 3  # every socket: every event, once, in order
    log = server.output()
    # The failing socket's relay raised once, was dropped, and its events took the queue.
    assert log.count(f"direct write failed for {failing_port}") == 1
    assert f"direct write to {failing_port}\n" not in log
    assert log.count("direct relay to") == 1 and "RuntimeError: injected" in log  # logged once
    # The others never noticed: the fan-out went on, and took the direct relay for every event.
    assert "Unexpected exception in receive task" not in log
    for port in healthy_ports:
        assert log.count(f"direct write to {port}\n") >= EVENTS


def test_a_dependency_without_what_the_fast_path_reads_turns_it_off_with_one_warning(faulty_server, token):
    server = faulty_server("renamed")
    warning = "direct relay off, every socket takes the queued path"
    started = server.output()
    assert started.count(warning) == 1 and "expect_continuation_frame" in started  # at start-up
    with contextlib.ExitStack() as sockets:
        ids, received = publish_and_receive([connected(sockets, server, token) for _ in range(2)])
    assert received == [ids] * 2
    log = server.output()
    assert "direct write" not in log  # the queued path, for every socket
    assert log.count(warning) == 1


def test_asgi_start_up_freezes_the_heap_and_raises_the_gc_thresholds():
    script = ("import gc; import mlops_dashboard.asgi as asgi; "
              "print(gc.get_threshold() == asgi.GC_THRESHOLDS, gc.get_freeze_count() > 10_000)")
    out = subprocess.run([sys.executable, "-c", script], env=procs.child_env(), cwd=procs.ROOT,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.split() == ["True", "True"]
