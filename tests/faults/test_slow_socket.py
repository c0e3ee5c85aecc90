"""A socket that stops reading does not grow the server's memory without bound or delay the others;
when it reads again it is closed (1013) and replays the rest from the log, missing nothing."""

from __future__ import annotations

import json
import time

import psutil
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from mlops_dashboard.events import catalog, publish

EVENTS = 20_000
PADDING = "x" * 2000  # ~2 KB per event: 40 MB in all, what a stalled socket would hold unbounded


def bulky(n: int, project_id: int) -> catalog.ActivityUpdate:
    """A line of the sockets' user's (alice's) project: their sockets follow that project's topic."""
    return catalog.ActivityUpdate(project_id=project_id, activity={
        "id": None, "title": f"bulk {n}", "description": PADDING, "user": "tests", "action_type": "test",
        "status": "info", "severity_level": "info", "duration": None, "metadata": {"n": n, "sent": time.time()},
    })


def test_a_stalled_socket_costs_bounded_memory_delays_no_one_and_replays_when_it_reads_again(stack, token, follow, settings, project):
    settings.EVENT_LOG_SIZE = 2 * EVENTS  # this process publishes: keep all of them for the replay
    settings.EVENT_LOG_MAX_BYTES = 2**40  # bounded by count only here
    server = stack.server(WS_MAX_BACKLOG=1000)
    headers = {"Authorization": f"Token {token}"}
    healthy = follow(server.ws_url)
    # A client that stops reading: websockets stops reading the TCP socket once one frame waits.
    with connect(server.ws_url, additional_headers=headers, max_queue=1, max_size=2**22) as stalled:
        warm = [publish(bulky(-n, project.id)) for n in range(1, 201)]
        healthy.wait_for(lambda e: e["id"] == warm[-1], timeout=60, message="the warm-up events")
        rss = psutil.Process(server.proc.pid).memory_info().rss

        ids = [publish(bulky(n, project.id)) for n in range(EVENTS)]
        # Delays no one: the healthy socket gets every event while the stalled one still reads nothing.
        healthy.wait_for(lambda e: e["id"] == ids[-1], timeout=180, message="every event on the healthy socket")
        grown_mb = (psutil.Process(server.proc.pid).memory_info().rss - rss) / 2**20

        got = [e["id"] for e in healthy.events if e["id"] >= ids[0]]
        assert got == ids  # the healthy socket: every event, in order, once
        lag = sorted(e["_rx"] - e["activity"]["metadata"]["sent"] for e in healthy.events if e["id"] >= ids[0])
        p99 = lag[int(len(lag) * 0.99)]
        print(f"server grew {grown_mb:.1f} MB; healthy socket p99 lag {p99 * 1000:.0f} ms")
        assert grown_mb < 16, f"the server grew {grown_mb:.1f} MB for a socket that reads nothing"

        # It reads again: what was in flight, then the close; reconnecting replays the rest.
        received, code = [], None
        try:
            while True:
                event = json.loads(stalled.recv(timeout=60))
                if event.get("id") is not None:
                    received.append(event["id"])
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
        assert code in (1013, None)  # the close frame, or (stalled past its deadline) a dropped connection
        assert received and received[-1] < ids[-1]
        with connect(f"{server.ws_url}?last_event_id={received[-1]}", additional_headers=headers,
                     max_size=2**22) as again:
            while received[-1] < ids[-1]:
                received.append(json.loads(again.recv(timeout=60))["id"])
        assert [i for i in received if i >= ids[0]] == ids
