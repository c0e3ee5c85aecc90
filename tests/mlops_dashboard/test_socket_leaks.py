"""1,000 sockets opened and broken in bad ways leave nothing behind in the server: its Redis
subscriptions (PUBSUB), its open-connection count and the user's socket leases come back to where
they started, and its memory grows by at most 15 MB. A real uvicorn, real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time

import pytest
import redis
from django.conf import settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mlops_dashboard.events import bus
from monitoring import state
from tests import procs
from tests.aio import run_async
from tests.factories import ApiTokenFactory

SOCKETS = int(os.environ.get("LEAK_SOCKETS", 1000))
KINDS = [int(k) for k in os.environ["LEAK_KINDS"].split(",")] if os.environ.get("LEAK_KINDS") else None
AT_ONCE = 50
# Measured growth with DEBUG off (SQLite, loaded machine): 5.1 MB over 500 sockets, 9.2 over 1,000,
# 14.1 over 2,000, 17.9 over 3,000. (With DEBUG on it was 19-22 MB over 1,000: Django's query log.)
# A leak of 15 KiB or more per socket fails this bound.
RSS_BOUND_MB = 15

pytestmark = pytest.mark.stack


def subscriptions(client: redis.Redis) -> dict[str, int]:
    """The channel layer's Redis channels with subscribers now (per-socket channels and groups),
    but for the monitoring checks' own short-lived probe channel (health.py)."""
    probe = f"{bus.layer_prefix()}health."
    names = [n.decode() for n in client.pubsub_channels(f"{bus.layer_prefix()}*")]
    names = [n for n in names if not n.startswith(probe)]
    return dict(client.pubsub_numsub(*names)) if names else {}


def open_sockets(pid: int):
    """The server's own count of its open sockets, as its collector last reported it."""
    for proc in state.process_stats()["processes"]:
        if proc.get("pid") == pid and proc.get("role") == "asgi":
            return proc["connections"]
    return None


async def _read_until_closed(ws, timeout: float = 60):
    try:
        async with asyncio.timeout(timeout):
            async for _ in ws:
                pass
    except (ConnectionClosed, TimeoutError):
        pass


async def _misbehave(n: int, server: procs.Server, token: str) -> None:
    """One socket, broken the n-th way."""
    headers = {"Authorization": f"Token {token}"}
    kind = n % 10
    if kind == 0:  # an upgrade request cut off halfway: the handshake never completes
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Up")
        await writer.drain()
        writer.transport.abort()
        return
    if kind == 1:  # a complete upgrade request, and gone before the answer
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write((f"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      f"Sec-WebSocket-Version: 13\r\nAuthorization: Token {token}\r\n\r\n").encode())
        await writer.drain()
        writer.transport.abort()
        return
    auth = {} if kind == 9 else {"additional_headers": headers}
    try:
        ws = await connect(server.ws_url, open_timeout=60, max_size=2**22, ping_interval=None, **auth)
    except (InvalidStatus, OSError, TimeoutError):
        return
    try:
        if kind == 2:  # not JSON, then a TCP reset without a close frame
            await ws.send("{nope")
            await ws.recv()
            ws.transport.abort()
        elif kind == 3:  # nested deeper than the parser goes
            await ws.send("[" * 5000)
            await ws.recv()
            await ws.close()
        elif kind == 4:  # binary frames
            await ws.send(b"\x00\xff" * 100)
            await ws.recv()
            ws.transport.abort()
        elif kind == 5:  # a frame over the server's frame limit: it closes (1009)
            await ws.send("x" * (2**20 + 10))
            await _read_until_closed(ws)
        elif kind == 6:  # a subscribe flood: rate-limited, then closed by the server
            for t in range(300):
                await ws.send(json.dumps({"type": "subscribe", "topics": [f"training_job.{n * 1000 + t + 1}"]}))
            await _read_until_closed(ws)
        elif kind == 7:  # subscribes, then gone without a close frame
            await ws.send(json.dumps({"type": "subscribe", "topics": [f"dataset.{n + 1}", "pipeline.1"]}))
            await ws.send(json.dumps({"type": "ping", "ts": n}))
            await ws.recv()
            ws.transport.abort()
        elif kind == 8:  # a ping that cannot be echoed, then a plain close
            await ws.send('{"type": "ping", "ts": ' + "[" * 990 + "]" * 990 + "}")
            await ws.close()
        else:  # anonymous: the server closes it (4401)
            await _read_until_closed(ws)
    except (ConnectionClosed, OSError):
        pass
    finally:
        ws.transport.abort()


async def _run_all(server: procs.Server, token: str, count: int, kinds=None) -> None:
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(n):
        async with gate:
            await _misbehave(n if kinds is None else kinds[n % len(kinds)], server, token)

    await asyncio.gather(*(one(n) for n in range(count)))


@pytest.mark.timeout(900)
def test_a_thousand_broken_sockets_leave_nothing_behind(transactional_db, user, redis_client):
    import psutil

    token = ApiTokenFactory(user=user).key
    # As in production (DJANGO_DEBUG=false): with DEBUG on, Django logs every query on its connection
    # (up to 9,000), which a consumer never resets: megabytes that would be no socket's.
    server = procs.Server(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="leak-test-" + secrets.token_hex(32),
                          MONITORING_ENABLED=1, MONITORING_INTERVAL=1, MONITORING_CHECK_INTERVAL=60,
                          MONITORING_COLLECTOR_ROLE="asgi", WS_MAX_SOCKETS_PER_USER=SOCKETS + AT_ONCE).start()
    try:
        pid = server.proc.pid
        procs.wait_for(lambda: open_sockets(pid) == 0, timeout=120, message="the server's first report")
        before = subscriptions(redis_client)
        # Warm up (the first sockets import and allocate what every later one reuses), then measure.
        run_async(_run_all(server, token, 200))
        procs.wait_for(lambda: open_sockets(pid) == 0, timeout=180, message="the warm-up's sockets to close")
        rss_before = psutil.Process(pid).memory_info().rss / 2**20

        started = time.monotonic()
        run_async(_run_all(server, token, SOCKETS, KINDS))
        print(f"{SOCKETS} broken sockets in {time.monotonic() - started:.0f} s")

        procs.wait_for(lambda: open_sockets(pid) == 0, timeout=180,
                       message=f"the server's open-socket count back to 0 (now {open_sockets(pid)})")
        try:
            procs.wait_for(lambda: subscriptions(redis_client) == before, timeout=60,
                           message="the channel layer's subscriptions back to where they started")
        except AssertionError:
            now = subscriptions(redis_client)
            diff = {k: (before.get(k), now.get(k)) for k in set(before) | set(now) if before.get(k) != now.get(k)}
            print(len(diff), list(diff.items())[:3])
            print("\n".join(server.output().splitlines()[-80:]))
            raise
        from mlops_dashboard.events import sockets

        assert run_async(sockets.count(user.pk)) == 0
        grown = psutil.Process(pid).memory_info().rss / 2**20 - rss_before
        print(f"server RSS grew {grown:.1f} MB over {SOCKETS} broken sockets")
        assert grown <= RSS_BOUND_MB, f"the server's memory grew {grown:.1f} MB"
        assert server.alive()
    finally:
        server.stop()
    assert os.environ.get("REDIS_KEY_PREFIX") == settings.REDIS_KEY_PREFIX
