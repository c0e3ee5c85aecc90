"""Load and soak: the whole stack under mixed work, with every socket checked against the event log.

    .venv/bin/python bench/load.py                  # 1,000 sockets, 10-minute soak (about 13 minutes in all)
    .venv/bin/python bench/load.py --quick          # 100 sockets, 60 s (about 4 minutes in all)
    .venv/bin/python bench/load.py --sockets 1000 --duration 120   # a shorter run at full width
    .venv/bin/python bench/load.py --quick --env DATABASE_CONN_MAX_AGE=0   # a setting for every process of the stack

What runs (all real processes on this machine, loopback only, each in its own process group,
stopped at the end or on Ctrl-C; their logs in a temporary directory, shown when the run fails):
- a fresh database: PostgreSQL `mlops_load_<pid>` when one answers on 127.0.0.1:5432 (user
  postgres, dropped at the end), else a temporary SQLite file; migrated, with one user and a DRF
  token. Redis: REDIS_URL's host, database --redis-db (13), key prefix `load-<pid>` (every key
  with it deleted at the end), EVENT_LOG_SIZE large enough that the event log keeps the whole run;
- the stack as `make run` starts it (scripts/run_stack.py): 2 uvicorn processes (DJANGO_DEBUG=false,
  host metrics left to the workers) and 2 Celery workers (prefork, --worker-concurrency 2 each),
  beat embedded in the first (-B) so the reaper, monitoring and pipeline kicks run as in production;
- setup through the REST API: titanic.csv, penguins.csv and scikit-learn's breast-cancer data
  uploaded (a worker validates and profiles them), a random forest trained on titanic and deployed
  as `load-titanic`, the demo pipeline (pipelines/demo.py: validate, clean, train, gate, deploy)
  created over the breast-cancer data;
- --sockets WebSockets (`Authorization: Token <key>`), half on each server, held by --clients
  processes (asyncio + uvloop, a minimal WebSocket client on asyncio Protocols); each pings every 15 s
  like static/js/realtime.js and, if the server closes it, reconnects with `?last_event_id=` like
  the browser does. Every socket records each event's id and receipt time;
- prediction traffic: a process sending POST /api/models/by-name/load-titanic/predict/ (one row)
  at a constant --predict-rate (open loop: a request's latency counts from the moment it was due,
  so a slow server cannot slow the offered load down), alternating between the servers;
- waves of work: each starts at once 10 training jobs (titanic and penguins; sgd, mlp, random
  forest, gradient boosting; a few seconds each), 10 dataset uploads (POST /api/datasets/,
  multipart) and 1 run of the demo pipeline; the next wave starts when every job of the last one
  is terminal (polled through the API). Failed, refused or stuck (--wave-timeout) jobs are errors.

The measurement starts after the sockets are open and a warm-up wave has finished, and lasts
--duration seconds (the wave running at the deadline is finished and counted). Then:
- expected events: the Redis event log (`<prefix>:events:log`, the truth) between a socket's
  connection (the sequence read right after its handshake) and the end of the measurement,
  addressed to `dashboard` or to the bench user's `user.<id>`. Delivered/expected per socket,
  lost = expected but never received, duplicates and out-of-order ids per socket;
- event latency: receipt time in the client minus the event's `timestamp` (set when it was
  published; one machine clock), over the measured period;
- API latency: predictions, and separately every other call (uploads, job starts, polls);
- memory: RSS of each uvicorn process and of each worker (main process + pool + beat) at the
  start and the end of the measurement; CPU of the machine and of each part of the stack.
Targets (issue 7): 0 lost, event p99 < 250 ms, server memory growth < 50 MB over the soak; also
ids strictly increasing with no duplicate on every socket, and no API error, failed or stuck job.
The exit status is 0 only when every target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import itertools
import json
import os
import random
import signal
import sys
import threading
import time
from array import array
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._stack import Stack, tree_cpu  # noqa: E402
from bench.event_latency import _client_close, _raise_open_files_limit, log  # noqa: E402

P99_TARGET_MS = 250.0
MEMORY_TARGET_MB = 50.0
MODEL = "load-titanic"  # the deployed model that serves the prediction traffic
KEEP_ALIVE_REUSE = 3.0  # seconds an idle connection is reused by the prediction sender (uvicorn closes at 5)
MAX_INFLIGHT = 500  # predictions waiting for an answer; past it the sender counts a request as not sent
DATA = Path("/work/shared/data") if Path("/work/shared/data").is_dir() else ROOT.parent / "shared" / "data"
DATASETS = {"titanic": ("titanic.csv", "survived"), "penguins": ("penguins.csv", "species")}
# Epochs that make each algorithm a job of a few seconds on these small files (1-2 s alone).
EPOCHS = {"sgd": 500, "mlp": 300, "random_forest": 40, "gradient_boosting": 50}
TRAININGS_PER_WAVE = 10
UPLOADS_PER_WAVE = 10
# Terminal statuses, and the ones that count as success, of what a wave starts.
KINDS = {
    "training": ("/api/training-jobs/{}/", {"succeeded", "failed", "cancelled"}, "succeeded"),
    "upload": ("/api/datasets/{}/", {"ready", "invalid"}, "ready"),
    "pipeline": ("/api/pipeline-runs/{}/", {"succeeded", "failed", "cancelled"}, "succeeded"),
}


def tally_text(tally: dict) -> str:
    return ", ".join(f"{kind} {t['ok']} ok" + "".join(f" {t[x]} {x}" for x in ("failed", "stuck", "refused") if t[x])
                     for kind, t in tally.items())


def pct(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


# =================================================================================================
# Socket client process: holds sockets, records every event's id and receipt time
# =================================================================================================


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455: what Sec-WebSocket-Accept hashes the key with
WS_OPEN_TIMEOUT = 60.0  # seconds for the TCP connection and the handshake
WS_CLOSE_TIMEOUT = 20.0  # seconds a closing socket waits for the server's close frame and end of the connection
WS_MAX_MESSAGE = 2**20  # a larger message is refused (the servers run with --ws-max-size 1048576 too)


class WsError(Exception):
    """A broken WebSocket stream; `code` is the close code the client sends before it hangs up."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code


class HandshakeError(Exception):
    """The server did not upgrade the connection (an HTTP error, or a bad 101)."""


def _client_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A final frame from the client: masked with a random key, as RFC 6455 requires of clients."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    keys = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return head + mask + (int.from_bytes(payload, "big") ^ keys).to_bytes(n, "big")


class WsClient(asyncio.Protocol):
    """One client WebSocket (RFC 6455) on an asyncio Protocol: the handshake, the server's frames
    parsed straight from each read, pings answered, close handshakes both ways. Each message goes
    to `on_text(text, t)`, `t` being the `time.time()` of the read that completed it.

    The websockets library cost a task wake-up, a queue and its frame reader's generators per
    message: about a fifth of a core per process at 6,500 messages/s, on a 2-core machine whose
    servers are being measured. The load generator stands for browsers on other machines, so it
    should take as little of this one as it can; here a message costs a few microseconds.

    Gives what bench.event_latency._client_close uses: `await close()` and `close_code` (as in
    websockets: the code of the server's close frame, 1005 if it had none, 1006 if the connection
    ended without one). No extension is offered, so frames are never compressed.
    """

    def __init__(self, request: bytes, key: bytes, on_text=None):
        self.request = request
        self.accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        self.on_text = on_text
        self.pending: list = []  # messages received before `listen`: (text, time)
        self.opened = asyncio.get_running_loop().create_future()  # the handshake's outcome
        self.lost = asyncio.Event()  # the TCP connection is gone
        self.transport = None
        self.buf = bytearray()  # a frame (or the handshake response) not yet complete
        self.need = 0  # how long `buf` must be before it is worth parsing again
        self.handshaking, self.open, self.reading = True, False, True
        self.close_sent = False
        self.received_close: tuple[int, str] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.error: Exception | None = None  # what broke the stream on our side
        self.fragments: list[bytes] = []  # the frames so far of a fragmented message
        self.fragment_size = 0
        self.abort_timer = None

    # --- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        now = time.time()
        if not self.reading:  # after a close frame or a broken stream: ignored
            return
        buf = self.buf
        if buf:  # the rest of a frame: parse only once it is all here
            buf += data
            if len(buf) < self.need:
                return
            data = buf
        try:
            if self.handshaking:
                data = self._handshake(data)
                if data is None:
                    return
            pos = self._frames(data, now)
        except Exception as exc:  # noqa: BLE001 - the connection fails; the holder reports it
            self._fail(exc)
            return
        if pos < len(data):
            self.buf = bytearray(data[pos:])
        elif buf:
            self.buf = bytearray()

    def eof_received(self):
        self.open = False
        return False  # the transport closes itself

    def connection_lost(self, exc):
        self.open = self.reading = False
        if self.abort_timer is not None:
            self.abort_timer.cancel()
        self.close_code, self.close_reason = self.received_close or (1006, "")
        if not self.opened.done():
            self.opened.set_exception(self.error or ConnectionError("connection closed during the handshake"))
        self.lost.set()

    # --- the stream ------------------------------------------------------------------------------

    def _handshake(self, data):
        """The server's 101 response: checked; returns the bytes after it (frames), None until it
        is complete."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > 65536:
                raise HandshakeError("handshake response too long")
            self.buf, self.need = bytearray(data), len(data) + 1
            return None
        lines = bytes(data[:end]).decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(status) < 2 or status[1] != "101":
            raise HandshakeError(f"server rejected WebSocket connection: {lines[0]}")
        if (headers.get("upgrade", "").lower() != "websocket"
                or "upgrade" not in headers.get("connection", "").lower()
                or headers.get("sec-websocket-accept") != self.accept):
            raise HandshakeError(f"bad 101 response: {headers}")
        if headers.get("sec-websocket-extensions") or headers.get("sec-websocket-protocol"):
            raise HandshakeError(f"server chose what the client did not offer: {headers}")
        self.handshaking, self.open = False, True
        if not self.opened.done():  # else given up on (timed out)
            self.opened.set_result(None)
        return data[end + 4:]

    def _frames(self, data, now) -> int:
        """Handle every complete frame in `data`; returns where the incomplete rest starts."""
        pos, n = 0, len(data)
        while pos + 2 <= n and self.reading:
            b0, b1 = data[pos], data[pos + 1]
            size, start = b1 & 0x7F, pos + 2
            if size >= 126:  # 16- or 64-bit length
                start += 2 if size == 126 else 8
                if start > n:
                    self.need = start - pos
                    return pos
                size = int.from_bytes(data[pos + 2:start], "big")
            if b1 & 0x80 or b0 & 0x70:
                raise WsError(1002, "masked frame or reserved bits from the server")
            if size > WS_MAX_MESSAGE:
                raise WsError(1009, f"frame of {size} bytes, over the {WS_MAX_MESSAGE}-byte limit")
            end = start + size
            if end > n:
                self.need = end - pos
                return pos
            if b0 == 0x81 and not self.fragments:  # a whole text message: the usual case
                text = str(data[start:end], "utf-8")
                if self.on_text is None:
                    self.pending.append((text, now))
                else:
                    self.on_text(text, now)
            else:
                self._frame(b0, bytes(data[start:end]), now)
            pos = end
        self.need = 2
        return pos

    def _frame(self, b0: int, payload: bytes, now: float):
        opcode, fin = b0 & 0x0F, b0 & 0x80
        if opcode >= 0x8:  # control frames: whole, short, allowed between a message's fragments
            if not fin or len(payload) > 125:
                raise WsError(1002, "fragmented or long control frame")
            if opcode == 0x8:
                self._close_received(payload)
            elif opcode == 0x9 and not self.close_sent:  # uvicorn pings every 20 s, closes if unanswered
                self._send(_client_frame(0xA, payload))
            elif opcode not in (0x9, 0xA):
                raise WsError(1002, f"unknown opcode {opcode:#x}")
            return
        if opcode in (0x1, 0x2):  # text; binary (never sent by the server) is decoded like text
            if self.fragments:
                raise WsError(1002, "a new message inside a fragmented one")
        elif opcode != 0x0 or not self.fragments:
            raise WsError(1002, f"unexpected opcode {opcode:#x}")
        self.fragments.append(payload)
        self.fragment_size += len(payload)
        if self.fragment_size > WS_MAX_MESSAGE:
            raise WsError(1009, f"message over the {WS_MAX_MESSAGE}-byte limit")
        if fin:
            text = b"".join(self.fragments).decode("utf-8")
            self.fragments, self.fragment_size = [], 0
            if self.on_text is None:
                self.pending.append((text, now))
            else:
                self.on_text(text, now)

    def _close_received(self, payload: bytes):
        """The server's close frame: echo its code (unless ours went first), then wait for the
        server to end the TCP connection, as RFC 6455 has the server do."""
        if len(payload) == 1:
            raise WsError(1002, "close frame with a 1-byte payload")
        code = int.from_bytes(payload[:2], "big") if payload else 1005
        self.received_close = (code, payload[2:].decode("utf-8", "replace"))
        self.open = self.reading = False
        if not self.close_sent:
            self.close_sent = True
            self._send(_client_frame(0x8, payload[:2]))
        self._abort_later()

    def _fail(self, exc: Exception):
        """Something we cannot read (a protocol error, a message too big, bad UTF-8, an error
        handling a message): close with a code saying why and hang up; the holder notes `exc`."""
        self.error = exc
        self.open = self.reading = False
        if self.handshaking:
            if not self.opened.done():
                self.opened.set_exception(exc)
            self.transport.abort()
            return
        if not self.close_sent:
            self.close_sent = True
            code = exc.code if isinstance(exc, WsError) else 1007 if isinstance(exc, UnicodeDecodeError) else 1011
            self._send(_client_frame(0x8, code.to_bytes(2, "big")))
        self.transport.close()
        self._abort_later()

    def _send(self, frame: bytes):
        if not self.transport.is_closing():
            self.transport.write(frame)

    def _abort_later(self):
        if self.abort_timer is None and self.transport is not None:
            self.abort_timer = asyncio.get_running_loop().call_later(WS_CLOSE_TIMEOUT, self.transport.abort)

    # --- for the holder ----------------------------------------------------------------------------

    def listen(self, on_text):
        """Start handing messages to `on_text`, first those received since the handshake."""
        self.on_text = on_text
        pending, self.pending = self.pending, []
        try:
            for text, now in pending:
                on_text(text, now)
        except Exception as exc:  # noqa: BLE001 - as in data_received
            self._fail(exc)

    def send_text(self, text: str):
        """Send a text message if the socket is open (else nothing: its holder reconnects it)."""
        if self.open:
            self._send(_client_frame(0x1, text.encode()))

    async def close(self, code: int = 1000):
        """Close cleanly: a close frame, then the server's close frame and its end of the
        connection, waited for WS_CLOSE_TIMEOUT at most (then the connection is aborted)."""
        if self.transport is None or self.lost.is_set():
            return
        if self.handshaking:
            self.transport.abort()
        elif not self.close_sent:
            self.close_sent, self.open = True, False
            self._send(_client_frame(0x8, code.to_bytes(2, "big")))
        self._abort_later()
        await self.lost.wait()


class Sock:
    __slots__ = ("url", "ws", "start_id", "ids", "rx", "last_id", "drops", "gaps", "pongs", "task")

    def __init__(self, url, ws, start_id):
        self.url, self.ws, self.start_id = url, ws, start_id
        self.ids, self.rx = array("q"), array("d")
        self.last_id, self.drops, self.gaps, self.pongs = 0, 0, 0, 0
        self.task = None


class SocketsState:
    def __init__(self):
        self.socks: list[Sock] = []
        self.closing = False
        self.notes: list[str] = []  # closes by the server, reconnect failures, error events (samples)
        # What bench.event_latency._client_close works on: the open connections and their readers.
        self.sockets, self.readers = [], []

    def note(self, text: str):
        if len(self.notes) < 20:
            self.notes.append(text[:300])


def _event_id(text: str):
    """The id of an event as bus.encode writes it (`{"type":"...","id":123,...`); None for a
    connection event (pong, error), which has `"id":null`."""
    k = text.find(',"id":')
    if k >= 0:
        j = text.find(",", k + 6)
        raw = text[k + 6:j if j >= 0 else None]
        if raw == "null":
            return None
        try:
            return int(raw)
        except ValueError:
            pass
    return json.loads(text).get("id")


def _record(state: SocketsState, s: Sock, text: str, now: float):
    """One message of a socket: a pong, a connection event, or an event's id and receipt time."""
    if text.startswith('{"type":"pong"'):
        s.pongs += 1
        return
    event_id = _event_id(text)
    if event_id is None:
        data = json.loads(text)
        if data.get("code") == "replay_gap":
            s.gaps += 1
        state.note(f"connection event: {text}")
        return
    s.ids.append(event_id)
    s.rx.append(now)
    if event_id > s.last_id:
        s.last_id = event_id


async def _connect(url: str, token: str, after: int | None = None, on_text=None) -> WsClient:
    """Open a socket (`Authorization: Token`, resuming after `after` if given), handshake done."""
    from urllib.parse import urlsplit

    parts = urlsplit(url if after is None else f"{url}?last_event_id={after}")
    key = base64.b64encode(os.urandom(16))
    # No Sec-WebSocket-Extensions: per-message deflate is not offered (the servers decline it anyway).
    request = (f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
               f"Host: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Token {token}\r\n\r\n").encode()
    ws = WsClient(request, key, on_text)
    loop = asyncio.get_running_loop()

    async def handshake():
        await loop.create_connection(lambda: ws, parts.hostname, parts.port or 80)
        await ws.opened

    try:
        await asyncio.wait_for(handshake(), WS_OPEN_TIMEOUT)
    except BaseException:
        ws.opened.cancel()  # given up on: its outcome is not waited for
        if ws.transport is not None:
            ws.transport.abort()
        raise
    return ws


async def _hold(state: SocketsState, s: Sock, token: str):
    """Wait for a socket's end (its reading happens in WsClient's callbacks) until the bench closes
    it; reconnect and resume after a close by the server."""
    on_text = functools.partial(_record, state, s)
    while True:
        ws = s.ws
        await ws.lost.wait()
        if ws.error is not None:
            state.note(f"reader: {ws.error!r}")
        if state.closing:
            return
        s.drops += 1
        state.note(f"closed by the server: code={ws.close_code} reason={ws.close_reason!r}")
        delay = 0.5  # as realtime.js: backoff with jitter, then resume after the last id
        while not state.closing:
            await asyncio.sleep(delay * (0.5 + random.random()))
            try:
                s.ws = await _connect(s.url, token, after=max(s.last_id, s.start_id), on_text=on_text)
                break
            except Exception as exc:  # noqa: BLE001
                state.note(f"reconnect: {exc!r}")
                delay = min(delay * 2, 10.0)
        if state.closing:
            return


async def _pinger(state: SocketsState, interval: float):
    """A ping per socket every `interval` seconds, spread evenly (the browser pings every 15 s)."""
    while not state.closing:
        socks = list(state.socks)
        gap = interval / max(1, len(socks))
        for s in socks:
            if state.closing:
                return
            s.ws.send_text(json.dumps({"type": "ping", "ts": round(time.time() * 1000, 3)}))  # if open
            await asyncio.sleep(gap)


async def _open(state: SocketsState, cmd: dict) -> dict:
    import redis.asyncio as aredis

    token, urls = cmd["token"], cmd["urls"]
    sem = asyncio.Semaphore(cmd.get("concurrency", 50))
    errors: list[str] = []
    client = aredis.Redis.from_url(cmd["redis_url"])

    async def one(url):
        async with sem:
            try:
                ws = await _connect(url, token)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"open: {exc!r}"[:200])
                return
            # Every event with a larger id was published after this socket had joined its topics.
            start = int(await client.get(cmd["seq_key"]) or 0)
            s = Sock(url, ws, start)
            ws.listen(functools.partial(_record, state, s))  # with what arrived meanwhile
            state.socks.append(s)
            s.task = asyncio.create_task(_hold(state, s, token))

    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(one(u) for u in urls)), timeout=cmd.get("timeout", 180))
    await client.aclose()
    if cmd.get("ping") and not getattr(state, "pinger", None):
        state.pinger = asyncio.create_task(_pinger(state, cmd["ping"]))
    return {"opened": len(state.socks), "errors": len(errors), "error_samples": errors[:3],
            "secs": time.monotonic() - t0}


def _check(state: SocketsState, cmd: dict) -> dict:
    """Compare every socket with the expected events (ids and timestamps from the log)."""
    import numpy as np
    import psutil

    expected = np.load(cmd["expected"])
    ids_all, ts_all = expected["ids"], expected["ts"]
    end, measure_start = cmd["end"], cmd["measure_start"]
    per_socket, lat_m, lat_w, lost_samples = [], [], [], []
    out_of_order = duplicates = unexpected = 0
    for s in state.socks:
        ids = np.frombuffer(s.ids, dtype=np.int64) if len(s.ids) else np.zeros(0, np.int64)
        rx = np.frombuffer(s.rx, dtype=np.float64) if len(s.rx) else np.zeros(0)
        if ids.size > 1:
            out_of_order += int((np.diff(ids) < 0).sum())
            duplicates += int(ids.size - np.unique(ids).size)
        lo, hi = np.searchsorted(ids_all, s.start_id, "right"), np.searchsorted(ids_all, end, "right")
        want = ids_all[lo:hi]
        window = (ids > s.start_id) & (ids <= end)
        got, first = np.unique(ids[window], return_index=True)
        got_rx = rx[window][first]
        hit = np.isin(got, want)
        delivered = int(hit.sum())
        unexpected += int(got.size - delivered)
        if delivered < want.size and len(lost_samples) < 5:
            lost_samples.append([int(x) for x in np.setdiff1d(want, got)[:5]])
        got, got_rx = got[hit], got_rx[hit]
        lat = (got_rx - ts_all[np.searchsorted(ids_all, got)]) * 1000.0
        measured = got > measure_start
        lat_m.append(lat[measured])
        lat_w.append(lat[~measured])
        per_socket.append([delivered, int(want.size)])
    cat = (lambda parts: np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32))
    np.save(cmd["out"] + "-measured.npy", cat(lat_m))
    np.save(cmd["out"] + "-warmup.npy", cat(lat_w))
    return {
        "per_socket": per_socket, "out_of_order": out_of_order, "duplicates": duplicates, "unexpected": unexpected,
        "lost_samples": lost_samples, "drops": sum(s.drops for s in state.socks),
        "gaps": sum(s.gaps for s in state.socks), "pongs": sum(s.pongs for s in state.socks),
        "notes": state.notes[:5], "rss_mb": psutil.Process().memory_info().rss / 2**20,
    }


async def sockets_main():
    state = SocketsState()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "open":
                reply(await _open(state, cmd))
            elif cmd["cmd"] == "drained":  # sockets that have not yet received event `last`
                reply({"behind": sum(s.last_id < cmd["last"] for s in state.socks),
                       "received": sum(len(s.ids) for s in state.socks)})
            elif cmd["cmd"] == "check":
                reply(_check(state, cmd))
            elif cmd["cmd"] == "close":
                state.closing = True
                if getattr(state, "pinger", None):
                    state.pinger.cancel()
                state.sockets = [s.ws for s in state.socks]
                state.readers = [s.task for s in state.socks]
                reply(await _client_close(state))
            elif cmd["cmd"] == "quit":
                reply({"ok": True})
                break
            else:
                reply({"error": f"unknown command {cmd['cmd']}"})
        except Exception as exc:  # noqa: BLE001 - the orchestrator reports it
            reply({"error": repr(exc)[:500]})


# =================================================================================================
# Prediction traffic process: constant rate, open loop
# =================================================================================================


class KeepAliveClient:
    """A minimal HTTP/1.1 client for the prediction sender: keep-alive connections to one server,
    JSON POSTs, responses read by Content-Length (or chunked). httpx cost about a quarter of a
    core at 50 requests/s, CPU this 2-core machine's servers need: the load generator stands for
    clients on other machines, so it should take as little of this one as it can."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0):
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.head = (f"Host: {parts.netloc}\r\nAuthorization: Token {token}\r\n"
                     "Content-Type: application/json\r\nAccept: application/json\r\n")
        self.idle: list = []  # (reader, writer, when it was last used), most recent last

    async def post(self, path: str, payload) -> tuple[int, bytes]:
        body = json.dumps(payload, separators=(",", ":")).encode()
        request = (f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n").encode() + body
        while self.idle:
            reader, writer, used = self.idle.pop()
            if time.monotonic() - used < KEEP_ALIVE_REUSE:
                break
            writer.close()  # the server may have closed it already (uvicorn's keep-alive is 5 s)
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(request)
            status, keep, data = await asyncio.wait_for(self._response(reader), self.timeout)
        except BaseException:
            writer.close()
            raise
        if keep:
            self.idle.append((reader, writer, time.monotonic()))
        else:
            writer.close()
        return status, data

    @staticmethod
    async def _response(reader) -> tuple[int, bool, bytes]:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed by the server")
        status = int(line.split(b" ", 2)[1])
        length, chunked, keep = 0, False, True
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection" and value == b"close":
                keep = False
        if not chunked:
            return status, keep, await reader.readexactly(length)
        data = b""
        while size := int((await reader.readline()).split(b";")[0], 16):
            data += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
        return status, keep, data

    async def aclose(self):
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


async def traffic_main():
    import numpy as np

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    sched, lat, status = array("d"), array("d"), array("i")
    failures: list[str] = []
    state = {"stop": False, "lag": 0.0, "skipped": 0}
    inflight: set = set()
    generator = clients = None

    async def one(client, path, payload, due_mono, due_wall):
        try:
            code, body = await client.post(path, payload)
            if not 200 <= code < 300 and len(failures) < 10:
                failures.append(f"{code} {body[:200].decode(errors='replace')}")
        except Exception as exc:  # noqa: BLE001
            code = 0
            if len(failures) < 10:
                failures.append(repr(exc)[:200])
        sched.append(due_wall)
        lat.append((time.monotonic() - due_mono) * 1000.0)
        status.append(code)

    async def generate(cmd):
        payloads = [{"instances": [row]} for row in json.load(open(cmd["instances"]))]
        path, rate = cmd["path"], float(cmd["rate"])
        if rate <= 0:
            return
        t0, wall0 = time.monotonic() + 0.05, time.time() + 0.05
        for i in itertools.count():
            due = t0 + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                state["lag"] = max(state["lag"], -wait)
            if state["stop"]:
                return
            if len(inflight) >= MAX_INFLIGHT:  # the servers are far behind: count it, don't pile up more
                state["skipped"] += 1
                continue
            task = asyncio.create_task(one(clients[i % len(clients)], path, payloads[i % len(payloads)], due,
                                           wall0 + (due - t0)))
            inflight.add(task)
            task.add_done_callback(inflight.discard)

    def reply(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "start":
                clients = [KeepAliveClient(u, cmd["token"]) for u in cmd["urls"]]
                generator = asyncio.create_task(generate(cmd))
                reply({"ok": True})
            elif cmd["cmd"] == "stop":
                state["stop"] = True
                if generator is not None:
                    await generator
                if inflight:
                    await asyncio.wait(list(inflight), timeout=60)
                for c in clients or ():
                    await c.aclose()
                np.savez(cmd["out"], sched=np.frombuffer(sched, np.float64), lat=np.frombuffer(lat, np.float64),
                         status=np.frombuffer(status, np.int32))
                reply({"sent": len(status), "skipped": state["skipped"], "unanswered": len(inflight),
                       "max_lag_ms": state["lag"] * 1000, "failures": failures})
            elif cmd["cmd"] == "quit":
                reply({"ok": True})
                break
        except Exception as exc:  # noqa: BLE001
            reply({"error": repr(exc)[:500]})


# =================================================================================================
# Orchestrator
# =================================================================================================


class Api:
    """The REST API as a client sees it, round-robin over the servers; every call is timed."""

    def __init__(self, bases: list[str], token: str):
        import httpx

        self.http = [httpx.Client(base_url=b, headers={"Authorization": f"Token {token}"}, timeout=60) for b in bases]
        self.turn = itertools.count()
        self.lock = threading.Lock()
        self.calls: list[tuple[float, str, float, int]] = []  # (wall time, label, ms, status)
        self.errors: list[str] = []

    def __call__(self, method: str, path: str, label: str, **kwargs):
        """The JSON body of a 2xx answer; None (and an error recorded) otherwise."""
        import httpx

        client = self.http[next(self.turn) % len(self.http)]
        began, t0 = time.time(), time.perf_counter()
        try:
            response = client.request(method, path, **kwargs)
            code, text = response.status_code, response.text
        except httpx.HTTPError as exc:
            code, text = 0, repr(exc)
        ms = (time.perf_counter() - t0) * 1000
        with self.lock:
            self.calls.append((began, label, ms, code))
            if not 200 <= code < 300:
                self.errors.append(f"{label}: {method} {path} -> {code} {text[:200]}")
        return response.json() if 200 <= code < 300 else None

    def close(self):
        for c in self.http:
            c.close()


class LoadBench:
    def __init__(self, args):
        self.args = args
        self.stack = Stack("load", redis_db=args.redis_db, keep=args.keep, EVENT_LOG_SIZE=args.event_log_size,
                           **dict(item.split("=", 1) for item in args.env))
        self.pool = ThreadPoolExecutor(max_workers=TRAININGS_PER_WAVE + UPLOADS_PER_WAVE + 1)
        self.waves: list[dict] = []
        self.job_errors: list[str] = []
        self.samples: list[dict] = []  # every few seconds: machine CPU, RSS of servers and workers
        self.stop_sampling = threading.Event()
        self.api = None
        self.clients = []
        self.traffic = None

    # --- setup -----------------------------------------------------------------------------------

    def setup(self):
        import redis

        a, st = self.args, self.stack
        log(f"setup: temp dir {st.tmp}; database {st.database}; Redis {st.redis_url}, key prefix {st.prefix}")
        st.create_database()
        self.user_id, self.token = st.create_user("load")
        st.start_servers(2)
        st.start_workers(2, a.worker_concurrency)
        log("setup: servers " + ", ".join(f"uvicorn pid {s.proc.pid} port {s.port}" for s in st.servers)
            + "; workers " + ", ".join(f"pid {w.proc.pid}" for w in st.workers)
            + f" (prefork x {a.worker_concurrency}, beat in worker1)")
        self.redis = redis.Redis.from_url(st.redis_url)
        self.seq_key, self.log_key = f"{st.prefix}:events:seq", f"{st.prefix}:events:log"
        self.api = Api([f"http://127.0.0.1:{s.port}" for s in st.servers], self.token)
        self.files = {name: (DATA / fname).read_bytes() for name, (fname, _) in DATASETS.items()}

        # The input data: the two shared CSVs and scikit-learn's breast-cancer set (the demo's).
        from sklearn.datasets import load_breast_cancer

        from pipelines import demo

        frame = load_breast_cancer(as_frame=True).frame
        frame.columns = [c.replace(" ", "_") for c in frame.columns]
        uploads = {name: (f"{name}.csv", self.files[name], target) for name, (_, target) in DATASETS.items()}
        uploads["breast_cancer"] = ("breast_cancer.csv", frame.to_csv(index=False).encode(), "target")
        self.datasets = {}
        for name, (fname, content, target) in uploads.items():
            body = self.api("POST", "/api/datasets/", "setup", files={"file": (fname, content, "text/csv")},
                            data={"name": f"load {name}", "target_column": target})
            if body is None:
                raise RuntimeError(f"upload of {fname} refused: {self.api.errors[-1:]}")
            self.datasets[name] = body["id"]
        done = self.follow([("upload", i) for i in self.datasets.values()], timeout=120, label="setup")
        bad = [f"{k} {i}: {b and b['status']}" for (k, i), b in done.items() if not b or b["status"] != "ready"]
        if bad:
            raise RuntimeError(f"setup datasets not ready: {bad}")

        # The model that serves predictions.
        job = self.api("POST", "/api/training-jobs/", "setup", json={
            "dataset": self.datasets["titanic"], "target_column": "survived", "algorithm": "random_forest",
            "epochs": 5, "name": MODEL})
        if job is None:
            raise RuntimeError(f"training refused: {self.api.errors[-1:]}")
        job = self.follow([("training", job["id"])], timeout=180, label="setup")[("training", job["id"])]
        if not job or job["status"] != "succeeded":
            raise RuntimeError(f"the model to serve did not train: {job}")
        version = self.api("POST", f"/api/models/{job['model_version']}/deploy/", "setup")["model"]
        self.instances = self._instances(version["feature_schema"])
        log(f"setup: datasets {self.datasets} ready; {version['name']} v{version['version']} "
            f"({version['algorithm']}) deployed; {len(self.instances)} rows to predict")

        pipeline = self.api("POST", "/api/pipelines/", "setup", json={
            "name": demo.NAME, "description": "The demo pipeline, run once per wave by bench/load.py.",
            "dataset": self.datasets["breast_cancer"], "steps": demo.STEPS})
        if pipeline is None:
            raise RuntimeError(f"pipeline refused: {self.api.errors[-1:]}")
        self.pipeline_id = pipeline["id"]
        self.api.errors.clear()  # setup is not measured
        self.job_errors.clear()

    def _instances(self, schema: list[dict]) -> list[dict]:
        import numpy as np
        import pandas as pd

        df = pd.read_csv(DATA / DATASETS["titanic"][0])
        names = [c["name"] for c in schema]
        return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
                for row in df[names].astype(object).to_dict(orient="records")]

    def follow(self, objs: list[tuple[str, int]], timeout: float, label: str = "poll") -> dict:
        """Poll each object until it is terminal: {obj: last body if terminal else None (stuck)}."""
        pending, last, done = list(objs), {}, {}
        deadline = time.monotonic() + timeout
        while pending:
            for obj in list(pending):
                path, terminal, _ = KINDS[obj[0]]
                body = self.api("GET", path.format(obj[1]), label)
                if body is not None:
                    last[obj] = body
                    if body["status"] in terminal:
                        done[obj] = body
                        pending.remove(obj)
            if pending:
                if time.monotonic() > deadline:
                    break
                time.sleep(self.args.poll_interval)
        for obj in pending:
            done[obj] = None
            status = last.get(obj, {}).get("status", "?")
            self.job_errors.append(f"{obj[0]} {obj[1]} stuck: still {status} after {timeout:.0f} s")
        return done

    # --- sockets and traffic ------------------------------------------------------------------

    def open_sockets(self):
        a, st = self.args, self.stack
        urls = [st.servers[i % 2].ws_url for i in range(a.sockets)]
        self.first_seq = self.seq()
        self.clients = [st.helper(Path(__file__).resolve(), "sockets", i) for i in range(a.clients)]
        for i, c in enumerate(self.clients):
            c.send({"cmd": "open", "urls": urls[i::a.clients], "token": self.token, "redis_url": st.redis_url,
                    "seq_key": self.seq_key, "ping": a.ping_interval, "concurrency": max(1, 100 // a.clients)})
        outs = [c.recv(timeout=240) for c in self.clients]
        opened, errors = sum(o["opened"] for o in outs), sum(o["errors"] for o in outs)
        log(f"sockets: {opened}/{a.sockets} open ({opened // 2} per server) in {max(o['secs'] for o in outs):.1f} s, "
            f"{errors} errors {[e for o in outs for e in o['error_samples']][:2]}")
        if opened != a.sockets:
            raise RuntimeError(f"only {opened} of {a.sockets} sockets opened")

    def start_traffic(self):
        self.instances_path = self.stack.tmp / "instances.json"
        self.instances_path.write_text(json.dumps(self.instances))
        self.traffic = self.stack.helper(Path(__file__).resolve(), "traffic")
        self.traffic.call({"cmd": "start", "urls": [f"http://127.0.0.1:{s.port}" for s in self.stack.servers],
                           "token": self.token, "path": f"/api/models/by-name/{MODEL}/predict/",
                           "rate": self.args.predict_rate, "instances": str(self.instances_path)})

    # --- waves ---------------------------------------------------------------------------------

    def wave(self, k: int) -> dict:
        """Start 10 trainings, 10 uploads and 1 pipeline run at once; wait until all are terminal."""
        algorithms = list(EPOCHS)

        def train(i):
            name = list(DATASETS)[i % 2]
            algorithm = algorithms[(i // 2 + k) % len(algorithms)]
            body = self.api("POST", "/api/training-jobs/", "start training", json={
                "dataset": self.datasets[name], "target_column": DATASETS[name][1], "algorithm": algorithm,
                "epochs": EPOCHS[algorithm], "name": f"load-{name}-{algorithm}"})
            return ("training", body["id"]) if body else None

        def upload(i):
            name = list(DATASETS)[i % 2]
            body = self.api("POST", "/api/datasets/", "upload", files={"file": (f"{name}.csv", self.files[name], "text/csv")},
                            data={"name": f"load wave {k} #{i} {name}", "target_column": DATASETS[name][1]})
            return ("upload", body["id"]) if body else None

        def run_pipeline():
            body = self.api("POST", f"/api/pipelines/{self.pipeline_id}/run/", "run pipeline")
            return ("pipeline", body["id"]) if body else None

        t0 = time.monotonic()
        futures = ([("training", self.pool.submit(train, i)) for i in range(TRAININGS_PER_WAVE)]
                   + [("upload", self.pool.submit(upload, i)) for i in range(UPLOADS_PER_WAVE)]
                   + [("pipeline", self.pool.submit(run_pipeline))])
        tally = {kind: Counter() for kind in KINDS}
        started = []
        for kind, future in futures:
            obj = future.result()
            if obj is None:
                tally[kind]["refused"] += 1  # the API answered non-2xx (already an API error)
            else:
                started.append(obj)
        results = self.follow(started, timeout=self.args.wave_timeout)
        for (kind, pk), body in results.items():
            if body is None:
                tally[kind]["stuck"] += 1
            elif body["status"] == KINDS[kind][2]:
                tally[kind]["ok"] += 1
            else:
                tally[kind]["failed"] += 1
                reason = body.get("error") or body.get("errors") or body.get("message") or ""
                self.job_errors.append(f"{kind} {pk} {body['status']}: {str(reason)[:200]}")
        return {"k": k, "secs": time.monotonic() - t0, "tally": tally}

    # --- sampling --------------------------------------------------------------------------------

    def _sampler(self):
        import psutil

        psutil.cpu_percent(None)
        next_log = time.monotonic() + 30
        seq0, t0 = self.seq(), time.monotonic()
        while not self.stop_sampling.wait(self.args.sample_interval):
            try:
                self.samples.append({
                    "t": time.time(), "cpu": psutil.cpu_percent(None) * psutil.cpu_count(),
                    "srv": [s.rss_mb() for s in self.stack.servers], "wrk": [w.rss_mb() for w in self.stack.workers],
                    "db": self.stack.database_connections()})
            except Exception:  # noqa: BLE001 - a process went away; the end of the run says so
                continue
            if time.monotonic() >= next_log:
                next_log += 30
                s, seq = self.samples[-1], self.seq()
                done = sum(w["tally"]["training"]["ok"] for w in self.waves)
                log(f"  {time.monotonic() - t0:5.0f} s: waves {len(self.waves)}, trainings ok {done}, "
                    f"events {seq - seq0:,} ({(seq - seq0) / (time.monotonic() - t0):.1f}/s), CPU {s['cpu']:.0f}%, "
                    f"server RSS {'/'.join(f'{x:.0f}' for x in s['srv'])} MB, "
                    f"worker RSS {'/'.join(f'{x:.0f}' for x in s['wrk'])} MB"
                    + ("" if s["db"] is None else f", database connections {s['db'][0]} ({s['db'][1]} waiting for a lock)"))

    def seq(self) -> int:
        return int(self.redis.get(self.seq_key) or 0)

    def mark(self) -> dict:
        import psutil

        st = self.stack
        cpu = {
            "servers": sum(s.cpu() for s in st.servers), "workers": sum(w.cpu() for w in st.workers),
            "clients": sum(tree_cpu(c.ps) for c in self.clients),
            "predictions": tree_cpu(self.traffic.ps),
            "orchestrator": sum(psutil.Process().cpu_times()[:2]),  # itself only: its children are counted above
        }
        return {"t": time.time(), "mono": time.monotonic(), "seq": self.seq(), "cpu": cpu,
                "machine": psutil.cpu_times(), "load": os.getloadavg(),
                "srv": [s.rss_mb() for s in st.servers], "wrk": [w.rss_mb() for w in st.workers],
                "db": st.database_connections()}

    # --- the run ---------------------------------------------------------------------------------

    def run(self) -> int:
        a = self.args
        self.setup()
        self.open_sockets()
        self.start_traffic()
        log(f"prediction traffic: {a.predict_rate:g} requests/s; warm-up wave")
        threading.Thread(target=self._sampler, daemon=True).start()
        warm = self.wave(0)
        log(f"warm-up wave done in {warm['secs']:.0f} s; measuring for {a.duration:g} s")
        self.start = self.mark()
        k = 0
        while time.monotonic() - self.start["mono"] < a.duration:
            k += 1
            w = self.wave(k)
            self.waves.append(w)
            log(f"  wave {k}: {w['secs']:.0f} s; {tally_text(w['tally'])}")
        self.end = self.mark()
        self.stop_sampling.set()
        self.traffic_result = self.traffic.call({"cmd": "stop", "out": str(self.stack.tmp / "predictions.npz")},
                                                timeout=120)
        self.check_sockets()
        closed = [c.call({"cmd": "close"}, timeout=120) for c in self.clients]
        self.closed = {k: sum(o[k] for o in closed) for k in ("closed", "errors", "unclean")}
        return self.report(warm)

    def check_sockets(self):
        """Read the expected events from the log, let the sockets drain, compare."""
        import numpy as np

        # Every socket's window starts after the sequence read before the first one opened.
        lo = self.first_seq
        rows = self.redis.zrangebyscore(self.log_key, f"({lo}", self.end["seq"], withscores=True)
        oldest = self.redis.zrange(self.log_key, 0, 0, withscores=True)
        self.log_complete = bool(oldest) and int(oldest[0][1]) <= lo + 1
        topics_wanted = {"dashboard", f"user.{self.user_id}"}
        ids, ts, types = [], [], Counter()
        for member, score in rows:
            topics, _, text = member.decode().partition("\t")
            if topics_wanted.intersection(topics.split(" ")):
                event = json.loads(text)
                ids.append(int(score))
                ts.append(datetime.fromisoformat(event["timestamp"]).timestamp())
                if int(score) > self.start["seq"]:
                    types[event["type"]] += 1
        self.expected_ids, self.event_types = np.array(ids, dtype=np.int64), types
        path = self.stack.tmp / "expected.npz"
        np.savez(path, ids=self.expected_ids, ts=np.array(ts, dtype=np.float64))
        last = int(self.expected_ids[-1]) if len(ids) else 0
        deadline = time.monotonic() + self.args.drain
        while time.monotonic() < deadline:
            if sum(c.call({"cmd": "drained", "last": last})["behind"] for c in self.clients) == 0:
                break
            time.sleep(0.2)
        self.drain_secs = self.args.drain - max(0.0, deadline - time.monotonic())
        self.checks = []
        self.latency = {"measured": [], "warmup": []}
        for i, c in enumerate(self.clients):
            out = str(self.stack.tmp / f"latency-{i}")
            self.checks.append(c.call({"cmd": "check", "expected": str(path), "end": self.end["seq"],
                                       "measure_start": self.start["seq"], "out": out}, timeout=300))
            for part in self.latency:
                self.latency[part].append(np.load(f"{out}-{part}.npy"))
        self.latency = {k: np.concatenate(v) for k, v in self.latency.items()}

    # --- report ----------------------------------------------------------------------------------

    def report(self, warm: dict) -> int:
        import numpy as np

        a, st, s0, s1 = self.args, self.stack, self.start, self.end
        secs = s1["mono"] - s0["mono"]
        bar = "=" * 100
        log(f"\n{bar}\nLOAD AND SOAK (bench/load.py)\n{bar}")
        log(f"stack: 2 uvicorn servers, 2 Celery workers x {a.worker_concurrency} (prefork; beat in worker1), "
            f"{st.database}, Redis {st.redis_url}; {os.cpu_count()} CPUs shared with whatever else runs")
        log(f"load: {a.sockets:,} sockets ({a.sockets // 2:,} per server, {a.clients} client processes, ping every "
            f"{a.ping_interval:g} s), predictions {a.predict_rate:g}/s, waves of {TRAININGS_PER_WAVE} trainings + "
            f"{UPLOADS_PER_WAVE} uploads + 1 pipeline run")
        log(f"measured: {secs:.0f} s after a warm-up wave of {warm['secs']:.0f} s (--duration {a.duration:g})")

        # Events
        per = [p for c in self.checks for p in c["per_socket"]]
        delivered, expected = sum(p[0] for p in per), sum(p[1] for p in per)
        lost = expected - delivered
        worst = min(per, key=lambda p: (p[0] / p[1]) if p[1] else 1.0)
        ooo, dups = sum(c["out_of_order"] for c in self.checks), sum(c["duplicates"] for c in self.checks)
        unexpected = sum(c["unexpected"] for c in self.checks)
        drops, gaps = sum(c["drops"] for c in self.checks), sum(c["gaps"] for c in self.checks)
        lat, lat_w = self.latency["measured"], self.latency["warmup"]
        n_events = int(((self.expected_ids > s0["seq"]) & (self.expected_ids <= s1["seq"])).sum())
        log("\nEVENTS (expected = the Redis event log, topics dashboard + user.<id>, each socket's window)")
        complete = sum(p[0] == p[1] for p in per)
        log(f"  delivered/expected     {delivered:,}/{expected:,} (all sockets); {complete:,} of {len(per):,} sockets got "
            f"every event; lowest socket {worst[0]:,}/{worst[1]:,}; "
            f"lost {lost:,}" + (f" e.g. ids {[x for c in self.checks for x in c['lost_samples']][:3]}" if lost else ""))
        log(f"  order                  out-of-order {ooo}, duplicates {dups}, unexpected (not in the log's topics) {unexpected}")
        log(f"  events                 {n_events:,} in the measured period = {n_events / secs:.1f} events/s to every socket, "
            f"{n_events * a.sockets / secs:,.0f} deliveries/s; drained in {self.drain_secs:.1f} s"
            + ("" if self.log_complete else "; WARNING: the log was trimmed (raise --event-log-size)"))
        log(f"  latency (measured)     p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, p99.9 {pct(lat, 99.9):.1f} ms, "
            f"max {lat.max() if lat.size else float('nan'):.1f} ms over {lat.size:,} deliveries")
        log(f"  latency (warm-up)      p50 {pct(lat_w, 50):.1f} ms, p99 {pct(lat_w, 99):.1f} ms over {lat_w.size:,} deliveries")
        log(f"  sockets                closed by the server {drops} (reconnected and resumed), replay gaps {gaps}, "
            f"pongs {sum(c['pongs'] for c in self.checks):,}; closed at the end: {self.closed['closed']} "
            f"({self.closed['errors']} errors, {self.closed['unclean']} unclean)")
        notes = [n for c in self.checks for n in c["notes"]]
        if notes:
            log(f"    e.g. {notes[:3]}")
        log("  event types (measured) " + ", ".join(f"{t} {n:,}" for t, n in self.event_types.most_common(8)))

        # API
        pred = np.load(st.tmp / "predictions.npz")
        in_window = (pred["sched"] >= s0["t"]) & (pred["sched"] <= s1["t"])
        p_status = pred["status"][in_window]
        p_ok = (p_status >= 200) & (p_status < 300)
        p_lat, p_bad = pred["lat"][in_window][p_ok], int((~p_ok).sum())
        tr = self.traffic_result
        log("\nAPI (client-side latency of the 2xx answers; predictions from the moment each was due)")
        log(f"  predictions            {p_status.size:,} in {secs:.0f} s = {p_status.size / secs:.1f}/s, "
            f"p50 {pct(p_lat, 50):.1f} ms, p99 {pct(p_lat, 99):.1f} ms, max {p_lat.max() if p_lat.size else float('nan'):.1f} ms, "
            f"non-2xx {p_bad}, not sent (over {MAX_INFLIGHT} in flight) {tr['skipped']}, unanswered {tr['unanswered']}, "
            f"sender behind by up to {tr['max_lag_ms']:.0f} ms")
        calls = [c for c in self.api.calls if s0["t"] <= c[0] <= s1["t"]]
        ok = [c for c in calls if 200 <= c[3] < 300]
        log(f"  other calls            {len(calls):,}, p50 {pct([c[2] for c in ok], 50):.1f} ms, "
            f"p99 {pct([c[2] for c in ok], 99):.1f} ms, non-2xx {len(calls) - len(ok)}")
        for label in sorted({c[1] for c in calls}):
            ms = [c[2] for c in ok if c[1] == label] or [float("nan")]
            n = sum(c[1] == label for c in calls)
            log(f"    {label:20} {n:>6,}  p50 {pct(ms, 50):7.1f} ms  p99 {pct(ms, 99):7.1f} ms  "
                f"max {max(ms):7.1f} ms  non-2xx {n - sum(c[1] == label for c in ok)}")

        # Jobs
        log(f"\nWORK ({len(self.waves)} measured waves, {secs / max(1, len(self.waves)):.0f} s each on average, "
            f"longest {max((w['secs'] for w in self.waves), default=0):.0f} s)")
        total = {kind: Counter() for kind in KINDS}
        for w in self.waves:
            for kind, t in w["tally"].items():
                total[kind].update(t)
        for kind, t in total.items():
            log(f"  {kind:10} {t['ok']:>5} succeeded, {t['failed']} failed, {t['stuck']} stuck, {t['refused']} refused")
        refused = sum(w["tally"][kind]["refused"] for w in [warm, *self.waves] for kind in KINDS)
        # Errors count from the end of setup (the warm-up wave included) to the end of the run.
        pred_bad = int(((pred["status"] < 200) | (pred["status"] >= 300)).sum())
        errors = pred_bad + tr["skipped"] + tr["unanswered"] + len(self.api.errors) + len(self.job_errors)
        log(f"  warm-up wave ({warm['secs']:.0f} s): {tally_text(warm['tally'])}")
        log(f"  errors since setup: {errors} (non-2xx predictions {pred_bad}, other non-2xx calls {len(self.api.errors)} "
            f"incl. {refused} refused starts, failed or stuck jobs {len(self.job_errors)})")
        for e in (self.api.errors + self.job_errors + tr["failures"])[:8]:
            log(f"    {e}")

        # Memory
        log("\nMEMORY (RSS, MB: start of the measurement -> end, growth; peak of the samples every "
            f"{a.sample_interval:g} s)")
        growth = []
        for i, s in enumerate(st.servers):
            g = s1["srv"][i] - s0["srv"][i]
            growth.append(g)
            peak = max([x["srv"][i] for x in self.samples] + [s1["srv"][i]])
            log(f"  server{i + 1} (uvicorn)     {s0['srv'][i]:7.1f} -> {s1['srv'][i]:7.1f}  {g:+7.1f}  peak {peak:7.1f}")
        for i, w in enumerate(st.workers):
            g = s1["wrk"][i] - s0["wrk"][i]
            peak = max([x["wrk"][i] for x in self.samples] + [s1["wrk"][i]])
            log(f"  worker{i + 1} (main+pool{'+beat' if i == 0 else ''}) {s0['wrk'][i]:7.1f} -> {s1['wrk'][i]:7.1f}  "
                f"{g:+7.1f}  peak {peak:7.1f}")
        log("  socket clients: " + ", ".join(f"{c['rss_mb']:.0f}" for c in self.checks) + " MB")
        if s0["db"] is not None:
            peak = max([x["db"] for x in self.samples if x["db"]] + [s1["db"]])
            log(f"  database connections: {s0['db'][0]} -> {s1['db'][0]}; highest sample {peak[0]} "
                f"({peak[1]} of them waiting for a lock)")

        # CPU
        m0, m1 = s0["machine"], s1["machine"]
        idle = (m1.idle + getattr(m1, "iowait", 0)) - (m0.idle + getattr(m0, "iowait", 0))
        total_cpu = sum(m1) - sum(m0)
        busy = (1 - idle / total_cpu) * 100 * os.cpu_count() if total_cpu else float("nan")
        ours = {k: (s1["cpu"][k] - s0["cpu"][k]) / secs * 100 for k in s0["cpu"]}
        samples = [x["cpu"] for x in self.samples if s0["t"] <= x["t"] <= s1["t"]]
        log(f"\nCPU (% of one core; the machine has {os.cpu_count() * 100}%)")
        log(f"  machine                {busy:.0f}% on average, highest {self.args.sample_interval:g}-s sample "
            f"{max(samples, default=float('nan')):.0f}%; load average {s0['load'][0]:.1f} -> {s1['load'][0]:.1f}")
        log("  " + ", ".join(f"{k} {v:.0f}%" for k, v in ours.items())
            + f", everything else on the machine {max(0.0, busy - sum(ours.values())):.0f}%")

        # Server log problems
        problems = [p for s in st.servers for p in s.problems()]
        worker_problems = [line for w in st.workers for line in w.output().splitlines()
                           if "Traceback" in line or "ERROR" in line or "CRITICAL" in line]
        if problems or worker_problems:
            log(f"\nLOGS: {len(problems)} problem lines from the servers, {len(worker_problems)} from the workers")
            for line in (problems + worker_problems)[:6]:
                log(f"    {line[:200]}")
            too_many = sum("too many clients" in line for s in st.servers + st.workers for line in s.output().splitlines())
            if too_many:
                log(f"  PostgreSQL refused {too_many} connections (\"too many clients\"): see the database connections "
                    "under MEMORY" + ("" if st.env.get("DATABASE_CONN_MAX_AGE") == "0" else
                                      ". With DATABASE_CONN_MAX_AGE > 0 (the default on PostgreSQL) each request's "
                                      "thread keeps its own connection under ASGI; --env DATABASE_CONN_MAX_AGE=0 "
                                      "measures the rest"))

        # Targets
        results = [
            (lost == 0 and expected > 0 and unexpected == 0,
             f"0 lost: {delivered:,}/{expected:,} delivered, lost {lost:,}, lowest socket {worst[0]:,}/{worst[1]:,}"),
            (pct(lat, 99) < P99_TARGET_MS, f"event latency p99 {pct(lat, 99):.1f} ms < {P99_TARGET_MS:g} ms"),
            (max(growth) < MEMORY_TARGET_MB,
             f"server memory growth {', '.join(f'{g:+.1f}' for g in growth)} MB < {MEMORY_TARGET_MB:g} MB over {secs:.0f} s"),
            (ooo == 0 and dups == 0, f"ids strictly increasing on every socket: {ooo} out of order, {dups} duplicates"),
            (errors == 0, f"no API error, no failed or stuck job: {errors} errors"),
        ]
        log(f"\nTARGETS ({a.sockets:,} sockets, {secs:.0f} s measured)")
        for ok, text in results:
            log(f"  {'PASS' if ok else 'FAIL'}  {text}")
        passed = all(ok for ok, _ in results)
        log(f"\n{'PASS' if passed else 'FAIL'}: run took {time.monotonic() - self.began:.0f} s")
        return 0 if passed else 1

    def close(self):
        self.stop_sampling.set()
        if self.api is not None:
            self.api.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.stack.close()


def orchestrate(args) -> int:
    limit = _raise_open_files_limit(max(20_000, args.sockets * 3))
    if limit < args.sockets + 500:
        log(f"warning: open files limit {limit}; {args.sockets} sockets need more (ulimit -n)")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    bench = LoadBench(args)
    bench.began = time.monotonic()
    code = 2
    try:
        code = bench.run()
    except KeyboardInterrupt:
        log("\ninterrupted: stopping everything")
        code = 130
    except Exception as exc:  # noqa: BLE001 - show what the stack said, then tear it down
        import traceback

        traceback.print_exc()
        log(f"\nFAILED: {exc}")
        bench.stack.show_logs()
    finally:
        bench.close()
    return code


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 sockets, 60 s")
    parser.add_argument("--sockets", type=int, help="WebSockets, half on each server (default 1000; quick 100)")
    parser.add_argument("--duration", type=float, help="seconds measured after the warm-up wave (default 600; quick 60)")
    parser.add_argument("--predict-rate", type=float, default=50.0, help="prediction requests per second (default 50)")
    parser.add_argument("--clients", type=int, default=2, help="processes holding the sockets (default 2)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="pool processes per worker (default 2)")
    parser.add_argument("--wave-timeout", type=float,
                        help="seconds after which a wave's unfinished jobs count as stuck (default 300; quick 120)")
    parser.add_argument("--ping-interval", type=float, default=15.0, help="seconds between a socket's pings; 0: none")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between polls of a wave's jobs")
    parser.add_argument("--sample-interval", type=float, default=5.0, help="seconds between CPU/RSS samples")
    parser.add_argument("--drain", type=float, default=20.0, help="seconds the sockets get to receive the last events")
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("LOAD_REDIS_DB", "13")))
    parser.add_argument("--event-log-size", type=int, default=500_000, help="EVENT_LOG_SIZE: the whole run must fit")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for every process of the stack (repeatable), e.g. DATABASE_CONN_MAX_AGE=0")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--role", choices=["orchestrator", "sockets", "traffic"], default="orchestrator",
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role != "orchestrator":
        import uvloop

        uvloop.run(sockets_main() if args.role == "sockets" else traffic_main())
        return 0
    args.sockets = args.sockets or (100 if args.quick else 1000)
    args.duration = args.duration if args.duration is not None else (60.0 if args.quick else 600.0)
    args.wave_timeout = args.wave_timeout or (120.0 if args.quick else 300.0)
    if any("=" not in item for item in args.env):
        parser.error("--env takes NAME=VALUE")
    if args.sockets < 2 or args.sockets % 2:
        parser.error("--sockets must be an even number (half on each server)")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
