"""Event latency and fan-out capacity of one ASGI process, against a live stack.

    .venv/bin/python bench/event_latency.py            # full run (about 4 minutes)
    .venv/bin/python bench/event_latency.py --quick    # smoke test: 1 and 100 sockets, 5 s points
    .venv/bin/python bench/event_latency.py --nice -10 --client-nice -5   # on a busy shared machine (root)

What runs (all real processes on this machine, loopback only):
- a temporary SQLite database (migrated) with one user and a DRF token;
- the ASGI server under test, one process: uvicorn (or daphne) serving `mlops_dashboard.asgi`;
- client processes (asyncio + uvloop + `websockets`) holding the sockets, authenticated with
  `Authorization: Token <key>`; they offer permessage-deflate as browsers do;
- a publisher process calling the real `mlops_dashboard.events.publish()` at a set rate; each
  event is an `activity_update` carrying the publisher's `time.time()`, a sequence number and the
  phase number in `activity.metadata`.
Latency is receipt time minus publish time (one machine clock). Server CPU and RSS come from psutil.

In the same run it measures
- the floor: a raw redis-py PUBLISH from the publisher process to a redis.asyncio SUBSCRIBE in a
  client process;
- the stock Channels path (`bench/stock_asgi.py`): channels_redis' default `RedisChannelLayer`, a
  plain `AsyncJsonWebsocketConsumer` relaying with `send_json`, the publisher calling
  `async_to_sync(layer.group_send)` per event as stock code in a Celery task does;
- daphne serving our app (at 100 sockets), to say which server is faster.

Redis: the host of REDIS_URL (default 127.0.0.1:6379), database `--redis-db` (14), key prefix
`bench-<pid>`; every key with that prefix is deleted at the end. The server runs as `make run`
starts it (DJANGO_DEBUG=false, monitoring on but host metrics left to the workers, as
MONITORING_COLLECTOR_ROLE=worker; any other events that reach the sockets are counted apart, as
"other events").

Sweeps (100 sockets: rising events/s) stop at the first point that misses p99 <= 100 ms or loses an
event. At 1,000 sockets a p99 is about one event's fan-out, so it moves with any stall of the
machine: read it with the "server waiting for a CPU" and "other CPU" figures of the same row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

P99_BUDGET_MS = 100.0
# uvicorn as `make run` should start it (see the report at the end of a run for why).
DEFAULT_UVICORN_FLAGS = "--loop uvloop --http httptools --ws websockets-sansio --ws-per-message-deflate false"


# =================================================================================================
# Client process: holds sockets, timestamps every event it receives
# =================================================================================================


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


async def _client_close(state: ClientState) -> dict:
    state.closing = True
    errors: list[str] = []

    async def one(ws):
        try:
            await ws.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"close: {exc!r}"[:200])

    t0 = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*(one(ws) for ws in state.sockets)), timeout=60)
    except TimeoutError:
        errors.append("close: timed out after 60 s")
    secs = time.monotonic() - t0
    # A clean close handshake ends with code 1000 from the server's side too.
    unclean = [ws.close_code for ws in state.sockets if ws.close_code not in (1000, 1001)]
    for task in state.readers:
        task.cancel()
    await asyncio.gather(*state.readers, return_exceptions=True)
    n = len(state.sockets)
    state.sockets, state.readers = [], []
    state.closing = False
    return {"closed": n, "errors": len(errors), "error_samples": errors[:5], "secs": secs,
            "unclean": len(unclean), "unclean_codes": sorted(set(map(str, unclean)))[:5]}


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


async def client_main():
    import psutil

    state = ClientState()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    proc = psutil.Process()

    def reply(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        kind = cmd["cmd"]
        try:
            if kind == "open":
                reply(await _client_open(state, cmd))
            elif kind == "floor":
                ready = asyncio.Event()
                state.floor_task = asyncio.create_task(_floor_subscribe(state, cmd["redis_url"], cmd["channel"], ready))
                await asyncio.wait_for(ready.wait(), 10)
                reply({"ok": True})
            elif kind == "phase":
                state.reset(cmd["phase"])
                reply({"ok": True})
            elif kind == "count":
                reply({"received": len(state.lat), "unexpected_closes": state.unexpected_closes})
            elif kind == "report":
                with open(cmd["path"], "wb") as f:
                    state.lat.tofile(f)
                socks = state.per_socket[:-1]
                reply({
                    "received": len(state.lat), "per_socket_min": min(socks) if socks else None,
                    "per_socket_max": max(socks) if socks else None, "order_errors": state.order_errors,
                    "first_rx": state.first_rx, "last_rx": state.last_rx,
                    "unexpected_closes": state.unexpected_closes, "close_reasons": state.close_reasons[:5], "strays": state.strays,
                    "rss_mb": proc.memory_info().rss / 2**20,
                })
            elif kind == "close":
                reply(await _client_close(state))
            elif kind == "quit":
                if state.floor_task:
                    state.floor_task.cancel()
                reply({"ok": True})
                break
            else:
                reply({"error": f"unknown command {kind}"})
        except Exception as exc:  # noqa: BLE001 - the orchestrator reports it
            reply({"error": repr(exc)[:500]})


# =================================================================================================
# Publisher process: the real bus (ours), async_to_sync(group_send) (stock), or raw PUBLISH (floor)
# =================================================================================================


def _activity(sent: float, seq: int, phase: int) -> dict:
    return {
        "id": seq, "title": "Benchmark event", "description": "Published by bench/event_latency.py.",
        "user": "bench", "action_type": "bench", "status": "info", "severity_level": "info",
        "duration": None, "metadata": {"sent": sent, "seq": seq, "phase": phase},
    }


def publisher_main():
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops_dashboard.settings")
    django.setup()
    import redis
    from asgiref.sync import async_to_sync
    from channels_redis.core import RedisChannelLayer
    from django.conf import settings

    from bench.stock_settings import CHANNEL_LAYERS as STOCK_LAYERS
    from mlops_dashboard.events import bus, catalog, publish

    stock_layer = RedisChannelLayer(**STOCK_LAYERS["default"]["CONFIG"])
    raw = redis.Redis.from_url(settings.REDIS_URL)

    def send_ours(sent, seq, phase, _channel):
        return publish(catalog.ActivityUpdate(activity=_activity(sent, seq, phase))) is not None

    def send_stock(sent, seq, phase, _channel):
        # What a stock Celery task does: a fresh event loop (and Redis connection) per call.
        event = {"type": "activity_update", "id": seq, "timestamp": bus.now_iso(),
                 "activity": _activity(sent, seq, phase)}
        async_to_sync(stock_layer.group_send)("dashboard", {"type": "event.forward", "event": event})
        return True

    def send_floor(sent, seq, phase, channel):
        raw.publish(channel, json.dumps({"sent": sent, "seq": seq, "phase": phase}))
        return True

    senders = {"ours": send_ours, "stock": send_stock, "floor": send_floor}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        send = senders[cmd["mode"]]
        rate, phase, channel = float(cmd["rate"]), cmd["phase"], cmd.get("channel")
        total = max(1, round(rate * cmd["duration"]))
        calls, errors, behind = array("d"), 0, 0.0
        start = time.monotonic() + 0.05
        for seq in range(total):
            wait = start + seq / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                behind = max(behind, -wait)
            t0 = time.perf_counter()
            try:
                ok = send(time.time(), seq, phase, channel)
            except Exception:  # noqa: BLE001
                ok = False
            calls.append(time.perf_counter() - t0)
            errors += not ok
        secs = time.monotonic() - start
        ordered = sorted(calls)
        sys.stdout.write(json.dumps({
            "published": total - errors, "errors": errors, "secs": secs, "behind_ms": behind * 1000,
            "call_p50_ms": ordered[len(ordered) // 2] * 1000, "call_p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        }) + "\n")
        sys.stdout.flush()


# =================================================================================================
# Orchestrator
# =================================================================================================


def _merge_counts(dicts) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def log(msg: str):
    print(msg, flush=True)


class Child:
    """A helper process driven by JSON lines on stdin/stdout."""

    def __init__(self, role: str, env: dict, errlog: Path, nice: int = 0):
        self.errlog = open(errlog, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--role", role], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errlog, text=True, bufsize=1,
            start_new_session=True, preexec_fn=_niceness(nice),
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        import psutil

        self.ps = psutil.Process(self.proc.pid)

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, obj):
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def recv(self, timeout: float = 120) -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"helper process {self.proc.pid} did not answer in {timeout} s") from None
        if line is None:
            raise RuntimeError(f"helper process {self.proc.pid} exited (see {self.errlog.name})")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"helper process {self.proc.pid}: {out['error']}")
        return out

    def call(self, obj, timeout: float = 120) -> dict:
        self.send(obj)
        return self.recv(timeout)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "quit"})
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                _kill_group(self.proc)
        self.errlog.close()


def _niceness(nice: int):
    """Run a child at this scheduling priority (all its threads inherit it).

    With autogroup scheduling (Linux' default on desktops and many VMs) CPU time is shared between
    sessions first, and each child here starts its own session, so the session's autogroup gets the
    niceness too; otherwise it would change nothing against other users' processes.
    """
    if not nice:
        return None

    def apply():
        os.nice(nice)
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(nice))
        except OSError:
            pass

    return apply


def _kill_group(proc: subprocess.Popen, sig=signal.SIGKILL):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The ASGI server under test: one process."""

    def __init__(self, kind: str, app: str, env: dict, logdir: Path, uvicorn_flags: str, nice: int = 0):
        self.kind, self.app, self.nice = kind, app, nice
        self.port = free_port()
        self.env = env
        self.log_path = logdir / f"server-{kind}-{app.split(':')[0].replace('.', '_')}-{self.port}.log"
        if kind == "daphne":
            self.cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), app]
        else:
            self.cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(self.port),
                        "--lifespan", "off", "--no-access-log", "--ws-max-size", "1048576", *uvicorn_flags.split()]
        self.flags = " ".join(self.cmd[3:]) if kind == "daphne" else uvicorn_flags

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}/ws/"

    def start(self, timeout=60):
        import httpx
        import psutil

        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_niceness(self.nice))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited:\n{self.output()[-3000:]}")
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/login/", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"{self.kind} did not start in {timeout} s:\n{self.output()[-3000:]}")
        self.ps = psutil.Process(self.proc.pid)
        return self

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def runqueue_wait(self) -> float:
        """Seconds the server's threads spent runnable but waiting for a CPU (Linux schedstat)."""
        total = 0.0
        try:
            for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
                with open(f"/proc/{self.proc.pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[1]) / 1e9
        except OSError:
            pass
        return total

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tracebacks(self) -> int:
        return self.output().count("Traceback (most recent call last)")

    def problems(self) -> list[str]:
        pat = re.compile(r"Traceback|Too many connections|ERROR|CRITICAL|Exception|Task was destroyed")
        return [line for line in self.output().splitlines() if pat.search(line)]

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)
            except ProcessLookupError:
                pass
        self.log.close()


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="event-bench-"))
        self.prefix = f"bench-{os.getpid()}"
        parts = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        self.redis_url = urlunsplit((parts.scheme, parts.netloc, f"/{args.redis_db}", "", ""))
        self.env = dict(os.environ)
        for name in ("DJANGO_ALLOW_ASYNC_UNSAFE", "CELERY_BROKER_URL"):
            self.env.pop(name, None)
        self.env.update({
            "DJANGO_SETTINGS_MODULE": "mlops_dashboard.settings",
            "DATABASE_URL": f"sqlite:///{self.tmp / 'bench.sqlite3'}",
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.prefix,
            "DJANGO_DEBUG": "false",
            "MONITORING_COLLECTOR_ROLE": "worker",  # as `make run` starts its servers
            "DJANGO_SECRET_KEY": "bench-" + secrets.token_hex(32),
            "MEDIA_ROOT": str(self.tmp / "media"),
            "PYTHONUNBUFFERED": "1",
        })
        self.phase = 0
        self.rows: list[dict] = []
        self.checks: list[dict] = []
        self.closes: list[dict] = []
        self.children: list[Child] = []
        self.servers: list[Server] = []

    # --- setup -----------------------------------------------------------------------------------

    def setup(self):
        import psutil

        log(f"setup: temp dir {self.tmp}, Redis {self.redis_url}, key prefix {self.prefix}")
        subprocess.check_call([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=self.env)
        code = (
            "import django; django.setup()\n"
            "from django.contrib.auth import get_user_model\n"
            "from rest_framework.authtoken.models import Token\n"
            "u, _ = get_user_model().objects.get_or_create(username='bench')\n"
            "print(Token.objects.get_or_create(user=u)[0].key)\n"
        )
        self.token = subprocess.check_output([sys.executable, "-c", code], cwd=ROOT, env=self.env, text=True).split()[-1]
        nice = self.args.client_nice if self.args.client_nice is not None else self.args.nice
        self.publisher = Child("publisher", self.env, self.tmp / "publisher.err", nice)
        n_clients = self.args.clients
        self.clients = [Child("client", self.env, self.tmp / f"client{i}.err", nice) for i in range(n_clients)]
        self.children = [self.publisher, *self.clients]
        psutil.cpu_percent(None)
        log(f"setup: {psutil.cpu_count()} CPUs, {n_clients} client processes, publisher pid {self.publisher.proc.pid}")

    def cleanup(self):
        for s in self.servers:
            try:
                s.stop()
            except Exception:  # noqa: BLE001
                pass
        for c in self.children:
            try:
                c.stop()
            except Exception:  # noqa: BLE001
                pass
        try:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            for key in client.scan_iter(match=f"{self.prefix}:*", count=1000):
                client.delete(key)
            client.close()
        except Exception as exc:  # noqa: BLE001
            log(f"cleanup: Redis keys not deleted: {exc}")
        if self.args.keep:
            log(f"logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- sockets -------------------------------------------------------------------------------

    def open_sockets(self, server: Server, n: int, concurrency: int = 100) -> dict:
        shares = [n // len(self.clients) + (i < n % len(self.clients)) for i in range(len(self.clients))]
        active = [(c, k) for c, k in zip(self.clients, shares) if k]
        for c, k in active:
            c.send({"cmd": "open", "n": k, "url": server.ws_url, "token": self.token,
                    "concurrency": max(1, concurrency // len(active))})
        outs = [c.recv(timeout=150) for c, _ in active]
        self.active = [c for c, _ in active]
        # Give the server a moment to finish the last handshakes' group joins before publishing.
        time.sleep(0.5)
        return {
            "opened": sum(o["opened"] for o in outs), "errors": sum(o["errors"] for o in outs),
            "error_samples": [e for o in outs for e in o["error_samples"]][:5], "secs": max(o["secs"] for o in outs),
            "extensions": outs[0]["extensions"],
        }

    def close_sockets(self) -> dict:
        for c in self.active:
            c.send({"cmd": "close"})
        outs = [c.recv(timeout=90) for c in self.active]
        return {
            "closed": sum(o["closed"] for o in outs), "errors": sum(o["errors"] for o in outs),
            "unclean": sum(o["unclean"] for o in outs),
            "error_samples": [e for o in outs for e in o["error_samples"]][:5],
            "unclean_codes": sorted({c for o in outs for c in o["unclean_codes"]}),
            "secs": max(o["secs"] for o in outs),
        }

    # --- one measured phase --------------------------------------------------------------------------

    def run_phase(self, *, label: str, mode: str, server: Server | None, n: int, rate: float, duration: float,
                  drain: float, receivers: list[Child], channel: str | None = None) -> dict:
        import numpy as np
        import psutil

        self.phase += 1
        for c in receivers:
            c.call({"cmd": "phase", "phase": self.phase})
        procs = {"clients": [c.ps for c in receivers], "publisher": [self.publisher.ps]}
        cpu0 = {k: [self._cpu(p) for p in ps] for k, ps in procs.items()}
        srv_cpu0 = server.cpu() if server else 0.0
        srv_wait0 = server.runqueue_wait() if server else 0.0
        tracebacks0 = server.tracebacks() if server else 0
        rss_peak = [server.rss_mb() if server else 0.0]
        stop_sampling = threading.Event()

        def sample_rss():
            while not stop_sampling.wait(0.5):
                try:
                    rss_peak[0] = max(rss_peak[0], server.rss_mb())
                except Exception:  # noqa: BLE001
                    return

        if server:
            threading.Thread(target=sample_rss, daemon=True).start()
        spy = None
        if server and self.args.pyspy:
            # Development aid: sample the server's stacks during the publishing window.
            out = Path(self.args.pyspy) / f"{label.replace('/', '_')}-{n}x{rate:g}.txt"
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(server.proc.pid),
                                    "-d", str(int(duration)), "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        psutil.cpu_percent(None)
        t0, wall0 = time.time(), time.monotonic()
        pub = self.publisher.call({"cmd": "run", "mode": mode, "phase": self.phase, "rate": rate,
                                   "duration": duration, "channel": channel}, timeout=duration * 3 + 60)
        wall = time.monotonic() - wall0
        machine_cpu = psutil.cpu_percent(None) * psutil.cpu_count()
        srv_cpu = (server.cpu() - srv_cpu0) / wall * 100 if server else 0.0
        srv_wait = (server.runqueue_wait() - srv_wait0) / wall * 100 if server else 0.0
        cpu = {k: [(self._cpu(p) - c0) / wall * 100 for p, c0 in zip(ps, cpu0[k])] for k, ps in procs.items()}
        rss_end = server.rss_mb() if server else 0.0
        stop_sampling.set()
        if spy is not None:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()

        expected = pub["published"] * n
        deadline = time.monotonic() + drain
        while True:
            got = sum(c.call({"cmd": "count"})["received"] for c in receivers)
            if got >= expected or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        drained_in = drain - max(0.0, deadline - time.monotonic())
        srv_errors = server.tracebacks() - tracebacks0 if server else 0
        lat, reps = [], []
        for i, c in enumerate(receivers):
            path = self.tmp / f"lat-{self.phase}-{i}.bin"
            reps.append(c.call({"cmd": "report", "path": str(path)}))
            lat.append(np.fromfile(path, dtype=np.float64))
        lat = np.concatenate(lat) * 1000 if lat else np.array([])
        delivered = int(lat.size)
        last_rx = max((r["last_rx"] for r in reps if r["last_rx"]), default=None)
        span = (last_rx - t0) if last_rx else wall
        ours_cpu = srv_cpu + sum(cpu["clients"]) + sum(cpu["publisher"])
        row = {
            "label": label, "mode": mode, "server": f"{server.kind} {server.flags}" if server else "redis",
            "sockets": n, "rate": rate, "published": pub["published"], "pub_errors": pub["errors"],
            "expected": expected, "delivered": delivered,
            "offered_dps": pub["published"] * n / pub["secs"], "dps": delivered / span if span > 0 else 0.0,
            "p50": float(np.percentile(lat, 50)) if delivered else float("nan"),
            "p99": float(np.percentile(lat, 99)) if delivered else float("nan"),
            "max": float(lat.max()) if delivered else float("nan"),
            "srv_cpu": srv_cpu, "srv_rss": rss_end,
            "srv_wait": srv_wait, "srv_errors": srv_errors,
            "srv_us_per_delivery": (srv_cpu / 100 * wall) / delivered * 1e6 if delivered else float("nan"), "srv_rss_peak": rss_peak[0],
            "client_cpu": cpu["clients"], "pub_cpu": cpu["publisher"][0],
            "other_cpu": max(0.0, machine_cpu - ours_cpu),
            "pub_call_p50": pub["call_p50_ms"], "pub_call_p99": pub["call_p99_ms"], "pub_behind": pub["behind_ms"],
            "order_errors": sum(r["order_errors"] for r in reps),
            "per_socket_min": min((r["per_socket_min"] for r in reps if r["per_socket_min"] is not None), default=None),
            "unexpected_closes": sum(r["unexpected_closes"] for r in reps),
            "close_reasons": [x for r in reps for x in r["close_reasons"]][:3],
            "strays": _merge_counts(r["strays"] for r in reps),
            "drained_in": drained_in, "duration": duration,
        }
        row["ok"] = delivered == expected and expected > 0 and row["p99"] <= P99_BUDGET_MS and not srv_errors
        self.rows.append(row)
        log("  " + self.format_row(row))
        return row

    @staticmethod
    def _cpu(p) -> float:
        t = p.cpu_times()
        return t.user + t.system

    # --- scenarios -----------------------------------------------------------------------------------

    def floor(self, rate: float, duration: float):
        channel = f"{self.prefix}:floor"
        receiver = self.clients[0]
        receiver.call({"cmd": "floor", "redis_url": self.redis_url, "channel": channel})
        log(f"floor: raw redis-py PUBLISH -> redis.asyncio SUBSCRIBE, {rate:g} msg/s for {duration:g} s")
        return self.run_phase(label="floor", mode="floor", server=None, n=1, rate=rate, duration=duration,
                              drain=5, receivers=[receiver], channel=channel)

    def scenario(self, *, label: str, kind: str, app: str, mode: str, n: int, rates: list[float], duration: float,
                 drain: float, sweep: bool, settings_module: str = "mlops_dashboard.settings",
                 final_rate: float | None = None, close_check: bool = False, open_concurrency: int = 100):
        env = dict(self.env, DJANGO_SETTINGS_MODULE=settings_module)
        server = Server(kind, app, env, self.tmp, self.args.uvicorn_flags, self.args.nice)
        self.servers.append(server)
        server.start()
        rss_idle = server.rss_mb()
        log(f"{label}: {server.kind} pid {server.proc.pid} ({server.flags}), opening {n} sockets")
        opened = self.open_sockets(server, n, open_concurrency)
        log(f"  opened {opened['opened']}/{n} in {opened['secs']:.1f} s, errors {opened['errors']} "
            f"{opened['error_samples'][:2]}, extensions {opened['extensions'] or 'none'}, "
            f"server RSS {rss_idle:.0f} -> {server.rss_mb():.0f} MB")
        results = []
        if opened["opened"] == n:
            for rate in rates:
                row = self.run_phase(label=label, mode=mode, server=server, n=n, rate=rate, duration=duration,
                                     drain=drain, receivers=self.active)
                results.append(row)
                if sweep and not row["ok"]:
                    break
            if final_rate is not None and all(r["rate"] != final_rate for r in results):
                results.append(self.run_phase(label=label, mode=mode, server=server, n=n, rate=final_rate,
                                              duration=duration, drain=drain, receivers=self.active))
        closed = self.close_sockets()
        time.sleep(2.0 if close_check else 0.5)
        problems = server.problems()
        alive = server.proc.poll() is None
        log(f"  closed {closed['closed']} at once in {closed['secs']:.1f} s: client errors {closed['errors']}, "
            f"unclean closes {closed['unclean']} {closed['unclean_codes']}, server log problems {len(problems)}"
            + (f": {problems[:3]}" if problems else ""))
        server.stop()
        self.servers.remove(server)
        self.closes.append({"label": label, "n": n, "opened": opened, "closed": closed, "tracebacks": server.tracebacks(),
                            "too_many": sum(bool(re.match(r"\S.*Too many connections", p)) for p in problems)})
        if close_check:
            self.checks.append({
                "label": label, "n": n, "opened": opened, "closed": closed, "problems": problems, "alive": alive,
                "received_all": all(r["delivered"] == r["expected"] for r in results) and bool(results),
                "unexpected_closes": sum(r["unexpected_closes"] for r in results),
            })
        return results

    # --- output --------------------------------------------------------------------------------------

    HEADER = (f"{'':24} {'sockets':>7} {'ev/s/sock':>9} {'deliv/s':>8} {'delivered/expected':>20} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'srv CPU%':>8} {'srv RSS MB':>10} {'client CPU%':>11} {'srv errors':>10}")

    @staticmethod
    def format_row(r: dict) -> str:
        clients = "+".join(f"{c:.0f}" for c in r["client_cpu"])
        return (f"{r['label'][:24]:24} {r['sockets']:>7,} {r['rate']:>9g} {r['dps']:>8,.0f} "
                f"{r['delivered']:>9,}/{r['expected']:<10,} {r['p50']:>7.1f} {r['p99']:>7.1f} {r['max']:>7.1f} "
                f"{r['srv_cpu']:>8.0f} {r['srv_rss']:>10.0f} {clients:>11} {r['srv_errors']:>10}")

    def report(self):
        rows = self.rows
        log("\n" + "=" * 118)
        log("RESULTS  (latency = receipt in the client - time.time() in the publisher, same machine clock;")
        log("          deliv/s = delivered / (last receipt - first publish); CPU% of one core, averaged over the")
        log("          publishing window; client CPU% per client process)")
        log("=" * 118)
        groups: dict[str, list[dict]] = {}
        for r in rows:
            groups.setdefault(r["label"], []).append(r)
        log(self.HEADER)
        for label, rs in groups.items():
            for r in rs:
                log(self.format_row(r))
        log("")
        log("details: publish call p50/p99 ms, publisher behind schedule (max ms), server CPU time per delivery,")
        log("other processes' CPU% on the machine during the window, order errors, unexpected closes")
        for r in rows:
            log(f"  {r['label'][:24]:24} {r['sockets']:>5} x {r['rate']:<5g} publish {r['pub_call_p50']:.2f}/"
                f"{r['pub_call_p99']:.2f} ms, behind {r['pub_behind']:.0f} ms, server {r['srv_us_per_delivery']:.0f} us CPU/delivery, "
                f"server waiting for a CPU {max(0.0, r['srv_wait']):.0f}% of the time, "
                f"other CPU {r['other_cpu']:.0f}%, "
                f"RSS peak {r['srv_rss_peak']:.0f} MB, order errors {r['order_errors']}, "
                f"unexpected closes {r['unexpected_closes']}"
                + (f" {r['close_reasons'][:1]}" if r["close_reasons"] else "")
                + (f", srv tracebacks {r['srv_errors']}" if r["srv_errors"] else "")
                + (f", other events received {r['strays']}" if r["strays"] else "")
                + ("" if r["delivered"] == r["expected"] else f", undelivered after {r['drained_in']:.0f} s drain: "
                   f"{r['expected'] - r['delivered']:,}"))
        for r in rows:
            if any(c >= 90 for c in r["client_cpu"]):
                log(f"  WARNING: a client process was saturated in {r['label']} {r['sockets']} x {r['rate']:g} "
                    f"({r['client_cpu']}); that row's latency includes client queueing")

        floor = next((r for r in rows if r["mode"] == "floor"), None)
        ours = [r for r in rows if r["label"].startswith("ours/uvicorn")]
        stock = [r for r in rows if r["label"].startswith("stock")]
        daphne = [r for r in rows if r["label"].startswith("ours/daphne")]

        def capacity(rs, n):
            ok = [r["rate"] * r["sockets"] for r in rs if r["sockets"] == n and r["ok"]]
            return max(ok) if ok else 0.0

        log("\nRATIOS")
        if floor:
            log(f"  floor (raw Redis PUBLISH -> SUBSCRIBE): p50 {floor['p50']:.2f} ms, p99 {floor['p99']:.2f} ms, "
                f"max {floor['max']:.2f} ms")
            for r in ours + daphne + stock:
                log(f"  {r['label'][:24]:24} {r['sockets']:>5} x {r['rate']:<5g} p50 {r['p50'] / floor['p50']:6.1f}x floor,"
                    f" p99 {r['p99'] / floor['p99']:7.1f}x floor")
        for n in sorted({r["sockets"] for r in stock}):
            for s in [r for r in stock if r["sockets"] == n]:
                o = next((r for r in ours if r["sockets"] == n and r["rate"] == s["rate"]), None)
                if o:
                    log(f"  {n} sockets x {s['rate']:g}/s, ours vs stock: p99 {o['p99']:.1f} vs {s['p99']:.1f} ms "
                        f"({s['p99'] / o['p99']:.1f}x lower), delivered {o['delivered'] / o['expected']:.1%} vs "
                        f"{s['delivered'] / s['expected']:.1%}, server CPU {o['srv_cpu']:.0f}% vs {s['srv_cpu']:.0f}%")
        cap_ours, cap_stock, cap_daphne = capacity(ours, 100), capacity(stock, 100), capacity(daphne, 100)
        if cap_ours or cap_stock:
            log(f"  deliveries/s at 100 sockets with p99 <= {P99_BUDGET_MS:g} ms and 0 lost (highest rate tried):"
                f" ours/uvicorn {cap_ours:,.0f}, ours/daphne {cap_daphne:,.0f}, stock {cap_stock:,.0f}")
            if cap_stock:
                log(f"  ours / stock capacity: {cap_ours / cap_stock:.1f}x")
            elif stock:
                lowest = min((r["rate"] * r["sockets"] for r in stock if r["sockets"] == 100), default=0)
                log(f"  ours / stock capacity: more than {cap_ours / lowest:.0f}x (stock failed at every rate tried, "
                    f"the lowest {lowest:,.0f} deliveries/s)" if lowest else "  stock: no 100-socket point")
            if cap_daphne:
                log(f"  uvicorn / daphne capacity: {cap_ours / cap_daphne:.2f}x")
        for r in daphne:
            u = next((o for o in ours if o["sockets"] == r["sockets"] and o["rate"] == r["rate"]), None)
            if u:
                log(f"  {r['sockets']} sockets x {r['rate']:g}/s, uvicorn vs daphne: p99 {u['p99']:.1f} vs "
                    f"{r['p99']:.1f} ms, server CPU {u['srv_cpu']:.0f}% vs {r['srv_cpu']:.0f}%")
        if daphne:
            pairs = [(u, d) for d in daphne for u in ours if (u["sockets"], u["rate"]) == (d["sockets"], d["rate"])]
            cpu_u = sum(u["srv_us_per_delivery"] for u, _ in pairs) / len(pairs) if pairs else 0.0
            cpu_d = sum(d["srv_us_per_delivery"] for _, d in pairs) / len(pairs) if pairs else 0.0
            if pairs:
                log(f"  server CPU per delivery at the same points: uvicorn {cpu_u:.0f} us, daphne {cpu_d:.0f} us "
                    f"(one core would carry about {1e6 / cpu_u:,.0f} vs {1e6 / cpu_d:,.0f} deliveries/s)")
            faster = ("uvicorn" if cpu_u <= cpu_d else "daphne") if pairs else ("uvicorn" if cap_ours >= cap_daphne else "daphne")
            log(f"  faster server in this run: {faster} (less server CPU per delivery at the same load; highest passing "
                f"rate at 100 sockets: uvicorn {cap_ours:,.0f}, daphne {cap_daphne:,.0f} deliveries/s)")

        log("\nOPEN AND CLOSE (each scenario opens its sockets, then closes them all at once)")
        for c in self.closes:
            o, k = c["opened"], c["closed"]
            log(f"  {c['label'][:24]:24} {c['n']:>5} sockets: opened {o['opened']} in {o['secs']:.1f} s ({o['errors']} errors), "
                f"closed in {k['secs']:.1f} s ({k['errors']} client errors, {k['unclean']} unclean), server tracebacks "
                f"{c['tracebacks']} (\"Too many connections\": {c['too_many']})")

        log("\nTARGETS (one ASGI process)")
        t1 = next((r for r in ours if r["sockets"] == 1000 and r["rate"] == 5), None)
        if t1:
            ok = t1["delivered"] == t1["expected"] and t1["p99"] < P99_BUDGET_MS
            log(f"  {'PASS' if ok else 'FAIL'}  1,000 sockets x 5 events/s: lost {t1['expected'] - t1['delivered']}, "
                f"p99 {t1['p99']:.1f} ms (target: 0 lost, p99 < 100 ms)")
        else:
            log("  SKIP  1,000 sockets x 5 events/s (not run)")
        if any(r["sockets"] == 100 for r in ours):
            ok = cap_ours >= 10_000
            log(f"  {'PASS' if ok else 'FAIL'}  100 sockets: {cap_ours:,.0f} deliveries/s with p99 <= 100 ms and 0 lost "
                f"(target: >= 10,000)")
        else:
            log("  SKIP  100 sockets >= 10,000 deliveries/s (not run)")
        check = next((c for c in self.checks if c["n"] == 2000), None)
        if check:
            o, c = check["opened"], check["closed"]
            ok = (o["opened"] == 2000 and o["errors"] == 0 and c["errors"] == 0 and c["unclean"] == 0
                  and not check["problems"] and check["alive"] and check["received_all"]
                  and not check["unexpected_closes"])
            log(f"  {'PASS' if ok else 'FAIL'}  2,000 sockets opened ({o['opened']}, {o['errors']} errors, "
                f"{o['secs']:.1f} s), all received every event: {check['received_all']}, closed at once "
                f"({c['errors']} client errors, {c['unclean']} unclean, {c['secs']:.1f} s), server log problems: "
                f"{len(check['problems'])}" + (f" {check['problems'][:2]}" if check["problems"] else ""))
        else:
            log("  SKIP  2,000 sockets open/close (not run)")


def _raise_open_files_limit(want: int = 20_000):
    """2,000 sockets need 2,000 descriptors in the server and as many in the clients."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def orchestrate(args) -> int:
    limit = _raise_open_files_limit()
    if limit != -1 and limit < 4_500:
        log(f"warning: open files limit {limit}; the 2,000-socket check needs about 4,500 (ulimit -n)")
    bench = Bench(args)
    started = time.monotonic()
    groups = {"ours": {"ours1", "ours100", "ours1000"}, "stock": {"stock100", "stock1000"}}
    only = None
    if args.only:
        only = set()
        for name in args.only.split(","):
            only |= groups.get(name, {name})

    def want(name):
        return only is None or name in only

    try:
        bench.setup()
        d = args.duration or (5.0 if args.quick else 10.0)
        d1000 = args.duration or 15.0  # 75 events per point: a p99 that is not one event's fan-out
        ours = dict(kind="uvicorn", app="mlops_dashboard.asgi:application", mode="ours")
        daphne = dict(kind="daphne", app="mlops_dashboard.asgi:application", mode="ours")
        # The stock layer fails handshakes with "Too many connections" above ~100 concurrent ones
        # (its pool's default size), so its sockets open 20 at a time.
        stock = dict(kind="uvicorn", app="bench.stock_asgi:application", mode="stock",
                     settings_module="bench.stock_settings", open_concurrency=20)
        sweep100 = [float(x) for x in args.rates.split(",")] if args.rates else [50, 100, 150, 200, 300, 400]
        if want("floor"):
            bench.floor(rate=1000, duration=2 if args.quick else 5)
        if args.quick:
            if want("ours1"):
                bench.scenario(label="ours/uvicorn", n=1, rates=[20], duration=d, drain=5, sweep=False, **ours)
            if want("ours100"):
                bench.scenario(label="ours/uvicorn", n=100, rates=[100], duration=d, drain=5, sweep=False, **ours)
            if want("stock100"):
                bench.scenario(label="stock/uvicorn", n=100, rates=[10], duration=d, drain=10, sweep=False, **stock)
        else:
            if want("ours1"):
                bench.scenario(label="ours/uvicorn", n=1, rates=[20], duration=d, drain=5, sweep=False, **ours)
            if want("ours100"):
                bench.scenario(label="ours/uvicorn", n=100, rates=sweep100, duration=d, drain=8, sweep=True, **ours)
            if want("ours1000"):
                bench.scenario(label="ours/uvicorn", n=1000, rates=[5, 10], duration=d1000, drain=8, sweep=True,
                               **ours)
            if want("close"):
                bench.scenario(label="ours/uvicorn", n=2000, rates=[2], duration=d, drain=8, sweep=False,
                               close_check=True, **ours)
            if want("daphne"):
                bench.scenario(label="ours/daphne", n=100, rates=[100, 200, 300], duration=d, drain=8, sweep=True,
                               **daphne)
            if want("stock100"):
                bench.scenario(label="stock/uvicorn", n=100, rates=[2, 5, 10, 20, 30], duration=d, drain=10, sweep=True,
                               final_rate=100, **stock)
            if want("stock1000"):
                bench.scenario(label="stock/uvicorn", n=1000, rates=[5], duration=d, drain=10, sweep=False, **stock)
        bench.report()
        log(f"\nbench took {time.monotonic() - started:.0f} s; uvicorn flags: {args.uvicorn_flags}; "
            f"DJANGO_DEBUG=false; Redis {bench.redis_url}; niceness {args.nice}; load average "
            + " ".join(f"{x:.1f}" for x in os.getloadavg()))
        return 0
    finally:
        bench.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 100 sockets (and stock at 100), 5 s points")
    parser.add_argument("--duration", type=float, help="seconds of publishing per point (default 10, quick 5)")
    parser.add_argument("--clients", type=int, default=2, help="client processes holding the sockets (default 2)")
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("BENCH_REDIS_DB", "14")))
    parser.add_argument("--uvicorn-flags", default=os.environ.get("BENCH_UVICORN_FLAGS", DEFAULT_UVICORN_FLAGS))
    parser.add_argument("--only", help="comma-separated subset of: floor, ours (= ours1, ours100, ours1000), close, "
                                       "daphne, stock (= stock100, stock1000)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server logs)")
    parser.add_argument("--nice", type=int, default=int(os.environ.get("BENCH_NICE", "0")),
                        help="run server, clients and publisher at this niceness (e.g. -10 as root, on a shared machine)")
    parser.add_argument("--client-nice", type=int, default=None,
                        help="niceness of the client and publisher processes (default: --nice)")
    parser.add_argument("--pyspy", metavar="DIR", help="record py-spy profiles of the server into DIR (slows it)")
    parser.add_argument("--rates", help="events/s of the 100-socket sweep (default 50,100,150,200,300,400)")
    parser.add_argument("--role", choices=["orchestrator", "client", "publisher"], default="orchestrator",
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "client":
        import uvloop

        uvloop.run(client_main())
        return 0
    if args.role == "publisher":
        publisher_main()
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
