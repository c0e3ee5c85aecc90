"""Shared fixtures: users, the test run's Redis, the events a test published, and real server/worker
processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil

import pytest
import redis
from django.conf import settings
from websockets.sync.client import connect as ws_connect

from tests import events as event_record
from tests import procs


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The check that every catalog event type was sent and checked runs after every other test."""
    items.sort(key=lambda item: item.name == event_record.COVERAGE_TEST)


def pytest_deselected(items):
    if items:
        event_record.deselected = True


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
def user(db):
    """alice: a maintainer of the default project (where every factory-made row goes), so she may do
    anything there; tests about roles make their own members (tests.factories.member)."""
    from tests.factories import UserFactory, member

    alice = UserFactory(username="alice")
    member(alice, "maintainer")
    return alice


@pytest.fixture
def other_user(db):
    """bob: an editor of the default project."""
    from tests.factories import UserFactory, member

    bob = UserFactory(username="bob")
    member(bob, "editor")
    return bob


@pytest.fixture
def project(db):
    """The default project (the one factories use)."""
    from tests.factories import ProjectFactory

    return ProjectFactory()


@pytest.fixture
def staff_user(db):
    from tests.factories import UserFactory

    return UserFactory(username="root", staff=True)


@pytest.fixture
def events(redis_client):
    """events(*types) -> events published since the fixture was set up, oldest first (the bus log);
    events.expect(type, **fields) -> the last such event with these field values, or a failure."""
    log = event_record.EventLog()
    yield log
    with contextlib.suppress(redis.RedisError):
        log()  # what the test's actions sent counts as sent, even when the test read none of it


@pytest.fixture(autouse=True)
def _telemetry_live_points_sent():
    """Telemetry held in this process for a live event (telemetry/live.py, up to a second) is sent
    by the end of the test that ingested it, not into the next test's events."""
    yield
    from telemetry import live

    if live._publisher is not None:
        live._publisher.flush()


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
        event = json.loads(self.conn.recv(timeout=timeout))
        event_record.saw([event])
        return event

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

    def expect(self, type_: str, /, timeout: float = 10, **fields) -> dict:
        """Receive until an event of this type with these field values arrives, and return it."""
        got = self.recv_until(lambda e: event_record.matches(e, type_, fields), timeout=timeout)
        return event_record.expect(got[-1:], type_, **fields)

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


# --- receivers of notifications ---------------------------------------------------------------------


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on a free loopback port; `.url(to=...)` is a channel's URL."""
    from tests.receivers import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def webhook_server():
    """A real HTTP server on a free loopback port keeping every JSON body; `.url()` is a json:// URL."""
    from tests.receivers import WebhookServer

    server = WebhookServer().start()
    yield server
    server.stop()
