"""Projects on the socket: a member of one project never sees another's events, by any path (live,
replay, the events API, the polling fallback's request); membership changes reach open sockets;
object topics are checked; staff see everything. Real uvicorn server, real Redis."""

from __future__ import annotations

import time

import pytest
from websockets.exceptions import ConnectionClosed

from mlops_dashboard.events import bus, catalog, publish
from tests import events as event_record
from tests.conftest import session_cookie as _session_cookie


def session_cookie(client, user) -> str:
    """A session of its own (logging another user in on the same client would end the first's)."""
    return _session_cookie(client.__class__(), user)

ACTIVITY = {"id": None, "title": "t", "description": "", "user": None, "action_type": "upload",
            "status": "success", "severity_level": "info", "duration": None, "metadata": {}}


@pytest.fixture
def teams(server, django_user_model):
    """Projects A and B; ann a viewer of A, ben a viewer of B, root staff."""
    from tests.factories import ProjectFactory, UserFactory, member

    a, b = ProjectFactory(slug="team-a"), ProjectFactory(slug="team-b")
    ann, ben = UserFactory(username="ann"), UserFactory(username="ben")
    member(ann, "viewer", a)
    member(ben, "viewer", b)
    root = UserFactory(username="root", staff=True)
    return a, b, ann, ben, root


def marker() -> int:
    """A dashboard event, which every socket receives: read up to it, and nothing was skipped."""
    return publish(catalog.ServiceHealth(services=[{"name": "marker", "status": "ok", "at": time.time()}]))


def until(sock, event_id: int, timeout: float = 10) -> list[dict]:
    return sock.recv_until(lambda e: e.get("id") == event_id, timeout=timeout)


def joined(sock) -> None:
    """A pong answers after every group the socket joined on connect."""
    sock.send({"type": "ping", "ts": 0})
    sock.recv_until(lambda e: e["type"] == "pong")


def project_events(a, b, dataset_b) -> dict[str, list[int]]:
    """Every kind of project event, for A and for B; what each is addressed to is the catalog's."""
    sent = {"a": [], "b": [], "staff": []}
    for key, project, dataset_id in (("a", a, 1), ("b", b, dataset_b)):
        pid = project.id
        sent[key] += [
            publish(catalog.DatasetCreated(project_id=pid, dataset_id=dataset_id, name=f"{key}.csv")),
            publish(catalog.TrainingStarted(project_id=pid, job_id=dataset_id, model_name=key, dataset_id=dataset_id,
                                            total_epochs=3)),
            publish(catalog.ActivityUpdate(activity={**ACTIVITY, "title": key}, project_id=pid)),
            publish(catalog.SystemAlert(alert={"id": dataset_id, "title": key, "status": "open"}, project_id=pid)),
            publish(catalog.PredictionVolume(project_id=pid, total_predictions=10, predictions_per_minute=1.0,
                                             milestone_reached=None, message=key)),
        ]
    sent["staff"].append(publish(catalog.ActivityUpdate(activity={**ACTIVITY, "title": "login"})))
    return sent


def ids(events: list[dict]) -> set[int]:
    return {e["id"] for e in events if isinstance(e.get("id"), int)}


def test_a_member_of_one_project_never_gets_anothers_events_by_any_path(open_socket, client, teams):
    from tests.factories import DatasetFactory

    a, b, ann, ben, _ = teams
    dataset_b = DatasetFactory(project=b).id
    start = bus.latest_id()
    ann_cookie, ben_cookie = session_cookie(client, ann), session_cookie(client, ben)
    ann_sock, ben_sock = open_socket(cookie=ann_cookie), open_socket(cookie=ben_cookie)
    joined(ann_sock)
    joined(ben_sock)

    sent = project_events(a, b, dataset_b)
    end = marker()

    # B's events were published: B's member receives each of them, live.
    ben_live = until(ben_sock, end)
    ben_got = ids(ben_live)
    assert set(sent["b"]) <= ben_got and not ben_got & set(sent["a"]) and not ben_got & set(sent["staff"])
    event_record.expect(ben_live, "dataset_created", project_id=b.id, name="b.csv")

    # Live: ann gets A's and the dashboard's, none of B's, no staff line.
    live = until(ann_sock, end)
    assert set(sent["a"]) <= ids(live)
    assert not ids(live) & (set(sent["b"]) | set(sent["staff"]))
    event_record.expect(live, "dataset_created", project_id=a.id, name="a.csv")

    # Replay after last_event_id: the same.
    replayed = until(open_socket(cookie=ann_cookie, last_event_id=start), end)
    assert ids(replayed) == ids(live) - {e for e in ids(live) if e <= start}

    # The events API (what the polling fallback reads: after=, limit=1000): the same.
    client.force_login(ann)
    page = client.get(f"/api/events/?after={start}&limit=1000").json()
    assert ids(page["events"]) == ids(replayed)
    # The polling fallback sends the page's object topics: one of B's is refused, and nothing of it sent.
    polled = client.get(f"/api/events/?after={start}&limit=1000&topics=dataset.{dataset_b},dataset.987654")
    assert polled.json()["refused_topics"] == [f"dataset.{dataset_b}", "dataset.987654"]
    assert ids(polled.json()["events"]) == ids(replayed)
    assert client.get(f"/api/events/?after={start}&topics=project.{b.id}").status_code == 400

    # B's member sees B's (and not A's) through the API too.
    client.force_login(ben)
    ben_page = ids(client.get(f"/api/events/?after={start}&limit=1000").json()["events"])
    assert set(sent["b"]) <= ben_page and not ben_page & set(sent["a"])


def test_object_topics_of_another_project_are_forbidden(open_socket, client, teams):
    from tests.factories import DatasetFactory, PipelineFactory, PipelineRunFactory

    a, b, ann, _, _ = teams
    mine, theirs = DatasetFactory(project=a), DatasetFactory(project=b)
    run_b = PipelineRunFactory(pipeline=PipelineFactory(dataset=theirs))
    sock = open_socket(cookie=session_cookie(client, ann))
    for topic in (f"dataset.{theirs.id}", f"pipeline_run.{run_b.id}", f"pipeline.{run_b.pipeline_id}",
                  "dataset.987654321", f"project.{b.id}", "staff"):
        sock.send({"type": "subscribe", "topics": [topic]})
        error = sock.recv()
        assert (error["type"], error["code"]) == ("error", "forbidden_topic"), topic
    sock.send({"type": "subscribe", "topics": [f"dataset.{mine.id}"]})
    joined(sock)
    # Step lines go to the run's topic only: ann, refused it, never gets B's.
    publish(catalog.PipelineStep(project_id=b.id, pipeline_id=run_b.pipeline_id, run_id=run_b.id, step_index=0,
                                 kind="train", status="running", log=["secret"]))
    own = publish(catalog.DatasetUpdated(project_id=a.id, dataset_id=mine.id, name="mine", status="ready"))
    got = until(sock, own)
    assert [e["type"] for e in got if e.get("id")] == ["dataset_updated"]


def test_the_events_api_gives_object_topics_only_when_asked_and_allowed(client, teams):
    from tests.factories import DatasetFactory, PipelineFactory, PipelineRunFactory

    a, b, ann, _, _ = teams
    run_a = PipelineRunFactory(pipeline=PipelineFactory(dataset=DatasetFactory(project=a)))
    run_b = PipelineRunFactory(pipeline=PipelineFactory(dataset=DatasetFactory(project=b)))
    start = bus.latest_id()
    step = {"step_index": 0, "kind": "train", "status": "running", "log": ["line"]}
    mine = publish(catalog.PipelineStep(project_id=a.id, pipeline_id=run_a.pipeline_id, run_id=run_a.id, **step))
    publish(catalog.PipelineStep(project_id=b.id, pipeline_id=run_b.pipeline_id, run_id=run_b.id, **step))
    client.force_login(ann)
    assert client.get(f"/api/events/?after={start}").json()["events"] == []  # step lines: the run's topic only
    page = client.get(f"/api/events/?after={start}&topics=pipeline_run.{run_a.id},pipeline_run.{run_b.id}").json()
    assert ids(page["events"]) == {mine} and page["refused_topics"] == [f"pipeline_run.{run_b.id}"]
    event_record.expect(page["events"], "pipeline_step", project_id=a.id, run_id=run_a.id)


def test_membership_changes_reach_an_open_socket_within_5_seconds(open_socket, client, teams):
    from mlops_dashboard.models import Membership
    from tests.factories import DatasetFactory

    a, b, ann, _, _ = teams
    dataset_b = DatasetFactory(project=b)
    sock = open_socket(cookie=session_cookie(client, ann))
    joined(sock)
    sock.send({"type": "subscribe", "topics": [f"dataset.{dataset_b.id}"]})
    assert sock.recv()["code"] == "forbidden_topic"

    membership = Membership.objects.create(project=b, user=ann, role="viewer")
    added = sock.expect("projects_changed", timeout=5, user_id=ann.id)
    assert {(p["slug"], p["role"]) for p in added["projects"]} == {("team-a", "viewer"), ("team-b", "viewer")}
    assert set(added["projects"][0]) == {"id", "name", "slug", "role"}
    now_mine = publish(catalog.DatasetCreated(project_id=b.id, dataset_id=dataset_b.id, name="b.csv"))
    got = sock.recv_until(lambda e: e.get("id") == now_mine, timeout=5)
    event_record.expect(got, "dataset_created", project_id=b.id, name="b.csv")
    sock.send({"type": "subscribe", "topics": [f"dataset.{dataset_b.id}"]})  # now allowed
    joined(sock)

    membership.role = "editor"
    membership.save()
    sock.expect("projects_changed", timeout=5, user_id=ann.id,
                projects=[{"slug": "team-a", "role": "viewer"}, {"slug": "team-b", "role": "editor"}])

    membership.delete()
    removed = sock.expect("projects_changed", timeout=5, user_id=ann.id)
    assert [p["slug"] for p in removed["projects"]] == ["team-a"]
    # Gone from the project's topic and from its objects' topics alike.
    publish(catalog.DatasetUpdated(project_id=b.id, dataset_id=dataset_b.id, name="b.csv", status="ready"))
    end = marker()
    assert [e["type"] for e in until(sock, end, timeout=5) if e.get("id")] == ["service_health"]


def test_staff_get_every_project_and_new_ones(open_socket, client, teams):
    from tests.factories import ProjectFactory

    a, b, ann, _, root = teams
    cookie = session_cookie(client, root)
    start = bus.latest_id()
    sock = open_socket(cookie=cookie)
    joined(sock)
    sent = project_events(a, b, 2)
    end = marker()
    got = ids(until(sock, end))
    assert set(sent["a"]) | set(sent["b"]) | set(sent["staff"]) <= got
    client.force_login(root)
    assert set(sent["a"]) | set(sent["b"]) | set(sent["staff"]) <= ids(
        client.get(f"/api/events/?after={start}&limit=1000").json()["events"])

    c = ProjectFactory(slug="team-c")
    changed = sock.expect("projects_changed", timeout=5, user_id=root.id)
    assert {"team-a", "team-b", "team-c"} <= {p["slug"] for p in changed["projects"]}
    assert {p["role"] for p in changed["projects"]} == {"admin"}
    news = publish(catalog.DatasetCreated(project_id=c.id, dataset_id=77, name="c.csv"))
    sock.recv_until(lambda e: e.get("id") == news, timeout=5)


def test_a_project_token_narrows_the_socket_and_a_scoped_token_opens_none(open_socket, teams):
    from tests.factories import ApiTokenFactory, member

    a, b, ann, _, _ = teams
    member(ann, "viewer", b)
    sock = open_socket(token=ApiTokenFactory(user=ann, project=a).key, origin=None)
    joined(sock)
    theirs = publish(catalog.DatasetCreated(project_id=b.id, dataset_id=5, name="b.csv"))
    mine = publish(catalog.DatasetCreated(project_id=a.id, dataset_id=6, name="a.csv"))
    got = until(sock, mine)
    assert theirs not in ids(got)
    sock.send({"type": "subscribe", "topics": [f"project.{b.id}"]})
    assert sock.recv()["code"] == "forbidden_topic"

    for scope in ("predict", "telemetry"):
        narrow = open_socket(token=ApiTokenFactory(user=ann, scope=scope).key, origin=None)
        error = narrow.recv()
        assert (error["type"], error["code"]) == ("error", "forbidden_scope")
        with pytest.raises(ConnectionClosed):
            narrow.recv(timeout=10)
        assert narrow.conn.close_code == 4403
