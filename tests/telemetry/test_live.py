"""Live points: `telemetry_points` coalesced per source (at most one a second per process, every point
once, in time order), cut to a frame with `truncated`, on `telemetry.<source id>` for those who may
view the source, and on the project's topic only while its Telemetry page is watched. Real Redis,
real uvicorn server and sockets; the publisher runs where the ingest runs (here: the test process,
as in a Celery worker)."""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from mlops_dashboard.events import bus, catalog, publish
from telemetry import live, services
from telemetry.services import SeriesBatch
from tests import events as event_record
from tests import procs
from tests.conftest import session_cookie as _session_cookie

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def session_cookie(client, user) -> str:
    return _session_cookie(client.__class__(), user)


def telemetry_events(events, source_id) -> list[dict]:
    return [e for e in events("telemetry_points") if e["source_id"] == source_id]


def wait_for(condition, timeout=30.0, what="condition"):
    procs.wait_for(condition, timeout=timeout, message=what)


# --- the publisher, in this process -----------------------------------------------------------------


@pytest.fixture
def publisher():
    pub = live.LivePublisher()
    yield pub
    pub.stop()


def test_coalesced_one_event_a_second_per_source_with_every_point_once_in_order(publisher, events):
    """50 batches a second for 3 s, two sources: each source's events are at most one a second
    (their own timestamps a second apart), and carry every point exactly once, in time order."""
    sent = {1: [], 2: []}
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < 3.0:
        for source_id in (1, 2):
            # Two metrics, the second a millisecond before the first: each event sorts them by time.
            points = [[T0_MS + 20 * i + 1, float(i)]]
            earlier = [[T0_MS + 20 * i, -float(i)]]
            publisher.offer(7, [SeriesBatch(source_id, f"press-{source_id}", 10 * source_id, "temperature", points),
                                SeriesBatch(source_id, f"press-{source_id}", 10 * source_id + 1, "power", earlier)])
            sent[source_id] += [["power", *earlier[0]], ["temperature", *points[0]]]
        i += 1
        time.sleep(0.02)
    seconds = time.monotonic() - start
    assert publisher.flush()
    for source_id in (1, 2):
        got = telemetry_events(events, source_id)
        assert 2 <= len(got) <= math.ceil(seconds) + 1, [len(e["points"]) for e in got]
        stamps = [datetime.fromisoformat(e["timestamp"]) for e in got]
        # The flush at the end may go early; every other pair is a second apart.
        assert all((b - a).total_seconds() >= 0.95 for a, b in zip(stamps[:-2], stamps[1:-1], strict=True))
        assert [p for e in got for p in e["points"]] == sent[source_id]
        assert not any(e["truncated"] for e in got)
        assert all("project_id" not in e for e in got)  # nobody watches project 7
    event_record.expect(got, "telemetry_points", source_id=2, source="press-2", truncated=False)


def test_the_first_points_of_a_quiet_source_go_out_at_once_the_next_at_the_end_of_the_second(publisher, events):
    batch = SeriesBatch(5, "press-5", 50, "temperature", [[T0_MS, 1.0]])
    publisher.offer(7, [batch])
    wait_for(lambda: len(telemetry_events(events, 5)) == 1, what="the first event, without a flush")
    publisher.offer(7, [SeriesBatch(5, "press-5", 50, "temperature", [[T0_MS + 1000, 2.0]])])
    # Held for the rest of the second, then sent by the thread on its own (no flush).
    wait_for(lambda: len(telemetry_events(events, 5)) == 2, what="the held window")
    first, second = telemetry_events(events, 5)
    gap = datetime.fromisoformat(second["timestamp"]) - datetime.fromisoformat(first["timestamp"])
    assert gap.total_seconds() >= 0.95
    assert [e["points"] for e in telemetry_events(events, 5)] == [[["temperature", T0_MS, 1.0]],
                                                                 [["temperature", T0_MS + 1000, 2.0]]]


def test_a_window_too_large_for_a_frame_keeps_its_newest_points_with_truncated(publisher, events):
    points = [[T0_MS + k, k + 0.123456789] for k in range(20_000)]
    publisher.offer(7, [SeriesBatch(9, "press-9", 90, "vibration_rms_x", points)])
    assert publisher.flush()
    (event,) = telemetry_events(events, 9)
    event_record.expect([event], "telemetry_points", source_id=9, truncated=True)
    frame = json.dumps(event, separators=(",", ":"))
    assert settings.WS_MAX_MESSAGE_BYTES - 2000 < len(frame) <= settings.WS_MAX_MESSAGE_BYTES
    assert "points_truncated" not in event  # cut here, on purpose, not by the bus's generic shortening
    kept = event["points"]
    assert kept == [["vibration_rms_x", ms, v] for ms, v in points[-len(kept):]]  # the newest, in order


def test_many_batches_past_a_frame_keep_the_newest_points_in_time_order(publisher, events):
    """A busy source's batches within one second (two metrics, then a late batch of old readings):
    the window holds at most about two frames of them, and its event has the newest points of all,
    in time order, with `truncated`."""
    sent = []
    publisher.interval = 3600.0  # nothing leaves before the flush
    publisher.last_sent[9] = time.monotonic()
    for k in range(12):
        metric = ("temperature", "power")[k % 2]
        points = [[T0_MS + 1000 * k + i, float(k * 1000 + i)] for i in range(1000)]
        sent += [[metric, ms, v] for ms, v in points]
        publisher.offer(7, [SeriesBatch(9, "press-9", 90 + k % 2, metric, points)])
    late = [[T0_MS + i, -1.0] for i in range(100)]
    sent += [["temperature", ms, v] for ms, v in late]
    publisher.offer(7, [SeriesBatch(9, "press-9", 90, "temperature", late)])
    cap = settings.WS_MAX_MESSAGE_BYTES // live._MIN_POINT_BYTES
    assert publisher.windows[9].held <= 2 * cap + 1000
    assert publisher.flush()
    (event,) = telemetry_events(events, 9)
    event_record.expect([event], "telemetry_points", source_id=9, truncated=True)
    kept = event["points"]
    assert len(kept) > 1000
    newest = sorted(sent, key=lambda p: p[1])[-len(kept):]
    assert kept == newest


def test_shutdown_sends_the_held_window_at_once(events):
    pub = live.LivePublisher(interval=3600)  # a window that would otherwise wait an hour
    pub.offer(7, [SeriesBatch(11, "press-11", 110, "temperature", [[T0_MS, 1.0]])])
    wait_for(lambda: len(telemetry_events(events, 11)) == 1, what="the first event")
    pub.offer(7, [SeriesBatch(11, "press-11", 110, "temperature", [[T0_MS + 1, 2.0]])])
    pub.stop()
    assert [e["points"] for e in telemetry_events(events, 11)][-1] == [["temperature", T0_MS + 1, 2.0]]
    assert not pub.thread.is_alive()


EXITING_PROCESS = """
import django
django.setup()
from telemetry import live
from telemetry.services import SeriesBatch
from telemetry.signals import points_ingested
T = {t0}
import time
def ingest(k):
    points_ingested.send(sender=None, project_id=7, batches=[SeriesBatch(31, "press-31", 310, "temperature", [[T + k, float(k)]])])
ingest(0)  # a quiet source: sent at once
while 31 not in live.publisher().last_sent:
    time.sleep(0.01)
ingest(1)  # within the second: held
ingest(2)
# ... and the process ends at once, as a server or a pool process does: the held window goes out.
"""


def test_a_process_that_exits_sends_its_held_window_first(events):
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", EXITING_PROCESS.format(t0=T0_MS)], env=procs.child_env(), cwd=procs.ROOT,
                   check=True, timeout=120)
    got = telemetry_events(events, 31)
    assert [p for e in got for p in e["points"]] == [["temperature", T0_MS + k, float(k)] for k in range(3)]
    assert len(got) == 2


def test_the_ingest_signal_feeds_the_process_publisher(transactional_db, user, project, events):
    services.points_ingest(user=user, project=project, readings=[
        services.Reading(source="press-07", metric="temperature", timestamp=T0 + timedelta(seconds=s), value=s)
        for s in (2, 0, 1)])
    source_id = project_source_id(project, "press-07")
    wait_for(lambda: telemetry_events(events, source_id), what="telemetry_points of the ingest")
    event_record.expect(telemetry_events(events, source_id), "telemetry_points", source_id=source_id,
                        source="press-07",
                        points=[["temperature", T0_MS + ms, float(v)] for ms, v in ((0, 0), (1000, 1), (2000, 2))])


def project_source_id(project, name) -> int:
    from telemetry.models import Source

    return Source.objects.get(project=project, name=name).pk


# --- sockets ---------------------------------------------------------------------------------------


@pytest.fixture
def teams(server):
    """Projects A and B; ann an editor of A, ben an editor of B; a source of each."""
    from tests.factories import ProjectFactory, SourceFactory, UserFactory, member

    a, b = ProjectFactory(slug="team-a"), ProjectFactory(slug="team-b")
    ann, ben = UserFactory(username="ann"), UserFactory(username="ben")
    member(ann, "editor", a)
    member(ben, "editor", b)
    return a, b, ann, ben, SourceFactory(project=a, name="press-07"), SourceFactory(project=b, name="press-07")


def ingest(user, project, *values, source="press-07", at=0):
    services.points_ingest(user=user, project=project, readings=[
        services.Reading(source=source, metric="temperature", timestamp=T0 + timedelta(seconds=at + k), value=v)
        for k, v in enumerate(values)])


def marker() -> int:
    return publish(catalog.ServiceHealth(services=[{"name": "marker", "status": "ok", "at": time.time()}]))


def until(sock, event_id, timeout=15.0) -> list[dict]:
    return sock.recv_until(lambda e: e.get("id") == event_id, timeout=timeout)


def joined(sock) -> None:
    sock.send({"type": "ping", "ts": 0})
    sock.recv_until(lambda e: e["type"] == "pong")


def telemetry_of(got, source_id=None) -> list[dict]:
    return [e for e in got if e.get("type") == "telemetry_points" and source_id in (None, e["source_id"])]


def settle():
    """Let the process publisher's window and watch cache (a second each) run out."""
    live.publisher().flush()
    time.sleep(live.INTERVAL + live.WATCH_CACHE_SECONDS + 0.1)


def test_a_source_topic_is_for_those_who_may_view_the_source(open_socket, client, teams):
    a, b, ann, ben, source_a, source_b = teams
    ann_sock = open_socket(cookie=session_cookie(client, ann))
    ben_sock = open_socket(cookie=session_cookie(client, ben))
    ann_sock.send({"type": "subscribe", "topics": [f"telemetry.{source_a.id}"]})
    joined(ann_sock)
    for topic in (f"telemetry.{source_a.id}", "telemetry.987654321", f"telemetry_project.{a.id}"):
        ben_sock.send({"type": "subscribe", "topics": [topic]})
        error = ben_sock.recv()
        assert (error["type"], error["code"]) == ("error", "forbidden_topic"), topic
    ingest(ann, a, 1.0, 2.0)
    ingest(ben, b, 9.0)  # B's source of the same name: another topic
    got = ann_sock.recv_until(lambda e: e.get("type") == "telemetry_points", timeout=15)
    event_record.expect(got, "telemetry_points", source_id=source_a.id, source="press-07",
                        points=[["temperature", T0_MS, 1.0], ["temperature", T0_MS + 1000, 2.0]])
    end = marker()
    assert not telemetry_of(until(ben_sock, end))
    assert all(e["source_id"] == source_a.id for e in telemetry_of(until(ann_sock, end)))


def test_the_project_topic_gets_them_only_while_the_telemetry_page_is_watched(open_socket, client, teams):
    a, b, ann, ben, source_a, _ = teams
    settle()
    page = open_socket(cookie=session_cookie(client, ann))  # another page of A's: on project.A
    outsider = open_socket(cookie=session_cookie(client, ben))
    joined(page)
    joined(outsider)

    ingest(ann, a, 1.0)
    live.publisher().flush()
    end = marker()
    assert not telemetry_of(until(page, end)), "nobody watches yet: not on the project's topic"

    watcher = open_socket(cookie=session_cookie(client, ann))
    watcher.send({"type": "subscribe", "topics": [f"telemetry_project.{a.id}"]})
    joined(watcher)
    settle()
    ingest(ann, a, 2.0, at=10)
    got = page.recv_until(lambda e: e.get("type") == "telemetry_points", timeout=15)
    event_record.expect(got, "telemetry_points", source_id=source_a.id, project_id=a.id,
                        points=[["temperature", T0_MS + 10_000, 2.0]])
    watcher.expect("telemetry_points", timeout=15, source_id=source_a.id, project_id=a.id)
    end = marker()
    assert not telemetry_of(until(outsider, end)), "another project's member never gets them"

    watcher.close()  # the page is left: the watch ends with its socket
    settle()
    ingest(ann, a, 3.0, at=20)
    live.publisher().flush()
    end = marker()
    assert not telemetry_of(until(page, end))


def test_replay_after_last_event_id_covers_a_followed_source_and_nothing_leaks(open_socket, client, teams):
    a, b, ann, ben, source_a, source_b = teams
    watcher = open_socket(cookie=session_cookie(client, ann))
    watcher.send({"type": "subscribe", "topics": [f"telemetry_project.{a.id}"]})
    joined(watcher)
    settle()
    start = bus.latest_id()
    ingest(ann, a, 1.0, 2.0)
    ingest(ben, b, 5.0)
    live.publisher().flush()
    end = marker()
    logged = [json.loads(text) for _, _, text in bus.read_after(start).events]
    ours = telemetry_of(logged, source_a.id)
    assert ours and all(e["project_id"] == a.id for e in ours)

    # A socket that follows the source (named on connect, as realtime.js does) gets them in its replay.
    ann_cookie, ben_cookie = session_cookie(client, ann), session_cookie(client, ben)
    replayed = until(open_socket(cookie=ann_cookie, path=f"/ws/?last_event_id={start}&topics=telemetry.{source_a.id}"), end)
    assert [e["id"] for e in telemetry_of(replayed)] == [e["id"] for e in ours]
    event_record.expect(replayed, "telemetry_points", source_id=source_a.id, project_id=a.id)

    # B's member: refused the topic on connect, and nothing of A's by replay, live or the events API.
    ben_sock = open_socket(cookie=ben_cookie, path=f"/ws/?last_event_id={start}&topics=telemetry.{source_a.id}")
    first = ben_sock.recv()
    assert (first["type"], first["code"]) == ("error", "forbidden_topic")
    ben_got = until(ben_sock, end)
    assert {e["source_id"] for e in telemetry_of(ben_got)} <= {source_b.id}
    client.force_login(ben)
    page = client.get(f"/api/events/?after={start}&limit=1000&topics=telemetry.{source_a.id}").json()
    assert page["refused_topics"] == [f"telemetry.{source_a.id}"]
    assert {e["source_id"] for e in telemetry_of(page["events"])} <= {source_b.id}

    client.force_login(ann)
    page = client.get(f"/api/events/?after={start}&limit=1000&topics=telemetry.{source_a.id}").json()
    assert [e["id"] for e in telemetry_of(page["events"], source_a.id)] == [e["id"] for e in ours]
    assert not telemetry_of(page["events"], source_b.id)


def test_ingest_through_the_api_at_50_batches_a_second_reaches_a_socket_coalesced(open_socket, client, teams, server):
    """The publisher of the ASGI server process: 3 s of POST /api/telemetry/ at 50 batches a second
    (from 4 clients at once, each on a schedule), with telemetry-scoped tokens as the demo plant sends
    them. The source's socket gets at most one event a second (+1), holding every point exactly once;
    each event in time order, and each client's points in the order it sent them."""
    import httpx

    from tests.factories import ApiTokenFactory

    a, _, ann, _, source_a, _ = teams
    key = ApiTokenFactory(user=ann, name="plant", scope="telemetry").key
    sock = open_socket(cookie=session_cookie(client, ann))
    sock.send({"type": "subscribe", "topics": [f"telemetry.{source_a.id}"]})
    joined(sock)
    rate, duration = 50, 3.0
    lock, counter, sent, failures = threading.Lock(), iter(range(10**6)), {}, []
    started = time.monotonic()

    def plant(n):
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Token {key}"}, timeout=30) as http:
            while True:
                with lock:
                    i = next(counter)
                due = started + i / rate
                if due - started >= duration:
                    return
                time.sleep(max(0.0, due - time.monotonic()))
                ms = T0_MS + 10 * i
                points = [{"source": "press-07", "metric": "temperature", "value": i + 0.5, "timestamp": ms + 1},
                          {"source": "press-07", "metric": "power", "value": -i - 0.5, "timestamp": ms}]
                response = http.post("/api/telemetry/", json={"project": a.id, "points": points})
                if response.status_code != 202:
                    failures.append(response.text)
                    return
                sent.setdefault(n, []).extend([["power", ms, -i - 0.5], ["temperature", ms + 1, i + 0.5]])

    clients = [threading.Thread(target=plant, args=(n,)) for n in range(4)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=120)
    seconds = time.monotonic() - started
    assert not failures, failures[:1]
    total = sum(len(points) for points in sent.values())
    assert total == 2 * rate * duration
    got = []
    while sum(len(e["points"]) for e in got) < total:
        got += telemetry_of(sock.recv_until(lambda e: e.get("type") == "telemetry_points", timeout=30), source_a.id)
    stream = [tuple(p) for e in got for p in e["points"]]
    assert sorted(stream) == sorted(tuple(p) for points in sent.values() for p in points)  # each exactly once
    for e in got:
        assert [p[1] for p in e["points"]] == sorted(p[1] for p in e["points"])
    for points in sent.values():
        mine = set(map(tuple, points))
        assert [p for p in stream if p in mine] == list(map(tuple, points))
    assert len(got) <= math.ceil(seconds) + 1, (seconds, [len(e["points"]) for e in got])
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in got]
    assert all((b - a).total_seconds() >= 0.95 for a, b in zip(stamps, stamps[1:], strict=False))
    event_record.expect(got, "telemetry_points", source_id=source_a.id, source="press-07", truncated=False)
    end = marker()
    assert not telemetry_of(until(sock, end), source_a.id)  # nothing more, no duplicate


def test_a_batch_larger_than_a_frame_reaches_the_socket_cut_with_truncated(open_socket, client, teams, server):
    """10,000 points in one request (TELEMETRY_MAX_POINTS): the event that reaches the socket is one
    frame under WS_MAX_MESSAGE_BYTES, holding the newest points, with `truncated` true."""
    import httpx

    from tests.factories import ApiTokenFactory

    a, _, ann, _, source_a, _ = teams
    key = ApiTokenFactory(user=ann, name="plant", scope="telemetry").key
    sock = open_socket(cookie=session_cookie(client, ann))
    sock.send({"type": "subscribe", "topics": [f"telemetry.{source_a.id}"]})
    joined(sock)
    points = [{"source": "press-07", "metric": "vibration", "value": k / 7, "timestamp": T0_MS + k}
              for k in range(settings.TELEMETRY_MAX_POINTS)]
    response = httpx.post(f"{server.url}/api/telemetry/", json={"project": a.id, "points": points},
                          headers={"Authorization": f"Token {key}"}, timeout=60)
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 30
    while True:
        text = sock.conn.recv(timeout=max(0.1, deadline - time.monotonic()))
        event = event_record.saw([json.loads(text)])[0]
        if event.get("type") == "telemetry_points":
            break
    assert len(text.encode()) <= settings.WS_MAX_MESSAGE_BYTES
    event_record.expect([event], "telemetry_points", source_id=source_a.id, truncated=True)
    kept = event["points"]
    assert 1000 < len(kept) < len(points)
    assert kept == [["vibration", p["timestamp"], p["value"]] for p in points[-len(kept):]]
