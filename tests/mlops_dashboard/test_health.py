"""/health/: one round of real checks at most once a second per process, one Redis client per
process; anonymous and non-staff callers see each component's ok/down only, staff see the details."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from django.conf import settings

from mlops_dashboard import health
from tests import procs
from tests.conftest import session_cookie

pytestmark = pytest.mark.django_db

COMPONENTS = {"database", "redis", "channel_layer", "celery"}


@pytest.fixture(autouse=True)
def _fresh_round():
    reset = getattr(health, "reset_cache", lambda: None)
    reset()
    yield
    reset()


def assert_minimal(body: dict, *secrets: str):
    """Overall status and per-component ok/down, nothing else (no hosts, workers, errors, latency)."""
    assert set(body) == {"status", "checks"} and body["status"] in ("ok", "down")
    assert set(body["checks"]) == COMPONENTS
    assert all(check == {"status": check["status"]} and check["status"] in ("ok", "down")
               for check in body["checks"].values()), body
    for secret in secrets:
        assert secret not in str(body)


def test_anonymous_and_non_staff_callers_get_statuses_only(client, user, live_worker_proc):
    anonymous = client.get("/health/")
    assert anonymous.status_code == 200
    assert_minimal(anonymous.json(), live_worker_proc.hostname, "latency", "vendor")
    assert all(c["status"] == "ok" for c in anonymous.json()["checks"].values())
    client.force_login(user)
    assert_minimal(client.get("/health/").json(), live_worker_proc.hostname)


def test_staff_get_the_details(client, staff_user, live_worker_proc):
    client.force_login(staff_user)
    body = client.get("/health/").json()
    assert set(body["checks"]) == COMPONENTS and body["status"] == "ok"
    assert all(c["latency_ms"] >= 0 for c in body["checks"].values())
    assert live_worker_proc.hostname in body["checks"]["celery"]["workers"]
    assert body["checks"]["database"]["vendor"] and body["round"] >= 1 and body["checked_at"]


def test_a_down_component_shows_no_error_text_to_anonymous_callers(client, staff_user, settings):
    dead = f"redis://127.0.0.1:{procs.free_port()}/0"
    settings.REDIS_URL = dead
    anonymous = client.get("/health/")
    assert anonymous.status_code == 503
    assert_minimal(anonymous.json(), "127.0.0.1", "Error", "refused")
    assert anonymous.json()["checks"]["redis"] == {"status": "down"}
    client.force_login(staff_user)
    details = client.get("/health/").json()["checks"]["redis"]  # the same round, served from the cache
    assert details["status"] == "down" and "Error" in details["error"]


def test_checks_reuse_one_redis_connection(redis_client):
    """Twenty checks, one connection to Redis that stays open (a new client per check opened 20)."""
    name = health.redis_client_name()

    def ids():
        return {c["id"] for c in redis_client.client_list() if c.get("name") == name}

    health.check_redis()
    first = ids()
    for _ in range(20):
        health.check_redis()
    assert len(first) == 1 and ids() == first


def test_concurrent_calls_share_one_round_of_checks(server, worker, client, staff_user):
    """30 callers at once on a real uvicorn: rounds start at least MAX_AGE apart, so over the time
    this took (however slow the machine) there were at most elapsed / MAX_AGE + 2 of them, not 30."""
    cookies = {settings.SESSION_COOKIE_NAME: session_cookie(client, staff_user)}

    def staff_round():
        response = httpx.get(server.url + "/health/", cookies=cookies, timeout=120)
        return response.json()["round"]

    def anonymous(_):
        response = httpx.get(server.url + "/health/", timeout=120)
        assert_minimal(response.json(), worker.hostname)
        return response.status_code

    started = time.monotonic()
    before = staff_round()
    with ThreadPoolExecutor(max_workers=30) as pool:
        statuses = list(pool.map(anonymous, range(90)))
    after = staff_round()
    elapsed = time.monotonic() - started
    assert statuses == [200] * 90
    assert after - before <= elapsed / getattr(health, "MAX_AGE", 1.0) + 2, (after - before, elapsed)


def test_a_dead_redis_shows_no_host_to_anonymous_callers_of_a_real_server(client, staff_user):
    """A child server whose Redis is a dead port: anonymous callers see down, and no host, port or
    error text."""
    port = procs.free_port()
    server = procs.Server(REDIS_URL=f"redis://127.0.0.1:{port}/0").start()
    try:
        response = httpx.get(server.url + "/health/", timeout=120)
        assert response.status_code == 503
        body = response.json()
        assert_minimal(body, str(port), "127.0.0.1", "Error", "refused", "worker")
        assert body["checks"]["redis"] == {"status": "down"} and body["checks"]["celery"] == {"status": "down"}
    finally:
        server.stop()
