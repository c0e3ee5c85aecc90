"""What one user's sockets may take from a server: how many at once (across server processes), how
many messages a second, and what a socket's ping round trips weigh in the published p95. Real
uvicorn servers, real Redis."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from monitoring import state
from tests import procs
from tests.aio import run_async
from tests.factories import ApiTokenFactory

MONITORED = {"MONITORING_ENABLED": "1", "MONITORING_INTERVAL": "1", "MONITORING_CHECK_INTERVAL": "1",
             "MONITORING_COLLECTOR_ROLE": "asgi"}


@pytest.fixture
def start_server(transactional_db):
    """start_server(**env) -> a real uvicorn with these settings, stopped after the test."""
    started = []

    def _start(**env) -> procs.Server:
        server = procs.Server(**env).start()
        started.append(server)
        return server

    yield _start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def token(user) -> str:
    return ApiTokenFactory(user=user).key


@pytest.fixture
def opened():
    """opened(server, token) -> a socket authenticated by the token, closed after the test."""
    with contextlib.ExitStack() as stack:
        def _open(server: procs.Server, token: str):
            headers = {"Authorization": f"Token {token}"}
            return stack.enter_context(connect(server.ws_url, additional_headers=headers, open_timeout=30))

        yield _open


def joined(ws, **ping) -> dict:
    """Ping and read until the pong (or an error): the socket is counted and in its groups."""
    ws.send(json.dumps({"type": "ping", "ts": 1, **ping}))
    while True:
        event = json.loads(ws.recv(timeout=60))
        if event["type"] in ("pong", "error"):
            return event


def closed(ws, timeout: float = 60) -> tuple[int | None, str, list[dict]]:
    """Read until the server closes the socket: (code, reason, what arrived before)."""
    got = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the socket was not closed within {timeout} s; got {got[-5:]}")
            got.append(json.loads(ws.recv(timeout=left)))
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason, got


def counted(user_id: int) -> int:
    from mlops_dashboard.events import sockets

    return run_async(sockets.count(user_id))


def test_a_user_past_the_socket_limit_is_closed_with_4429_until_one_closes(start_server, opened, token, user):
    server = start_server(WS_MAX_SOCKETS_PER_USER=3)
    first = [opened(server, token) for _ in range(3)]
    for ws in first:
        assert joined(ws)["type"] == "pong"
    extra = opened(server, token)
    code, reason, got = closed(extra)
    assert code == 4429 and "3 sockets" in reason
    assert [e["code"] for e in got if e["type"] == "error"] == ["too_many_sockets"]
    assert counted(user.pk) == 3

    first[0].close()
    procs.wait_for(lambda: counted(user.pk) == 2, timeout=60, message="the closed socket's lease given back")
    assert joined(opened(server, token))["type"] == "pong"


def test_the_socket_limit_holds_across_servers_and_a_killed_servers_sockets_lapse(start_server, opened, token, user):
    lease = 15  # renewed every 5 s: a renewal up to 10 s late still holds
    env = {"WS_MAX_SOCKETS_PER_USER": 3, "WS_SOCKET_LEASE_SECONDS": lease}
    a, b = start_server(**env), start_server(**env)
    for server in (a, a, b):
        assert joined(opened(server, token))["type"] == "pong"
    code, _, _ = closed(opened(b, token))
    assert code == 4429

    a.kill()  # its two sockets are never closed by it: their leases lapse
    procs.wait_for(lambda: counted(user.pk) == 1, timeout=120, message="the killed server's leases to lapse")
    time.sleep(lease)  # a whole lease later B's socket still counts: B renews it
    assert counted(user.pk) == 1
    assert joined(opened(b, token))["type"] == "pong"


def test_a_message_flood_gets_an_error_then_a_1008_close(start_server, opened, token):
    server = start_server(WS_MESSAGE_RATE=5, WS_MESSAGE_BURST=10)
    ws = opened(server, token)
    assert joined(ws)["type"] == "pong"
    sent = 0
    try:
        for n in range(500):
            ws.send(json.dumps({"type": "subscribe", "topics": ["dashboard"]}))  # allowed: no answer
            sent += 1
    except ConnectionClosed:
        pass
    code, reason, got = closed(ws)
    errors = [e["code"] for e in got if e["type"] == "error"]
    assert errors == ["rate_limited"], errors
    assert code == 1008 and reason == "message rate exceeded"
    # A polite socket of the same user is untouched.
    other = opened(server, token)
    for _ in range(3):
        assert joined(other)["type"] == "pong"
        time.sleep(0.3)


def test_one_socket_cannot_move_the_published_ping_p95(start_server, opened, token):
    """20 sockets report 10 ms, one reports 100,000 ms over and over: the p95 stays 10 ms."""
    server = start_server(**MONITORED, WS_MAX_SOCKETS_PER_USER=50)
    polite = [opened(server, token) for _ in range(20)]
    loud = opened(server, token)
    for ws in polite:
        assert joined(ws, rtt=10)["type"] == "pong"
    for _ in range(40):  # within its rate limit's burst
        assert joined(loud, rtt=100_000)["type"] == "pong"
    stats = procs.wait_for(lambda: (lambda s: s if s["ws_pings"] >= 21 else None)(state.process_stats()),
                           timeout=60, message="the server's report of its sockets' round trips")
    assert stats["ws_response_time_ms"] == 10.0, stats
