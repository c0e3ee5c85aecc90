"""Upload limits at the ASGI layer (datasets/upload.py), against real uvicorn processes: an anonymous
upload is refused before its body is read, a user has at most UPLOADS_PER_USER uploads streaming
at once across every server process, and an upload whose body pauses past WEB_BODY_TIMEOUT gets 408."""

from pathlib import Path

import pytest
from django.conf import settings

from tests import procs, rawhttp

BOUNDARY = "xBOUNDARYx"
HEAD = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
        "Content-Type: text/csv\r\n\r\na,b\r\n").encode()


def token_for(user) -> str:
    from tests.factories import api_token_for

    return api_token_for(user)


def start_upload(port: int, headers: dict, size: int = 10 * 2**20, body: bytes = HEAD):
    """A multipart upload announcing `size` bytes, of which only `body` is sent (so far)."""
    return rawhttp.open_request(port, "POST", "/api/datasets/", {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(size), **headers}, body)


@pytest.fixture(scope="module")
def two_servers(django_db_setup, django_db_blocker):
    """Two server processes, one upload at a time per user; an upload may pause far longer than a test."""
    with django_db_blocker.unblock():
        servers = [procs.Server(UPLOADS_PER_USER=1, WEB_BODY_TIMEOUT=600).start() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def impatient_server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        server = procs.Server(WEB_BODY_TIMEOUT=3).start()
    yield server
    server.stop()


@pytest.mark.parametrize("credentials", [
    {},
    {"Cookie": f"{settings.SESSION_COOKIE_NAME}=not-a-session"},
    {"Authorization": "Token not-a-token"},
], ids=["none", "bad-session", "bad-token"])
def test_an_anonymous_512_mb_upload_is_refused_before_its_body_is_sent(two_servers, transactional_db, credentials):
    media_root = Path(settings.MEDIA_ROOT)
    media = set(media_root.rglob("*"))
    sock = start_upload(two_servers[0].port, credentials, size=settings.DATASET_MAX_UPLOAD_MB * 2**20)
    try:
        response = rawhttp.read_response(sock, timeout=60)  # 512 MB announced, a few bytes sent
        assert response.status == 401, response
        assert response.json()["code"] == "not_authenticated"
        assert rawhttp.closed_by_server(sock)
    finally:
        sock.close()
    assert set(media_root.rglob("*")) == media  # nothing stored (nor spooled: Django never saw it)


def test_an_upload_whose_body_pauses_gets_408(impatient_server, transactional_db, user):
    sock = start_upload(impatient_server.port, {"Authorization": f"Token {token_for(user)}"})
    try:
        response = rawhttp.read_response(sock, timeout=60)  # nothing more comes after the first bytes
        assert response.status == 408, response
        assert response.json()["code"] == "body_timeout"
        assert rawhttp.closed_by_server(sock)
    finally:
        sock.close()


def progress_keys(events, user) -> set[str]:
    """The uploads of this user that the servers have reported streaming (upload_progress)."""
    return {e["upload_key"] for e in events("upload_progress") if e["user_id"] == user.id}


def test_a_user_has_at_most_uploads_per_user_streaming_across_server_processes(two_servers, transactional_db, user,
                                                                               other_user, events):
    a, b = two_servers
    mine = {"Authorization": f"Token {token_for(user)}"}
    first = start_upload(a.port, mine)
    others = None
    try:
        procs.wait_for(lambda: progress_keys(events, user), timeout=60, message="the first upload streaming")
        events.expect("upload_progress", user_id=user.id, filename="big.csv", bytes_uploaded=len(HEAD))

        # The same user on the other process: 429 at once, before its body (never sent) is read.
        second = start_upload(b.port, mine, body=b"")
        try:
            response = rawhttp.read_response(second, timeout=60)
        finally:
            second.close()
        assert response.status == 429, response
        assert response.json()["code"] == "too_many_uploads" and "UPLOADS_PER_USER" in response.json()["detail"]

        # Another user is not held back by the first one's upload.
        others = start_upload(b.port, {"Authorization": f"Token {token_for(other_user)}"})
        procs.wait_for(lambda: progress_keys(events, other_user), timeout=60, message="the other user's upload")
    finally:
        first.close()  # the client gives up: its lease is given back
        if others is not None:
            others.close()

    seen = progress_keys(events, user)

    def a_new_upload_streams():
        sock = start_upload(b.port, mine)
        try:
            procs.wait_for(lambda: rawhttp.answered(sock) or progress_keys(events, user) - seen, timeout=60,
                           message="an answer or progress")
            if rawhttp.answered(sock):
                assert rawhttp.read_response(sock).status == 429
                return False
            return True
        finally:
            sock.close()

    procs.wait_for(a_new_upload_streams, timeout=120, interval=0.5, message="an upload accepted after the first ended")


@pytest.mark.parametrize("case", ["viewer", "viewer-no-project-named", "outsider", "not-an-id"])
def test_a_forbidden_100_mb_upload_is_refused_before_its_body_is_sent(two_servers, transactional_db, case):
    """The project in the URL is checked before a byte of the body is read (the servers would wait
    WEB_BODY_TIMEOUT=600 s for the rest of it): 403 naming the role, 404 for a project the user cannot
    see, 400 for a bad id; and with no project named, a user who may upload nowhere is refused too."""
    from tests.factories import ProjectFactory, UserFactory, member

    project = ProjectFactory()
    someone = UserFactory()
    if case.startswith("viewer"):
        member(someone, "viewer", project)
    else:
        member(someone, "editor", ProjectFactory(slug="elsewhere"))
    path = {"viewer-no-project-named": "/api/datasets/", "not-an-id": "/api/datasets/?project=abc"}.get(
        case, f"/api/datasets/?project={project.pk}")
    media_root = Path(settings.MEDIA_ROOT)
    media = set(media_root.rglob("*"))
    sock = rawhttp.open_request(two_servers[0].port, "POST", path, {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(100 * 2**20),
        "Authorization": f"Token {token_for(someone)}"}, HEAD)
    try:
        response = rawhttp.read_response(sock, timeout=60)  # 100 MB announced, a few bytes sent
        expected = {"viewer": 403, "viewer-no-project-named": 403, "outsider": 404, "not-an-id": 400}[case]
        assert response.status == expected, response
        if expected == 403:
            assert "editor role" in response.json()["detail"]
        assert rawhttp.closed_by_server(sock)
    finally:
        sock.close()
    assert set(media_root.rglob("*")) == media  # nothing stored (nor spooled: Django never saw it)
    from datasets.models import Dataset

    assert not Dataset.objects.exists()
