"""The WebSocket endpoint, through a real ASGI server process and a real Redis."""

import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mlops_dashboard.events import catalog, publish
from tests import events as event_record
from tests.conftest import session_cookie


def created(n: int) -> catalog.Event:
    """A dataset event of the default project, of which `user` (alice) is a member."""
    from tests.factories import ProjectFactory

    return catalog.DatasetCreated(project_id=ProjectFactory().id, dataset_id=n, name=f"ds{n}")


def test_anonymous_socket_is_told_to_log_in_and_closed(open_socket):
    sock = open_socket()
    event_record.expect([sock.recv()], "error", code="unauthorized")
    with pytest.raises(ConnectionClosed):
        sock.recv(timeout=60)
    assert sock.conn.close_code == 4401


def test_foreign_origin_is_refused(open_socket, client, user):
    cookie = session_cookie(client, user)
    with pytest.raises(InvalidStatus) as info:
        open_socket(cookie=cookie, origin="http://evil.example.com")
    assert info.value.response.status_code == 403


def test_ping_answers_pong_with_the_clients_timestamp(open_socket, client, user):
    sock = open_socket(cookie=session_cookie(client, user))
    sock.send({"type": "ping", "ts": 1234.5})
    pong = event_record.expect([sock.recv()], "pong", ts=1234.5)
    assert pong["server_ts"] > 1.7e12 and pong["timestamp"].endswith("Z")


def test_token_header_authenticates_a_program(open_socket, user):
    from tests.factories import api_token_for

    sock = open_socket(token=api_token_for(user), origin=None)
    sock.send({"type": "ping", "ts": 1})
    assert sock.recv()["type"] == "pong"


def test_bad_token_is_unauthorized(open_socket):
    sock = open_socket(token="not-a-token", origin=None)
    assert sock.recv()["code"] == "unauthorized"


def test_live_events_arrive_in_order_with_the_catalog_fields(open_socket, client, user):
    sock = open_socket(cookie=session_cookie(client, user))
    sock.send({"type": "ping", "ts": 0})
    sock.recv()  # joined: the pong comes after the groups were added
    ids = [publish(created(n)) for n in range(1, 21)]
    got = [sock.recv() for _ in range(20)]
    assert [e["id"] for e in got] == ids == sorted(ids)
    first = got[0]
    assert first["type"] == "dataset_created" and first["dataset_id"] == 1 and first["name"] == "ds1"
    assert list(first)[:3] == ["type", "id", "timestamp"]
    assert sock.no_message(0.3)


def test_subscribe_and_unsubscribe_object_topics(open_socket, client, user, project):
    from tests.factories import DatasetFactory

    followed, other = DatasetFactory(), DatasetFactory()
    sock = open_socket(cookie=session_cookie(client, user))
    sock.send({"type": "unsubscribe", "topics": ["dashboard", f"project.{project.id}"]})
    sock.send({"type": "subscribe", "topics": [f"dataset.{followed.id}"]})
    sock.send({"type": "ping", "ts": 0})
    assert sock.recv()["type"] == "pong"
    publish(created(other.id))  # project + dataset.<other>: not followed
    seven = publish(created(followed.id))
    assert sock.recv()["id"] == seven
    sock.send({"type": "unsubscribe", "topics": [f"dataset.{followed.id}"]})
    sock.send({"type": "ping", "ts": 0})
    assert sock.recv()["type"] == "pong"
    publish(created(followed.id))
    assert sock.no_message(0.5)


def test_an_event_on_two_joined_topics_arrives_once(open_socket, client, user):
    from tests.factories import DatasetFactory

    dataset = DatasetFactory()
    sock = open_socket(cookie=session_cookie(client, user))
    sock.send({"type": "subscribe", "topics": [f"dataset.{dataset.id}"]})
    sock.send({"type": "ping", "ts": 0})
    sock.recv()
    event_id = publish(created(dataset.id))  # project and dataset.<id>
    assert sock.recv()["id"] == event_id
    assert sock.no_message(0.5)


def test_other_users_topics_are_refused_and_not_delivered(open_socket, client, user, other_user):
    sock = open_socket(cookie=session_cookie(client, user))
    sock.send({"type": "subscribe", "topics": [f"user.{other_user.id}"]})
    assert sock.recv()["code"] == "forbidden_topic"
    publish(catalog.UploadProgress(filename="a.csv", bytes_uploaded=1, total_bytes=2, progress_percent=50.0,
                                   upload_speed=1.0, estimated_time_remaining=1.0, user_id=other_user.id,
                                   upload_key="x"))
    mine = publish(catalog.UploadProgress(filename="b.csv", bytes_uploaded=1, total_bytes=2, progress_percent=50.0,
                                          upload_speed=1.0, estimated_time_remaining=1.0, user_id=user.id,
                                          upload_key="y"))
    event = sock.recv()
    assert event["id"] == mine and event["filename"] == "b.csv"


@pytest.mark.parametrize(
    "message, code",
    [
        ("not json", "bad_message"),
        ("[1, 2]", "bad_message"),
        ('{"no": "type"}', "bad_message"),
        ('{"type": "launch_missiles"}', "unknown_type"),
        ('{"type": "subscribe", "topics": "dataset.1"}', "bad_message"),
        ('{"type": "subscribe", "topics": ["../../etc"]}', "bad_topic"),
        ('{"type": "subscribe"}', "bad_message"),
        ("x" * (64 * 1024 + 1), "too_large"),
        ("[" * 5000, "bad_message"),  # json.loads raises RecursionError, not ValueError
        ('{"type": "ping", "ts": ' + "[" * 100_000 + "}", "too_large"),
    ],
)
def test_malformed_messages_get_an_error_and_the_socket_lives_on(open_socket, client, user, message, code):
    sock = open_socket(cookie=session_cookie(client, user))
    sock.send(message)
    error = sock.recv()
    assert error["type"] == "error" and error["code"] == code and error["message"]
    sock.send({"type": "ping", "ts": 7})
    assert sock.recv()["ts"] == 7


def test_binary_frames_get_an_error(open_socket, client, user):
    sock = open_socket(cookie=session_cookie(client, user))
    sock.conn.send(b"\x00\x01")
    assert sock.recv()["code"] == "bad_message"


def test_replay_after_an_id_has_no_gap_and_no_duplicate(open_socket, client, user):
    cookie = session_cookie(client, user)
    first = publish(created(1))
    missed = [publish(created(n)) for n in range(2, 40)]
    sock = open_socket(cookie=cookie, last_event_id=first)
    live = [publish(created(n)) for n in range(40, 45)]
    got = [sock.recv()["id"] for _ in range(len(missed) + len(live))]
    assert got == missed + live
    assert sock.no_message(1.5)  # the delayed catch-up re-read sends nothing twice


def test_replay_leaves_out_other_users_private_events(open_socket, client, user, other_user):
    cookie = session_cookie(client, user)
    start = publish(created(1))
    publish(catalog.UploadProgress(filename="secret.csv", bytes_uploaded=1, total_bytes=2, progress_percent=50.0,
                                   upload_speed=1.0, estimated_time_remaining=1.0, user_id=other_user.id,
                                   upload_key="s"))
    after = publish(created(2))
    sock = open_socket(cookie=cookie, last_event_id=start)
    assert sock.recv()["id"] == after
    assert sock.no_message(0.5)


def test_replay_past_the_log_horizon_sends_replay_gap(open_socket, client, user, settings):
    settings.EVENT_LOG_SIZE = 5
    cookie = session_cookie(client, user)
    first = publish(created(1))
    ids = [publish(created(n)) for n in range(2, 12)]
    sock = open_socket(cookie=cookie, last_event_id=first)
    error = sock.recv()
    assert error["type"] == "error" and error["code"] == "replay_gap"
    assert error["latest_id"] == ids[-1]
    later = publish(created(99))
    assert sock.recv()["id"] == later


def test_replay_within_the_horizon_of_a_small_log_is_complete(open_socket, client, user, settings):
    settings.EVENT_LOG_SIZE = 5
    cookie = session_cookie(client, user)
    ids = [publish(created(n)) for n in range(1, 12)]
    sock = open_socket(cookie=cookie, last_event_id=ids[-5])
    assert [sock.recv()["id"] for _ in range(4)] == ids[-4:]


def test_object_topics_named_on_connect_are_checked_and_covered_by_the_replay(open_socket, client, user):
    """`?topics=` (what realtime.js sends on a reconnect): each object topic is checked as `subscribe`
    checks it and joined before the replay, so events only on it that were missed come back too."""
    from tests.factories import DatasetFactory, PipelineFactory, PipelineRunFactory, ProjectFactory

    run = PipelineRunFactory(pipeline=PipelineFactory(dataset=DatasetFactory()))
    theirs = DatasetFactory(project=ProjectFactory(slug="other"))
    step = {"step_index": 0, "kind": "train", "status": "running", "log": ["line"]}
    start = publish(created(1))
    missed = publish(catalog.PipelineStep(project_id=run.pipeline.dataset.project_id, pipeline_id=run.pipeline_id,
                                          run_id=run.id, **step))  # on the run's topic only
    sock = open_socket(cookie=session_cookie(client, user),
                       path=f"/ws/?last_event_id={start}&topics=pipeline_run.{run.id},dataset.{theirs.id},nonsense")
    errors = [sock.recv(), sock.recv()]
    assert [(e["type"], e["code"]) for e in errors] == [("error", "bad_topic"), ("error", "forbidden_topic")]
    assert f"dataset.{theirs.id}" in errors[1]["message"]
    event_record.expect([sock.recv()], "pipeline_step", run_id=run.id, step_index=0)
    # The refused dataset's topic (and another project's): never here.
    publish(catalog.DatasetCreated(project_id=theirs.project_id, dataset_id=theirs.id, name="theirs"))
    live = publish(catalog.PipelineStep(project_id=run.pipeline.dataset.project_id, pipeline_id=run.pipeline_id,
                                        run_id=run.id, **step))
    assert sock.recv()["id"] == live > missed


def test_bad_last_event_id_is_an_error(open_socket, client, user):
    sock = open_socket(cookie=session_cookie(client, user), path="/ws/?last_event_id=abc")
    assert sock.recv()["code"] == "bad_message"


def test_a_message_that_fails_while_handled_gets_an_error_and_the_socket_lives_on(open_socket, client, user):
    """A ping whose `ts` nests just deep enough to parse but not to be echoed back (json.dumps
    raises RecursionError): wherever that depth lies on this build, every message of the sweep is
    answered (a pong or an error) and the socket stays open. Paced under the message rate limit."""
    import time

    sock = open_socket(cookie=session_cookie(client, user))
    answers = set()
    for depth in range(850, 1001):
        sock.send('{"type": "ping", "ts": ' + "[" * depth + "]" * depth + "}")
        text = sock.conn.recv(timeout=60)  # a pong nests as deep as its ts: too deep for this process' parser
        answers.add("pong" if text.startswith('{"type":"pong"') else json.loads(text)["code"])
        time.sleep(0.1)
    sock.send({"type": "ping", "ts": 7})
    assert sock.recv_until(lambda e: e["type"] == "pong")[-1]["ts"] == 7
    assert answers <= {"pong", "bad_message", "server_error"} and "pong" in answers
