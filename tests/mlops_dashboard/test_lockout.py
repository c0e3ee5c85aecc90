"""Login lockout (django-axes): per user name AND address, on /login/, /admin/login/ and
POST /api/auth/token/; 429 while locked, even for the right password, until the cool-off has passed."""

import re
from datetime import timedelta

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ENDPOINTS = {"login": "/login/", "admin": "/admin/login/", "api": "/api/auth/token/"}
ELSEWHERE = "192.0.2.7"  # another client address (TEST-NET-1; only a REMOTE_ADDR here, no traffic)


def attempt(client, endpoint, username, password, address="127.0.0.1"):
    return client.post(ENDPOINTS[endpoint], {"username": username, "password": password}, REMOTE_ADDR=address)


def succeeded(endpoint, response) -> bool:
    return response.status_code == (200 if endpoint == "api" else 302)


@pytest.fixture
def people(db):
    """Two users who may log in everywhere (the admin wants staff)."""
    return UserFactory(username="alice", staff=True), UserFactory(username="bob", staff=True)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_sixty_wrong_passwords_meet_a_429_and_lock_only_that_name_from_that_address(client, people, endpoint):
    statuses = [attempt(client, endpoint, "alice", f"wrong-{i}").status_code for i in range(60)]
    assert 429 in statuses
    first = statuses.index(429)
    assert first == settings.AXES_FAILURE_LIMIT - 1  # the limit-th failure already answers 429
    assert set(statuses[first:]) == {429}

    locked = attempt(client, endpoint, "alice", "alice-pass-123")
    assert locked.status_code == 429  # the right password is refused while locked
    assert locked["Retry-After"] == str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    if endpoint == "api":
        assert locked["Content-Type"] == "application/problem+json"
        assert locked.json()["status"] == 429 and "locked out" in locked.json()["detail"]
    else:
        assert "Too many failed logins" in locked.content.decode()

    assert succeeded(endpoint, attempt(client.__class__(), endpoint, "bob", "bob-pass-123")), "another name"
    assert succeeded(endpoint, attempt(client.__class__(), endpoint, "alice", "alice-pass-123", ELSEWHERE)), \
        "the same name from another address"


def test_the_lockout_ends_after_the_cool_off(client, people):
    from axes.models import AccessAttempt

    for i in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "api", "alice", f"wrong-{i}")
    assert attempt(client, "api", "alice", "alice-pass-123").status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert attempt(client, "api", "alice", "alice-pass-123").status_code == 200


def test_a_success_forgets_earlier_failures(client, people):
    for _ in range(2):
        for i in range(settings.AXES_FAILURE_LIMIT - 1):
            assert attempt(client, "api", "alice", f"wrong-{i}").status_code == 400
        assert attempt(client, "api", "alice", "alice-pass-123").status_code == 200


def test_locked_out_over_a_real_server(server):
    """Under uvicorn (Django's async middleware chain): the API and the login page both answer 429."""
    UserFactory(username="carol")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        statuses = [http.post("/api/auth/token/", data={"username": "carol", "password": "nope"}).status_code
                    for _ in range(settings.AXES_FAILURE_LIMIT + 2)]
        assert statuses[-1] == 429
        locked = http.post("/api/auth/token/", json={"username": "carol", "password": "carol-pass-123"})
        assert locked.status_code == 429 and locked.headers["Content-Type"] == "application/problem+json"
        assert locked.json()["status"] == 429

        page = http.get("/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        locked_page = http.post("/login/", data={"username": "carol", "password": "carol-pass-123",
                                                 "csrfmiddlewaretoken": csrf})
        assert locked_page.status_code == 429 and "Too many failed logins" in locked_page.text
