"""Shared fixtures: users, the test run's Redis, and real server/worker processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil

import pytest
import redis
from django.conf import settings
from websockets.sync.client import connect as ws_connect

from tests import procs


@pytest.fixture(scope="session", autouse=True)
def _isolated_redis():
    """Drop every key this run wrote (its prefix), before and after the session."""
    client = redis.Redis.from_url(settings.REDIS_URL)

    def purge():
        for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:*", count=1000):
            client.delete(key)

    purge()
    yield client
    purge()
    client.close()
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)
    for path in procs.RUN_DIR.glob(f"*-{os.getpid()}*"):  # logs, SQLite WAL files of this run
        path.unlink(missing_ok=True)


@pytest.fixture
def redis_client(_isolated_redis):
    return _isolated_redis


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-pass-123")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-pass-123")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="root-pass-123")


def session_cookie(client, user) -> str:
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


# --- real processes ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_server_proc(django_db_setup, django_db_blocker):
    """One real ASGI server (uvicorn) for the session, on the test database and Redis."""
    with django_db_blocker.unblock():
        server = procs.Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live_worker_proc(django_db_setup, django_db_blocker):
    """One real Celery worker for the session."""
    with django_db_blocker.unblock():
        worker = procs.Worker().start()
    yield worker
    worker.stop()


@pytest.fixture
def server(live_server_proc, transactional_db):
    if not live_server_proc.alive():
        live_server_proc.start()
    return live_server_proc


@pytest.fixture
def worker(live_worker_proc, transactional_db):
    if not live_worker_proc.alive():
        live_worker_proc.start()
    yield live_worker_proc
    # Let the worker finish what the test started before the database is flushed under it (on
    # PostgreSQL a TRUNCATE racing a task's writes deadlocks).
    procs.wait_idle(live_worker_proc)


class Socket:
    """A WebSocket client for tests: JSON in and out, with timeouts."""

    def __init__(self, conn):
        self.conn = conn

    def send(self, data):
        self.conn.send(data if isinstance(data, str) else json.dumps(data))

    def recv(self, timeout: float = 60) -> dict:
        return json.loads(self.conn.recv(timeout=timeout))

    def recv_until(self, predicate, timeout: float = 60) -> list[dict]:
        """Receive until an event matches; returns everything received, the match last."""
        import time

        got = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching event within {timeout} s; got {got[-5:]}")
            event = self.recv(timeout=left)
            got.append(event)
            if predicate(event):
                return got

    def no_message(self, timeout: float = 0.5) -> bool:
        try:
            self.conn.recv(timeout=timeout)
        except TimeoutError:
            return True
        return False

    def close(self):
        self.conn.close()


@pytest.fixture
def open_socket(server):
    """open_socket(cookie=..., token=..., last_event_id=..., origin=...) -> Socket, closed after."""
    stack = contextlib.ExitStack()

    def _open(*, cookie=None, token=None, last_event_id=None, origin="default", path="/ws/"):
        url = f"ws://127.0.0.1:{server.port}{path}"
        if last_event_id is not None:
            url += f"?last_event_id={last_event_id}"
        headers = {}
        if cookie:
            headers["Cookie"] = f"{settings.SESSION_COOKIE_NAME}={cookie}"
        if token:
            headers["Authorization"] = f"Token {token}"
        if origin == "default":
            origin = f"http://127.0.0.1:{server.port}"
        kwargs = {"additional_headers": headers, "open_timeout": 10, "max_size": 2**22}
        if origin:
            kwargs["origin"] = origin
        return Socket(stack.enter_context(ws_connect(url, **kwargs)))

    with stack:
        yield _open
