"""Live events written straight to the socket (the direct relay of events/layer.py and
EventsConsumer._relay_now) never overtake one the consumer is still handling, whatever the socket
is doing meanwhile: answering its own pings, replaying after a reconnect, or not reading."""

from __future__ import annotations

from mlops_dashboard.events import catalog, publish
from tests import procs

BACKLOG = 100  # the server's WS_MAX_BACKLOG: small, so a socket that stops reading is soon closed


def activity(n: int, project_id: int) -> catalog.ActivityUpdate:
    """A line of the follower's (alice's) project: its socket follows that project's topic."""
    return catalog.ActivityUpdate(project_id=project_id, activity={
        "id": None, "title": f"relay {n}", "description": "", "user": "tests", "action_type": "test",
        "status": "info", "severity_level": "info", "duration": None, "metadata": {"n": n},
    })


def test_a_socket_busy_with_its_own_pings_gets_every_event_once_in_order(stack, follow, settings, project):
    """Each ping holds the consumer's handler while its pong is sent; live events arriving then must
    wait their turn behind it (and behind each other). The socket also stops reading for a while, so
    the backlog limit closes it (1013), as it may close any reader slower than a burst: like the
    browser client, it reconnects with its last id and the replay (with live events still pouring in,
    where a direct relay must not cut in either) completes the sequence. Every event once, in order."""
    settings.EVENT_LOG_SIZE = 100_000  # this process publishes: keep every event for the replays
    settings.EVENT_LOG_MAX_BYTES = 2**40  # bounded by count only here
    # Its pings come far faster than any client's may: lift the message rate limit for this server.
    server = stack.server(WS_MAX_BACKLOG=BACKLOG, WS_MESSAGE_RATE=1_000_000, WS_MESSAGE_BURST=1_000_000)
    follower = follow(server.ws_url, ping_every=0.0005, rcvbuf=16 * 1024)
    procs.wait_for(lambda: follower.pongs, timeout=60, message="the first pong")

    def pour(count: int) -> list[int]:
        return [publish(activity(n, project.id)) for n in range(count)]

    ids = pour(1000)
    follower.reading.clear()  # busy with its pings, it reads nothing: the server closes it
    while "events behind" not in server.output():
        assert len(ids) < 50_000, f"the backlog limit never closed the socket that stopped reading: {follower}"
        ids += pour(BACKLOG)
    follower.reading.set()
    ids += pour(3000)  # while it reconnects and replays
    follower.wait_for(lambda e: e["id"] == ids[-1], timeout=180, message="the last event")

    def interleaved() -> int:
        """Pongs that came between two of this test's events (a pong records how many events preceded it)."""
        seen = follower.ids
        first = len(seen) - sum(1 for i in seen if i >= ids[0])
        return sum(1 for p in follower.pongs if first < p < len(seen))

    # For the test to mean anything the pings must interleave with the events; a fast publisher can
    # outrun them, so it pours on, a burst at a time, until they have (not a speed, a condition).
    for _ in range(100):
        if interleaved() > 500:
            break
        ids += pour(300)
        follower.wait_for(lambda e: e["id"] == ids[-1], timeout=180, message="the last event")
    follower.stop()

    received = [i for i in follower.ids if i >= ids[0]]
    assert received == ids, (f"{len(set(ids) - set(received))} missing, {len(received) - len(set(received))} "
                             f"duplicated, in order: {received == sorted(received)}; {follower}")
    assert 1013 in follower.close_codes or None in follower.close_codes, f"never closed: {follower}"
    assert set(follower.close_codes) <= {1013, None}, f"dropped other than by the backlog limit: {follower}"
    assert interleaved() > 500, f"the pings never interleaved with the events: {follower}"
