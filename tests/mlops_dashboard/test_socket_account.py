"""Open sockets follow the account: logging out, deactivation, a password change or a revoked API
token closes the sockets that depended on it, in every server process (real uvicorn, real Redis;
the change is made in this process or through the server's own pages)."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from tests.conftest import session_cookie
from tests.factories import ApiTokenFactory


def ready(sock):
    """Ping until the pong: the socket has joined its groups."""
    sock.send({"type": "ping", "ts": 1})
    sock.recv_until(lambda e: e["type"] == "pong")
    return sock


def closed(sock, timeout: float = 60) -> tuple[int, str, list[dict]]:
    """Read until the server closes it: (code, reason, errors received first)."""
    errors = []
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the socket was not closed within {timeout} s")
            event = sock.recv(timeout=left)
            if event["type"] == "error":
                errors.append(event["code"])
    return sock.conn.close_code, sock.conn.close_reason, errors


def still_open(sock) -> bool:
    sock.send({"type": "ping", "ts": 2})
    return sock.recv_until(lambda e: e["type"] == "pong")[-1]["ts"] == 2


def test_logging_out_closes_that_sessions_sockets_only(server, open_socket, client, user):
    cookie = session_cookie(client, user)
    browser = ready(open_socket(cookie=cookie))
    program = ready(open_socket(token=ApiTokenFactory(user=user).key, origin=None))
    with httpx.Client(base_url=server.url, cookies={settings.SESSION_COOKIE_NAME: cookie}, timeout=60) as http:
        page = http.get("/", follow_redirects=True)  # the logout form in the page header
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        assert http.post("/logout/", data={"csrfmiddlewaretoken": csrf}).status_code in (200, 302)
    code, reason, errors = closed(browser)
    assert (code, reason, errors) == (4401, "logged out", ["account_changed"])
    assert still_open(program)  # its token still holds


def test_deactivation_closes_every_socket_of_the_user(open_socket, client, user, other_user):
    browser = ready(open_socket(cookie=session_cookie(client, user)))
    program = ready(open_socket(token=ApiTokenFactory(user=user).key, origin=None))
    someone_else = ready(open_socket(token=ApiTokenFactory(user=other_user).key, origin=None))
    user.is_active = False
    user.save()
    for sock in (browser, program):
        assert closed(sock)[:2] == (4401, "account deactivated")
    assert still_open(someone_else)


def test_a_password_change_closes_the_users_sockets_with_a_reconnect_code(open_socket, client, user):
    browser = ready(open_socket(cookie=session_cookie(client, user)))
    user.set_password("a whole new secret")
    user.save()
    # 4001: reconnect, and the server decides whether the session still holds (here it no longer does).
    assert closed(browser)[:2] == (4001, "password changed")


def test_revoking_a_token_closes_the_sockets_it_opened(open_socket, client, user):
    revoked = ApiTokenFactory(user=user)
    program = ready(open_socket(token=revoked.key, origin=None))
    browser = ready(open_socket(cookie=session_cookie(client, user)))
    revoked.delete()
    assert closed(program)[:2] == (4401, "token revoked")
    assert still_open(browser)


def test_a_save_that_changes_neither_leaves_the_sockets_open(open_socket, client, user):
    browser = ready(open_socket(cookie=session_cookie(client, user)))
    user.first_name = "Alice"
    user.save()
    assert still_open(browser) and browser.no_message(1.0)
