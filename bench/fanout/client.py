"""The client process of bench/event_latency.py: holds sockets (the websockets library, offering
permessage-deflate as browsers do) and timestamps every event it receives; also the floor's raw
Redis subscriber."""

from __future__ import annotations

import asyncio
import json
import time
from array import array

from bench.clients import close_all, serve


class ClientState:
    def __init__(self):
        self.sockets = []  # websockets connections
        self.readers = []
        self.phase = None
        self.lat = array("d")
        self.per_socket = []  # events of the current phase per socket
        self.last_seq = []
        self.order_errors = 0
        self.first_rx = None
        self.last_rx = None
        self.closing = False
        self.unexpected_closes = 0
        self.close_reasons: list[str] = []
        self.floor_task = None
        # Other events that reached the sockets (e.g. the server's own monitoring events), by type.
        self.strays: dict[str, int] = {}

    def reset(self, phase):
        self.phase = phase
        self.lat = array("d")
        self.per_socket = [0] * len(self.sockets) + [0]  # the last slot is the floor subscriber
        self.last_seq = [-1] * (len(self.sockets) + 1)
        self.order_errors = 0
        self.first_rx = None
        self.last_rx = None

    def record(self, slot, text, now):
        try:
            meta = json.loads(text)
            if "activity" in meta:
                meta = meta["activity"]["metadata"]
            if meta.get("phase") != self.phase:
                return
            sent = meta["sent"]
        except (ValueError, KeyError, TypeError, AttributeError):
            kind = meta.get("type", "?") if isinstance(meta, dict) else "?"
            self.strays[kind] = self.strays.get(kind, 0) + 1
            return
        self.lat.append(now - sent)
        if slot < len(self.per_socket):
            self.per_socket[slot] += 1
            if meta["seq"] <= self.last_seq[slot]:
                self.order_errors += 1
            self.last_seq[slot] = meta["seq"]
        if self.first_rx is None:
            self.first_rx = now
        self.last_rx = now


async def _client_reader(state: ClientState, slot: int, ws):
    from websockets.exceptions import ConnectionClosed

    try:
        async for text in ws:
            state.record(slot, text, time.time())
    except ConnectionClosed:
        pass
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        state.close_reasons.append(f"reader: {exc!r}"[:200])
    if not state.closing:
        state.unexpected_closes += 1
        state.close_reasons.append(f"closed by server: code={ws.close_code} reason={ws.close_reason!r}"[:200])


async def _client_open(state: ClientState, cmd: dict) -> dict:
    from websockets.asyncio.client import connect

    n, url, token = cmd["n"], cmd["url"], cmd["token"]
    sem = asyncio.Semaphore(cmd.get("concurrency", 100))
    errors: list[str] = []
    opened = []

    async def one():
        async with sem:
            try:
                ws = await connect(
                    url, additional_headers={"Authorization": f"Token {token}"}, open_timeout=60,
                    close_timeout=20, max_size=2**20, ping_interval=None, max_queue=256,
                    compression="deflate",  # offered, as browsers do; the server decides
                )
            except Exception as exc:  # noqa: BLE001
                errors.append(f"open: {exc!r}"[:200])
                return
            opened.append(ws)

    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), timeout=cmd.get("timeout", 120))
    secs = time.monotonic() - t0
    base = len(state.sockets)
    state.sockets.extend(opened)
    state.reset(state.phase)
    for i, ws in enumerate(opened):
        state.readers.append(asyncio.create_task(_client_reader(state, base + i, ws)))
    ext = [str(e) for e in (opened[0].protocol.extensions if opened else [])]
    return {"opened": len(opened), "errors": len(errors), "error_samples": errors[:5], "secs": secs,
            "extensions": ext}


async def _floor_subscribe(state: ClientState, redis_url: str, channel: str, ready: asyncio.Event):
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    ready.set()
    try:
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is not None:
                state.record(len(state.per_socket) - 1, msg["data"], time.time())
    finally:
        await pubsub.aclose()
        await client.aclose()


async def _close(state: ClientState) -> dict:
    state.closing = True
    out = await close_all(state.sockets, state.readers)
    state.sockets, state.readers = [], []
    state.closing = False
    return out


async def main():
    import psutil

    state = ClientState()
    proc = psutil.Process()

    async def handle(cmd: dict) -> dict | None:
        kind = cmd["cmd"]
        if kind == "open":
            return await _client_open(state, cmd)
        if kind == "floor":
            ready = asyncio.Event()
            state.floor_task = asyncio.create_task(_floor_subscribe(state, cmd["redis_url"], cmd["channel"], ready))
            await asyncio.wait_for(ready.wait(), 10)
            return {"ok": True}
        if kind == "phase":
            state.reset(cmd["phase"])
            return {"ok": True}
        if kind == "count":
            return {"received": len(state.lat), "unexpected_closes": state.unexpected_closes}
        if kind == "report":
            with open(cmd["path"], "wb") as f:
                state.lat.tofile(f)
            socks = state.per_socket[:-1]
            return {
                "received": len(state.lat), "per_socket_min": min(socks) if socks else None,
                "per_socket_max": max(socks) if socks else None, "order_errors": state.order_errors,
                "first_rx": state.first_rx, "last_rx": state.last_rx,
                "unexpected_closes": state.unexpected_closes, "close_reasons": state.close_reasons[:5],
                "strays": state.strays, "rss_mb": proc.memory_info().rss / 2**20,
            }
        if kind == "close":
            return await _close(state)
        return None

    await serve(handle)
