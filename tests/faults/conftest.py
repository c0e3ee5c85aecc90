"""Fixtures of the scale-out and fault tests: a reconnecting socket client, a Redis of the test's own
that it can restart, and the training fixtures (ready datasets, a long-training CSV)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from mlops_dashboard.events import bus
from scripts import redis_local
from tests import procs
from tests.factories import api_token_for
from tests.training.conftest import (  # noqa: F401 - fixtures, used by name
    _one_thread_per_training,
    big_csv,
    big_dataset,
    make_dataset,
    titanic,
)


class Follower:
    """A program's socket that behaves like the browser client (static/js/realtime.js): after any
    drop it reconnects (to the next URL in turn) with `last_event_id`, and it keeps every event and
    every `error` it receives, in order of receipt. With `ping_every` (seconds), each connection
    also sends pings that often from a thread of its own, as busily as the test wants; clearing
    `reading` makes it stop reading (pings go on) until it is set again. `rcvbuf` (bytes) fixes the
    TCP receive buffer, so a pause in reading soon holds up the server, whatever the kernel's tuning."""

    def __init__(self, urls: list[str], token: str, topics: list[str] = (), ping_every: float | None = None,
                 rcvbuf: int | None = None):
        self.urls = urls
        self.token = token
        self.topics = list(topics)
        self.ping_every = ping_every
        self.rcvbuf = rcvbuf
        self.events: list[dict] = []
        self.errors: list[dict] = []
        self.pongs: list[int] = []  # for each pong: how many events had arrived before it
        self.reading = threading.Event()
        self.reading.set()
        self.connections: list[str] = []  # the URL of every successful (re)connection
        self.close_codes: list[int | None] = []
        self.last_event_id = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._connected = threading.Event()

    def start(self, timeout: float = 60) -> Follower:
        self._thread.start()
        if not self._connected.wait(timeout):
            raise AssertionError(f"could not connect to {self.urls}")
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self):
        turn = 0
        while not self._stop.is_set():
            url = self.urls[turn % len(self.urls)]
            turn += 1
            full = url + (f"?last_event_id={self.last_event_id}" if self.last_event_id else "")
            options = {}
            if self.ping_every is not None:
                options["ping_interval"] = None  # its own pings stand in for the library's keepalive
            try:
                if self.rcvbuf is not None:
                    options["sock"] = self._socket(url)
                with connect(full, additional_headers={"Authorization": f"Token {self.token}"}, open_timeout=30,
                             max_size=2**22, **options) as ws:
                    if self.topics:
                        ws.send(json.dumps({"type": "subscribe", "topics": self.topics}))
                    self.connections.append(url)
                    self._connected.set()
                    turn -= 1  # stay on a server that answers
                    if self.ping_every is not None:
                        threading.Thread(target=self._ping, args=(ws,), daemon=True).start()
                    self._read(ws)
            except ConnectionClosed as exc:
                self.close_codes.append(exc.rcvd.code if exc.rcvd else None)
            except (OSError, TimeoutError) as exc:
                self.close_codes.append(type(exc).__name__)
            self._stop.wait(0.2)

    def _socket(self, url: str) -> socket.socket:
        address = urlsplit(url)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)  # before connecting: sets the window
        sock.settimeout(30)
        try:
            sock.connect((address.hostname, address.port))
        except OSError:
            sock.close()
            raise
        return sock

    def _ping(self, ws):
        """Until this connection closes (or the follower stops)."""
        while not self._stop.wait(self.ping_every):
            try:
                ws.send(json.dumps({"type": "ping", "ts": time.time()}))
            except ConnectionClosed:
                return

    def _read(self, ws):
        while not self._stop.is_set():
            if not self.reading.wait(0.5):
                continue
            try:
                event = json.loads(ws.recv(timeout=0.5))
            except TimeoutError:
                continue
            if event["type"] == "pong":
                self.pongs.append(len(self.events))
            elif event["type"] == "error":
                self.errors.append(event)
                if event.get("code") == "replay_gap" and event.get("latest_id"):
                    self.last_event_id = max(self.last_event_id, event["latest_id"])
            elif event.get("id") is not None:
                event["_rx"] = time.time()
                self.events.append(event)
                self.last_event_id = max(self.last_event_id, event["id"])

    def wait_for(self, predicate, timeout: float = 60, message: str = "an event"):
        try:
            return procs.wait_for(lambda: next((e for e in list(self.events) if predicate(e)), None),
                                  timeout=timeout, message=message)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {self}") from None

    def __str__(self):
        return (f"follower of {self.urls}: {len(self.events)} events (last id {self.last_event_id}), "
                f"{len(self.connections)} connections (last {self.connections[-3:]}), "
                f"{len(self.close_codes)} drops (last {self.close_codes[-3:]}), errors {self.errors[-3:]}")

    @property
    def ids(self) -> list[int]:
        return [e["id"] for e in self.events]


def log_latest(client: redis.Redis) -> int:
    """The newest event id in the log (0 if none): read it just after a follower connects, and
    compare what the follower gets after it."""
    value = client.get(bus.keys()[0])
    return int(value) if value is not None else 0


def logged_ids(client: redis.Redis, topics: set[str], after: int, upto: int) -> list[int]:
    """Ids of the logged events addressed to any of `topics`, in (after, upto]."""
    _, log_key, _ = bus.keys()
    ids = []
    for member, score in client.zrangebyscore(log_key, f"({after}", upto, withscores=True):
        addressed = set(member.decode().partition("\t")[0].split(" "))
        if addressed & topics:
            ids.append(int(score))
    return ids


def assert_every_logged_event_once(follower: Follower, client: redis.Redis, topics: set[str], after: int) -> None:
    """In order, no duplicate, and nothing in the log (after `after`, up to the last received) missing."""
    ids = follower.ids
    assert ids == sorted(set(ids)), "out of order or duplicated"
    expected = logged_ids(client, topics, after, ids[-1])
    missing = sorted(set(expected) - set(ids))
    assert not missing, f"{len(missing)} logged events never arrived: {missing[:10]}"
    assert [i for i in ids if i > after] == expected


@pytest.fixture
def token(transactional_db, user) -> str:
    return api_token_for(user)


@pytest.fixture
def follow(token):
    """follow(*urls, topics=..., ping_every=..., rcvbuf=...) -> a started Follower for the test's user,
    stopped after the test."""
    started = []

    def _follow(*urls: str, topics=(), ping_every: float | None = None, rcvbuf: int | None = None):
        follower = Follower(list(urls), token, list(topics), ping_every, rcvbuf).start()
        started.append(follower)
        return follower

    yield _follow
    for follower in started:
        follower.stop()


class PrivateRedis:
    """A redis-server of the test's own on a free port, which it can restart with or without its data."""

    def __init__(self):
        self.binary = redis_local.find_server()
        if self.binary is None:
            pytest.skip("no redis-server binary")
        self.port = redis_local.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mlops-test-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--maxmemory-policy", "noeviction", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        procs.wait_for(lambda: redis_local.answers(self.url), timeout=60, message="redis-server to answer")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def restart(self, *, keep_data: bool, down_for: float = 1.0):
        """Stop (SHUTDOWN SAVE: the data survives, as with persistence; or SIGKILL and forget it),
        stay down for `down_for` seconds, start again on the same port."""
        if keep_data:
            try:
                self.client().shutdown(save=True)
            except redis.ConnectionError:
                pass
        else:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        if not keep_data:
            (self.dir / "dump.rdb").unlink(missing_ok=True)
        time.sleep(down_for)
        return self.start()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.stop()


@pytest.fixture
def stack(transactional_db):
    """stack.server(**env) / stack.worker(**env): processes stopped after the test, in reverse."""

    class Stack:
        def __init__(self):
            self.procs = []

        def server(self, **env) -> procs.Server:
            return self._start(procs.Server(**env))

        def worker(self, **env) -> procs.Worker:
            return self._start(procs.Worker(**env))

        def _start(self, proc):
            proc.start()
            self.procs.append(proc)
            return proc

    s = Stack()
    yield s
    for proc in reversed(s.procs):
        proc.stop()


def api(server: procs.Server, token: str, method: str, path: str, **kwargs):
    import httpx

    return httpx.request(method, server.url + path, headers={"Authorization": f"Token {token}"}, timeout=30, **kwargs)
