"""The API's hot endpoints served from their own threads (fast_routes.py), and the per-process cache
of tokens and roles (auth_cache.py): the same answers as Django's full path, and every change to a
token, a user or a membership honoured by a running server within a second."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from django.conf import settings
from django.test import Client

from mlops_dashboard.asgi import application
from mlops_dashboard.fast_routes import FastRoutes
from mlops_dashboard.models import Membership, TokenScope
from mlops_dashboard.tokens import api_token_create
from tests.factories import ProjectFactory, UserFactory, member

INGEST = "/api/telemetry/"


def point(value=1.0, source="press-07", metric="temperature", timestamp="2026-12-02T10:00:00Z"):
    return {"source": source, "metric": metric, "value": value, "timestamp": timestamp}


# The same requests through Django's full stack (the test client: every middleware) and through the
# ASGI application (token calls to a registered route take the fast path): the same status and body.
CASES = [
    ("ingest", "post", INGEST, {"points": [point(1.0), point(2.0, metric="power")]}),
    ("bad point", "post", INGEST, {"points": [point(1.0), point("x")]}),
    ("bad name", "post", INGEST, {"points": [point(source="no spaces")]}),
    ("no points", "post", INGEST, {"project": 1}),
    ("not json", "post", INGEST, "{not json"),
    ("unknown project", "post", INGEST, {"project": 999_999, "points": [point()]}),
    ("series", "get", "/api/telemetry/series/?source=press-07&metric=temperature&start=2026-12-02T09:00:00Z"
                      "&end=2026-12-02T11:00:00Z&resolution=raw", None),
    ("series bad resolution", "get", "/api/telemetry/series/?source=press-07&metric=temperature&resolution=day", None),
    ("series unknown source", "get", "/api/telemetry/series/?source=nope&metric=temperature", None),
]


def asgi_call(method: str, path: str, body: bytes, headers: dict, *, raw_query: bytes | None = None
              ) -> tuple[int, dict, bytes]:
    """One request through the project's ASGI application, in a thread with its own event loop."""
    path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method.upper(),
             "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query.encode() if raw_query is None else raw_query,
             "root_path": "", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in
                         {**headers, "host": "127.0.0.1", "content-length": str(len(body))}.items()]}
    sent, messages = [], [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    result = {}
    thread = threading.Thread(target=lambda: result.update(done=asyncio.run(application(scope, receive, send))))
    thread.start()
    thread.join(timeout=60)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body


@pytest.fixture
def editor_key(transactional_db):
    project = ProjectFactory()
    user = UserFactory(username="fast-editor")
    member(user, "editor", project)
    _, key = api_token_create(user=user)
    return project, user, key


@pytest.mark.parametrize("name, method, path, body", CASES, ids=[c[0] for c in CASES])
def test_the_fast_path_answers_as_django_does(editor_key, name, method, path, body):
    project, user, key = editor_key
    raw = (body if isinstance(body, str) else json.dumps(body)).encode() if body is not None else b""
    headers = {"Authorization": f"Token {key}"}
    if raw:
        headers["Content-Type"] = "application/json"
    answers = []
    for _ in range(2):  # the first through Django, the second (the same request again) the fast path
        if not answers:
            response = getattr(Client(), method)(path, data=raw or None, content_type="application/json",
                                                 headers=headers)
            answers.append((response.status_code, response.content))
        else:
            status, _, content = asgi_call(method, path, raw, headers)
            answers.append((status, content))
    (django_status, django_body), (fast_status, fast_body) = answers
    assert fast_status == django_status, (fast_body, django_body)
    assert json.loads(fast_body) == json.loads(django_body)


def test_only_token_calls_to_registered_routes_take_the_fast_path(editor_key):
    """Everything else reaches Django's handler (the app behind FastRoutes) untouched."""
    _, _, key = editor_key
    reached = []

    async def django(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    fast = FastRoutes(django)

    def call(method, path, headers):
        body = json.dumps({"points": [point()]}).encode()
        headers = {**headers, "host": "127.0.0.1", "content-length": str(len(body))}
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b"",
                 "headers": [(k.encode(), v.encode()) for k, v in headers.items()], "server": ("127.0.0.1", 80),
                 "client": ("127.0.0.1", 5000), "scheme": "http", "http_version": "1.1"}
        out = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            out.append(message)

        thread = threading.Thread(target=lambda: asyncio.run(fast(scope, receive, send)))
        thread.start()
        thread.join(timeout=60)
        return out[0]["status"]

    token = {"authorization": f"Token {key}", "content-type": "application/json"}
    assert call("POST", INGEST, token) == 202 and reached == []  # served without Django's handler
    assert call("POST", INGEST, {"cookie": "sessionid=x"}) == 204  # a session: Django
    assert call("DELETE", INGEST, token) == 204  # a method not registered
    assert call("GET", "/api/projects/", token) == 204  # a route not registered
    assert reached == [INGEST, INGEST, "/api/projects/"]


def test_a_scoped_token_a_missing_role_and_a_bad_token_are_refused_on_the_fast_path(editor_key):
    project, user, key = editor_key
    body = json.dumps({"points": [point()]}).encode()
    headers = {"Content-Type": "application/json"}
    _, predict_key = api_token_create(user=user, scope=TokenScope.PREDICT)
    status, _, content = asgi_call("post", INGEST, body, {**headers, "Authorization": f"Token {predict_key}"})
    assert status == 403 and "predict" in json.loads(content)["detail"]
    viewer = UserFactory(username="fast-viewer")
    member(viewer, "viewer", project)
    _, viewer_key = api_token_create(user=viewer)
    status, _, content = asgi_call("post", INGEST, body, {**headers, "Authorization": f"Token {viewer_key}"})
    assert status == 403 and "editor" in json.loads(content)["detail"]
    status, response_headers, content = asgi_call("post", INGEST, body, {**headers, "Authorization": "Token nope"})
    assert status == 401 and response_headers["www-authenticate"] == "Token"
    assert json.loads(content)["title"] == "Authentication required"
    too_many = json.dumps({"points": [point(float(i)) for i in range(settings.TELEMETRY_MAX_POINTS + 1)]}).encode()
    status, _, _ = asgi_call("post", INGEST, too_many, {**headers, "Authorization": f"Token {key}"})
    assert status == 413


# --- a running server follows changes within a second ------------------------------------------------


def _after_the_check_interval():
    """A change made now is seen by any request that starts once the server's next check is due: at
    most AUTH_CACHE_CHECK_SECONDS from now. (Waiting longer would pass whatever the cache did.)"""
    time.sleep(settings.AUTH_CACHE_CHECK_SECONDS + 0.05)


def test_a_revoked_token_is_refused_by_a_running_server_within_a_second(server, editor_key):
    project, user, key = editor_key
    token, other_key = api_token_create(user=user)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for k in (key, other_key):  # both cached by the server now
            for _ in range(3):
                r = http.post(INGEST, json={"points": [point()]}, headers={"Authorization": f"Token {k}"})
                assert r.status_code == 202, r.text
        token.delete()
        _after_the_check_interval()
        r = http.post(INGEST, json={"points": [point()]}, headers={"Authorization": f"Token {other_key}"})
        assert r.status_code == 401, r.text
        r = http.post(INGEST, json={"points": [point()]}, headers={"Authorization": f"Token {key}"})
        assert r.status_code == 202, r.text  # the other token of the same user still works


def test_a_lost_role_and_a_deactivated_user_are_honoured_within_a_second(server, editor_key):
    project, user, key = editor_key
    headers = {"Authorization": f"Token {key}"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post(INGEST, json={"points": [point()]}, headers=headers).status_code == 202
        membership = Membership.objects.get(user=user, project=project)
        membership.role = "viewer"
        membership.save()
        _after_the_check_interval()
        r = http.post(INGEST, json={"points": [point()]}, headers=headers)
        assert r.status_code == 403 and "editor" in r.json()["detail"]
        membership.role = "editor"
        membership.save()
        _after_the_check_interval()
        assert http.post(INGEST, json={"points": [point()]}, headers=headers).status_code == 202
        user.is_active = False
        user.save()
        _after_the_check_interval()
        assert http.post(INGEST, json={"points": [point()]}, headers=headers).status_code == 401


def test_a_checked_token_and_its_roles_are_then_read_from_memory(editor_key, django_assert_num_queries):
    from mlops_dashboard import permissions
    from mlops_dashboard.tokens import api_token_check, token_user

    project, user, key = editor_key
    api_token_check(key)
    with django_assert_num_queries(0):
        again = token_user(api_token_check(key))
        assert permissions.role_in(again, project) == "editor"
    again.username = "changed in this request only"
    assert api_token_check(key).user.username == "fast-editor"  # each request has its own copy


def test_a_query_string_that_is_not_utf8_is_a_400_on_the_fast_path(editor_key):
    _, _, key = editor_key
    status, _, content = asgi_call("get", "/api/telemetry/series/", b"", {"Authorization": f"Token {key}"},
                                   raw_query=b"source=\xff&metric=temperature")
    assert status == 400 and json.loads(content)["code"] == "invalid"
