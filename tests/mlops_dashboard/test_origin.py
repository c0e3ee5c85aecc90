"""The socket's Origin check: scheme, host and port against the site's own origins (a real uvicorn).

The test server is reached at http://127.0.0.1:<port>; its ALLOWED_HOSTS are the defaults
(127.0.0.1, localhost, [::1])."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests import procs
from tests.conftest import session_cookie
from tests.factories import ApiTokenFactory


def refused(open_socket, cookie, origin) -> bool:
    with pytest.raises(InvalidStatus) as info:
        open_socket(cookie=cookie, origin=origin)
    return info.value.response.status_code == 403


def test_the_same_origin_passes(open_socket, client, user, server):
    sock = open_socket(cookie=session_cookie(client, user), origin=f"http://127.0.0.1:{server.port}")
    sock.send({"type": "ping", "ts": 1})
    assert sock.recv()["type"] == "pong"


@pytest.mark.parametrize("origin", [
    "http://127.0.0.1:9999",  # another port of the same host
    "http://127.0.0.1",  # port 80
    "https://127.0.0.1:{port}",  # another scheme
    "http://localhost:{port}",  # allowed, but not the host this handshake reached
    "http://evil.example.com:{port}",
    "http://127.0.0.1.evil.example.com:{port}",
    "null",  # an opaque origin (sandboxed frame, file:)
    "ws://127.0.0.1:{port}",
])
def test_other_origins_are_refused(open_socket, client, user, server, origin):
    assert refused(open_socket, session_cookie(client, user), origin.format(port=server.port))


def test_a_program_without_origin_may_still_authenticate(open_socket, user):
    sock = open_socket(token=ApiTokenFactory(user=user).key, origin=None)
    sock.send({"type": "ping", "ts": 1})
    assert sock.recv()["type"] == "pong"
    anonymous = open_socket(origin=None)
    assert anonymous.recv()["code"] == "unauthorized"


def test_configured_origins_match_exactly(transactional_db):
    """DJANGO_ALLOWED_ORIGINS and DJANGO_CSRF_TRUSTED_ORIGINS (with its `*.` subdomains)."""
    server = procs.Server(DJANGO_ALLOWED_ORIGINS="http://front.example.com:3000",
                          DJANGO_CSRF_TRUSTED_ORIGINS="https://*.example.org").start()
    try:
        def status(origin: str) -> int:
            try:
                with connect(server.ws_url, origin=origin, open_timeout=30):
                    return 101
            except InvalidStatus as exc:
                return exc.response.status_code

        assert status("http://front.example.com:3000") == 101
        assert status("https://app.example.org") == 101
        assert status("https://app.example.org:443") == 101
        assert status(f"http://127.0.0.1:{server.port}") == 101  # still its own
        for origin in ("http://front.example.com:3001", "https://front.example.com:3000", "http://front.example.com",
                       "http://app.example.org", "https://app.example.org:8443", "https://example.org.evil.com",
                       "https://*.example.org"):
            assert status(origin) == 403, origin
    finally:
        server.stop()
