"""Live events written straight to the socket (the direct relay of events/layer.py and
EventsConsumer._relay_now) never overtake one the consumer is still handling, whatever the socket
is doing meanwhile: answering its own pings, replaying after a reconnect, or not reading."""

from __future__ import annotations

import json
import threading
import time

from websockets.sync.client import connect

from mlops_dashboard.events import catalog, publish


def activity(n: int) -> catalog.ActivityUpdate:
    return catalog.ActivityUpdate(activity={
        "id": None, "title": f"relay {n}", "description": "", "user": "tests", "action_type": "test",
        "status": "info", "severity_level": "info", "duration": None, "metadata": {"n": n},
    })


def test_a_socket_busy_with_its_own_pings_gets_every_event_once_in_order(stack, token):
    server = stack.server()
    events, pongs, done = [], [], threading.Event()
    with connect(server.ws_url, additional_headers={"Authorization": f"Token {token}"}, max_size=2**22) as ws:
        def pinger():
            # Each ping holds the consumer's handler while its pong is sent; live events arriving
            # then must wait their turn behind it (and behind each other).
            while not done.is_set():
                ws.send(json.dumps({"type": "ping", "ts": time.time()}))
                time.sleep(0.0005)

        thread = threading.Thread(target=pinger, daemon=True)
        thread.start()
        time.sleep(0.3)
        ids = [publish(activity(n)) for n in range(3000)]
        deadline = time.monotonic() + 60
        while (not events or events[-1] < ids[-1]) and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=30))
            if message["type"] == "pong":
                pongs.append(message)
            elif message.get("id") is not None:
                events.append(message["id"])
        done.set()
        thread.join(timeout=5)
    assert len(pongs) > 100, "the pings must interleave with the events for this test to mean anything"
    assert [i for i in events if i >= ids[0]] == ids
