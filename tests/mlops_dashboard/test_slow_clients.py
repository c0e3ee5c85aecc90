"""Slow and anonymous clients against a real uvicorn (request_bodies.py, applied in asgi.py): a body
is read in the event loop before its request takes a slot, bounded in time (408) and size (413),
and a request that needs a login and carries no credentials is refused before its body is read.

Clients here are raw sockets: they announce a body and send it slowly, partly, or never."""

import json

import httpx
import pytest
from django.conf import settings

from tests import procs, rawhttp
from tests.conftest import session_cookie

LIMIT = 2_621_440  # DATA_UPLOAD_MAX_MEMORY_SIZE's default


def start_server(django_db_blocker, **env) -> procs.Server:
    with django_db_blocker.unblock():
        return procs.Server(**env).start()


@pytest.fixture(scope="module")
def patient_server(django_db_setup, django_db_blocker):
    """Two request slots and a body timeout far beyond any test: a trickling client stays open."""
    server = start_server(django_db_blocker, WEB_MAX_CONCURRENT_REQUESTS=2, WEB_BODY_TIMEOUT=600)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def impatient_server(django_db_setup, django_db_blocker):
    server = start_server(django_db_blocker, WEB_BODY_TIMEOUT=2)
    yield server
    server.stop()


def token_for(user) -> str:
    from tests.factories import api_token_for

    return api_token_for(user)


# What an anonymous client may announce (WEB_ANONYMOUS_MAX_BODY, 64 KiB); 1 MB, as in the attack seen,
# is refused at once (test_a_request_without_credentials_may_send_a_small_body_only).
TRICKLED = "60000"


def trickling_logins(port: int, n: int) -> list:
    """n anonymous clients that announce a 60 kB login form and have sent a few bytes of it."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": TRICKLED}
    return [rawhttp.open_request(port, "POST", "/login/", headers, b"username=") for _ in range(n)]


def test_twelve_trickling_clients_hold_no_slot_and_every_other_request_is_answered(patient_server, transactional_db,
                                                                                   user):
    auth = {"Authorization": f"Token {token_for(user)}"}
    # And two logged-in ones trickling JSON to the API: credentials do not buy a slot before the body.
    api_trickle = [rawhttp.open_request(patient_server.port, "POST", "/api/pipelines/", {
        **auth, "Content-Type": "application/json", "Content-Length": "100000"}, b'{"name": ') for _ in range(2)]
    trickling = trickling_logins(patient_server.port, 12) + api_trickle
    try:
        for sock in trickling:
            sock.sendall(b"a")
        # Twelve waiting bodies, two slots: before the fix, these waited behind them until they gave up.
        login = httpx.get(f"{patient_server.url}/login/", timeout=60)
        api = httpx.get(f"{patient_server.url}/api/datasets/", headers=auth, timeout=60)
        assert login.status_code == 200 and api.status_code == 200, (login.status_code, api.text[:300])
        for sock in trickling:
            sock.sendall(b"b")
        assert not any(rawhttp.answered(sock) for sock in trickling), "the trickling clients are still waited for"
    finally:
        for sock in trickling:
            sock.close()


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickling"])
def test_a_page_body_that_does_not_arrive_in_time_gets_408_and_the_connection_closes(impatient_server, trickle):
    sock = rawhttp.open_request(impatient_server.port, "POST", "/login/", {
        "Content-Type": "application/x-www-form-urlencoded", "Content-Length": TRICKLED}, b"username=")
    try:
        if trickle:  # a byte every 0.2 s: far from whole when WEB_BODY_TIMEOUT (2 s) is up
            procs.wait_for(lambda: rawhttp.answered(sock) or rawhttp.send_some(sock, b"a"), timeout=60,
                           interval=0.2, message="an answer to the trickling client")
        response = rawhttp.read_response(sock, timeout=60)
        assert response.status == 408, response
        assert b"WEB_BODY_TIMEOUT" in response.body
        assert rawhttp.closed_by_server(sock)
    finally:
        sock.close()


def test_an_api_body_that_does_not_arrive_in_time_gets_408_problem_details(impatient_server, transactional_db, user):
    sock = rawhttp.open_request(impatient_server.port, "POST", "/api/pipelines/", {
        "Authorization": f"Token {token_for(user)}", "Content-Type": "application/json", "Content-Length": "5000"},
        b'{"name": "half')
    try:
        response = rawhttp.read_response(sock, timeout=60)
        assert response.status == 408 and response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "body_timeout" and response.json()["status"] == 408
        assert rawhttp.closed_by_server(sock)
    finally:
        sock.close()


@pytest.mark.parametrize("method,path", [("POST", "/api/pipelines/"), ("PATCH", "/api/datasets/1/"),
                                         ("POST", "/api/models/1/deploy/")])
def test_an_api_request_without_credentials_is_refused_before_its_body(patient_server, method, path):
    sock = rawhttp.open_request(patient_server.port, method, path, {
        "Content-Type": "application/json", "Content-Length": "1000000"})  # and never a byte of it
    try:
        response = rawhttp.read_response(sock, timeout=60)
        assert response.status == 401, response
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_authenticated"
        assert rawhttp.closed_by_server(sock)
    finally:
        sock.close()


def test_a_page_request_without_credentials_is_sent_to_the_login_page_before_its_body(patient_server):
    sock = rawhttp.open_request(patient_server.port, "POST", "/datasets/?x=1", {
        "Content-Type": "application/x-www-form-urlencoded", "Content-Length": "1000000"})
    try:
        response = rawhttp.read_response(sock, timeout=60)
        assert response.status == 302 and response.headers["location"] == "/login/?next=/datasets/%3Fx%3D1"
    finally:
        sock.close()


def test_views_that_need_no_login_still_read_the_body_of_an_anonymous_client(patient_server, transactional_db,
                                                                            user):
    user.set_password("s3cret-pass-word")
    user.save()
    response = httpx.post(f"{patient_server.url}/api/auth/token/", timeout=60,
                          json={"username": user.username, "password": "s3cret-pass-word"})
    assert response.status_code == 200, response.text  # the body reached DRF whole
    wrong = httpx.post(f"{patient_server.url}/api/auth/token/", timeout=60,
                       json={"username": user.username, "password": "wrong"})
    assert wrong.status_code == 400


def over_the_limit(port: int, method: str, path: str, headers: dict, chunked: bool = False) -> rawhttp.Response:
    """Announce a body one byte over the limit (or send it chunked, with no length), then read."""
    if chunked:
        body = b"x" * (LIMIT + 1)
        sock = rawhttp.open_request(port, method, path, {**headers, "Transfer-Encoding": "chunked"},
                                    b"%x\r\n" % len(body) + body + b"\r\n")
    else:
        sock = rawhttp.open_request(port, method, path, {**headers, "Content-Length": str(LIMIT + 1)})
    try:
        return rawhttp.read_response(sock, timeout=60)
    finally:
        sock.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("method,path", [("POST", "/api/pipelines/"), ("PATCH", "/api/datasets/1/"),
                                         ("POST", "/api/auth/token/")])
def test_a_json_body_over_the_limit_gets_413_problem_details_on_every_endpoint(patient_server, transactional_db, user,
                                                                             method, path, chunked):
    headers = {"Authorization": f"Token {token_for(user)}", "Content-Type": "application/json"}
    response = over_the_limit(patient_server.port, method, path, headers, chunked)
    assert response.status == 413, response
    body = response.json()
    assert body["code"] == "too_large" and body["status"] == 413 and "DATA_UPLOAD_MAX_MEMORY_SIZE" in body["detail"]


def test_a_page_body_over_the_limit_gets_413(patient_server, transactional_db, client, user):
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_cookie(client, user)}"
    response = over_the_limit(patient_server.port, "POST", "/datasets/",
                              {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    assert response.status == 413 and b"DATA_UPLOAD_MAX_MEMORY_SIZE" in response.body


@pytest.mark.parametrize("path", ["/login/", "/api/auth/token/", "/no-such-page/"])
def test_a_request_without_credentials_may_send_a_small_body_only(patient_server, path):
    length = str(settings.WEB_ANONYMOUS_MAX_BODY + 1)
    sock = rawhttp.open_request(patient_server.port, "POST", path, {
        "Content-Type": "application/x-www-form-urlencoded", "Content-Length": length})
    try:
        response = rawhttp.read_response(sock, timeout=60)
    finally:
        sock.close()
    assert response.status == 413 and b"WEB_ANONYMOUS_MAX_BODY" in response.body


def test_predictions_keep_their_own_larger_body_limit(patient_server, transactional_db, user):
    from training.api import MAX_PREDICT_BODY, PREDICT_TOO_LARGE

    auth = {"Authorization": f"Token {token_for(user)}", "Content-Type": "application/json"}
    rows = json.dumps({"instances": [{"x": "y" * 1000}] * 3000}).encode()  # 3 MB: over the default limit
    assert len(rows) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = httpx.post(f"{patient_server.url}/api/models/by-name/none/predict/", content=rows, headers=auth,
                          timeout=60)
    assert response.status_code == 404, response.text  # past the ASGI layer: no such model
    sock = rawhttp.open_request(patient_server.port, "POST", "/api/models/1/predict/", {
        **auth, "Content-Length": str(MAX_PREDICT_BODY + 1)})
    try:
        response = rawhttp.read_response(sock, timeout=60)
    finally:
        sock.close()
    assert response.status == 413 and response.json()["detail"] == PREDICT_TOO_LARGE
    assert response.json()["code"] == "too_large"


def nginx_blocks(text: str) -> dict[str, dict[str, str]]:
    """The sample's directives per block, `server > location /` style (its own small grammar)."""
    import re

    blocks, stack, words = {"": {}}, [], []
    for token in re.findall(r"[{};]|[^\s{};]+", re.sub(r"#[^\n]*", "", text)):
        if token == "{":
            name = " ".join(words)
            while " > ".join([*stack, name]) in blocks:  # a second `server`: a block of its own
                name += "'"
            stack.append(name)
            blocks[" > ".join(stack)] = {}
            words = []
        elif token == "}":
            stack.pop()
        elif token == ";":
            if words:
                blocks[" > ".join(stack)][words[0]] = " ".join(words[1:])
            words = []
        else:
            words.append(token)
    return blocks


def test_the_nginx_sample_buffers_request_bodies_except_on_the_upload_urls():
    import re
    from pathlib import Path

    blocks = nginx_blocks((Path(settings.BASE_DIR) / "docs/deploy/nginx.conf").read_text())
    https = next(name for name, d in blocks.items() if d.get("listen") == "443 ssl")
    assert blocks[https]["proxy_request_buffering"] == "on"
    assert blocks[https]["client_body_timeout"] == f"{settings.WEB_BODY_TIMEOUT:g}s"
    unbuffered = [name for name, d in blocks.items() if d.get("proxy_request_buffering") == "off"]
    assert len(unbuffered) == 1
    pattern = re.compile(unbuffered[0].split("location ~ ", 1)[1])
    from datasets.upload import UPLOAD_PATHS

    assert all(pattern.search(path) for path in UPLOAD_PATHS)
    assert not any(pattern.search(path) for path in ("/api/datasets/1/", "/api/pipelines/", "/login/", "/datasets/"))
