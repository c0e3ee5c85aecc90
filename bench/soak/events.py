"""Events, as bench/load.py measures them: a holder process keeps sockets open (reconnecting and
resuming like the browser) and records each event's id and receipt time; at the end every socket
is checked against the Redis event log, the truth."""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from array import array
from collections import Counter
from datetime import datetime

from bench._stack import log
from bench.clients import close_all, connect, serve
from bench.soak import SCRIPT, pct

P99_TARGET_MS = 250.0


# =================================================================================================
# The holder process (--role sockets)
# =================================================================================================


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
                s.ws = await connect(s.url, token, after=max(s.last_id, s.start_id), on_text=on_text)
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
                ws = await connect(url, token)
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


async def main():
    state = SocketsState()

    async def handle(cmd: dict) -> dict | None:
        if cmd["cmd"] == "open":
            return await _open(state, cmd)
        if cmd["cmd"] == "drained":  # sockets that have not yet received event `last`
            return {"behind": sum(s.last_id < cmd["last"] for s in state.socks),
                    "received": sum(len(s.ids) for s in state.socks)}
        if cmd["cmd"] == "check":
            return _check(state, cmd)
        if cmd["cmd"] == "close":
            state.closing = True
            if getattr(state, "pinger", None):
                state.pinger.cancel()
            return await close_all([s.ws for s in state.socks], [s.task for s in state.socks])
        return None

    await serve(handle)


# =================================================================================================
# The orchestrator's side
# =================================================================================================


class EventsPart:
    """LoadBench's sockets: opened in the holder processes, checked against the log, reported."""

    def open_sockets(self):
        a, st = self.args, self.stack
        urls = [st.servers[i % 2].ws_url for i in range(a.sockets)]
        self.first_seq = self.seq()
        self.clients = [st.helper(SCRIPT, "sockets", i) for i in range(a.clients)]
        for i, c in enumerate(self.clients):
            c.send({"cmd": "open", "urls": urls[i::a.clients], "token": self.token, "redis_url": st.redis_url,
                    "seq_key": self.seq_key, "ping": a.ping_interval, "concurrency": max(1, 100 // a.clients)})
        outs = [c.recv(timeout=240) for c in self.clients]
        opened, errors = sum(o["opened"] for o in outs), sum(o["errors"] for o in outs)
        log(f"sockets: {opened}/{a.sockets} open ({opened // 2} per server) in {max(o['secs'] for o in outs):.1f} s, "
            f"{errors} errors {[e for o in outs for e in o['error_samples']][:2]}")
        if opened != a.sockets:
            raise RuntimeError(f"only {opened} of {a.sockets} sockets opened")

    def seq(self) -> int:
        return int(self.redis.get(self.seq_key) or 0)

    def check_sockets(self):
        """Read the expected events from the log, let the sockets drain, compare."""
        import numpy as np

        # Every socket's window starts after the sequence read before the first one opened.
        lo = self.first_seq
        rows = self.redis.zrangebyscore(self.log_key, f"({lo}", self.end["seq"], withscores=True)
        oldest = self.redis.zrange(self.log_key, 0, 0, withscores=True)
        self.log_complete = bool(oldest) and int(oldest[0][1]) <= lo + 1
        topics_wanted = {"dashboard", f"user.{self.user_id}", *(f"project.{pk}" for pk in self.project_ids)}
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

    def report_events(self, secs: float) -> list[tuple[bool, str]]:
        """The EVENTS section; returns its targets: (met, text)."""
        a, s0, s1 = self.args, self.start, self.end
        per = [p for c in self.checks for p in c["per_socket"]]
        delivered, expected = sum(p[0] for p in per), sum(p[1] for p in per)
        lost = expected - delivered
        worst = min(per, key=lambda p: (p[0] / p[1]) if p[1] else 1.0)
        ooo, dups = sum(c["out_of_order"] for c in self.checks), sum(c["duplicates"] for c in self.checks)
        unexpected = sum(c["unexpected"] for c in self.checks)
        drops, gaps = sum(c["drops"] for c in self.checks), sum(c["gaps"] for c in self.checks)
        lat, lat_w = self.latency["measured"], self.latency["warmup"]
        n_events = int(((self.expected_ids > s0["seq"]) & (self.expected_ids <= s1["seq"])).sum())
        log("\nEVENTS (expected = the Redis event log, topics dashboard + user.<id> + project.<id> of the user's "
            "projects, each socket's window)")
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
        return [
            (lost == 0 and expected > 0 and unexpected == 0,
             f"0 lost: {delivered:,}/{expected:,} delivered, lost {lost:,}, lowest socket {worst[0]:,}/{worst[1]:,}"),
            (pct(lat, 99) < P99_TARGET_MS, f"event latency p99 {pct(lat, 99):.1f} ms < {P99_TARGET_MS:g} ms"),
            (ooo == 0 and dups == 0, f"ids strictly increasing on every socket: {ooo} out of order, {dups} duplicates"),
        ]
