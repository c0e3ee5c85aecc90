"""API throttles: anonymous callers by address, users by account, counted in Redis across server
processes; past the rate, 429 as problem details with Retry-After. The rates are settings read on
each request (tests/env.py sets them out of the suite's reach)."""

import httpx
import pytest
from django.conf import settings
from django.test import override_settings

from tests import procs
from tests.conftest import session_cookie


@pytest.fixture(autouse=True)
def _no_history(redis_client):
    """Forget earlier requests' counts (user ids come back across tests)."""
    def forget():
        for key in redis_client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:cache:*throttle_*", count=1000):
            redis_client.delete(key)

    forget()
    yield
    forget()


def assert_throttled(response):
    assert response.status_code == 429
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 429 and body["title"] == "Too many requests" and body["code"] == "throttled"
    assert 0 < int(response["Retry-After"]) <= 60


@pytest.mark.django_db
@override_settings(API_THROTTLE_ANON="3/minute")
def test_anonymous_callers_are_throttled_by_address_whatever_they_claim(client):
    for n in range(3):
        response = client.post("/api/auth/token/", {"username": "x", "password": "y"},
                               HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        assert response.status_code == 400
    # A new X-Forwarded-For per request is not a new client.
    assert_throttled(client.post("/api/auth/token/", {"username": "x", "password": "y"},
                                 HTTP_X_FORWARDED_FOR="10.0.0.99"))


@pytest.mark.django_db
@override_settings(API_THROTTLE_USER="5/minute")
def test_each_user_has_a_budget_of_their_own(client, user, other_user):
    client.force_login(user)
    assert [client.get("/api/events/").status_code for _ in range(5)] == [200] * 5
    assert_throttled(client.get("/api/events/"))
    client.force_login(other_user)
    assert client.get("/api/events/").status_code == 200


@pytest.mark.django_db
@override_settings(API_THROTTLE_USER="")
def test_an_empty_rate_turns_a_throttle_off(client, user):
    client.force_login(user)
    assert {client.get("/api/events/").status_code for _ in range(30)} == {200}


@pytest.mark.django_db
def test_without_the_cache_requests_are_served_not_failed(client, user):
    from tests import procs as p

    dead = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{p.free_port()}/0"}}
    client.force_login(user)
    with override_settings(CACHES=dead, API_THROTTLE_USER="1/minute"):
        assert [client.get("/api/events/").status_code for _ in range(3)] == [200] * 3


def test_the_count_is_shared_by_every_server_process(transactional_db, client, user):
    """Two real uvicorn processes with 4/minute: 2 calls on one and 2 on the other spend the budget."""
    cookies = {settings.SESSION_COOKIE_NAME: session_cookie(client, user)}
    servers = [procs.Server(API_THROTTLE_USER="4/minute") for _ in range(2)]
    try:
        for server in servers:
            server.start(timeout=120)
        codes = [httpx.get(s.url + "/api/events/", cookies=cookies, timeout=60).status_code
                 for s in (*servers, *servers)]
        assert codes == [200] * 4
        for server in servers:
            response = httpx.get(server.url + "/api/events/", cookies=cookies, timeout=60)
            assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
            assert response.headers["Content-Type"] == "application/problem+json"
    finally:
        for server in servers:
            server.stop()



def test_checks_made_at_once_by_many_threads_spend_the_budget_exactly():
    """40 checks at once from one process's threads against 25 allowed: the script counts each once."""
    import threading
    import time

    from mlops_dashboard import throttles

    now, answers = time.time(), []
    barrier = threading.Barrier(40)

    def check():
        barrier.wait(30)
        answers.append(throttles._window("throttle_test_burst", now, 60, 25)[0])

    threads = [threading.Thread(target=check) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(answers) == [0] * 15 + [1] * 25


def test_a_server_keeps_its_redis_connections_however_many_calls_it_throttles(transactional_db, client, user,
                                                                              redis_client):
    """Django gives each request a cache object of its own (with its own connection pool): the
    throttle's client is the process's, so 300 calls do not open 300 connections."""
    cookies = {settings.SESSION_COOKIE_NAME: session_cookie(client, user)}
    server = procs.Server(API_THROTTLE_USER="100000/minute")
    try:
        server.start(timeout=120)
        with httpx.Client(base_url=server.url, cookies=cookies, timeout=60) as http:
            assert http.get("/api/events/").status_code == 200
            before = redis_client.info("clients")["connected_clients"]
            assert {http.get("/api/events/").status_code for _ in range(300)} == {200}
        after = redis_client.info("clients")["connected_clients"]
        assert after - before < 30, (before, after)
    finally:
        server.stop()
