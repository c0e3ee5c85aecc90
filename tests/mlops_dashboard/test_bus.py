"""The bus: ids, the bounded log, coalescing, and publishing from other processes."""

import json
import subprocess
import sys
import threading
import time

import pytest

from mlops_dashboard.events import bus, catalog, publish
from tests import procs


def created(n):
    return catalog.DatasetCreated(project_id=1, dataset_id=n, name=f"d{n}")


def progress(job, pct, status="running"):
    return catalog.JobProgress(project_id=1, job_id=job, dataset_id=1, progress=float(pct), status=status,
                               current_step="step")


def test_ids_strictly_increase_and_the_log_keeps_the_events():
    ids = [publish(created(n)) for n in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    log = bus.read_after(ids[0])
    assert [e[0] for e in log.events] == ids[1:]
    event = json.loads(log.events[0][2])
    assert event["type"] == "dataset_created" and event["id"] == ids[1] and event["dataset_id"] == 1
    assert event["timestamp"].endswith("Z") and len(event["timestamp"]) == len("2026-11-21T23:00:00.000000Z")
    assert log.events[0][1] == ["project.1", "dataset.1"]
    assert log.latest_id == ids[-1] and not log.gap


def test_ids_are_unique_and_ordered_across_concurrent_processes(redis_client):
    script = (
        "import django, os; django.setup();"
        "from mlops_dashboard.events import publish, catalog;"
        "print(*[publish(catalog.DatasetCreated(project_id=1, dataset_id=1, name='p')) for _ in range(200)])"
    )
    before = bus.latest_id()
    children = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [list(map(int, c.communicate(timeout=60)[0].split())) for c in children]
    all_ids = [i for out in outputs for i in out]
    assert len(all_ids) == 600 and len(set(all_ids)) == 600
    for out in outputs:
        assert out == sorted(out)
    assert sorted(all_ids) == list(range(before + 1, before + 601))  # no id skipped


def test_log_is_bounded(settings):
    settings.EVENT_LOG_SIZE = 10
    ids = [publish(created(n)) for n in range(25)]
    log = bus.read_after(0)
    assert [e[0] for e in log.events] == ids[-10:]


def test_gap_is_reported_past_the_horizon(settings):
    settings.EVENT_LOG_SIZE = 3
    ids = [publish(created(n)) for n in range(6)]
    assert bus.read_after(ids[0]).gap
    assert not bus.read_after(ids[2]).gap


def test_ids_keep_rising_after_redis_loses_its_data(redis_client):
    before = publish(created(1))
    for key in bus.keys():
        redis_client.delete(key)
    after = publish(created(2))
    assert after > before
    assert bus.read_after(before).gap  # what happened in between is unknown: the client must reload


def test_a_read_after_redis_lost_its_data_resumes_above_every_old_id(redis_client):
    """Nothing published since Redis came back empty: the gap's `latest_id` is still a resume point
    above every id sent before, and resuming from it misses nothing and is no second gap."""
    before = publish(created(1))
    for key in bus.keys():
        redis_client.delete(key)
    log = bus.read_after(before)
    assert log.gap and log.latest_id > before
    assert not bus.read_after(log.latest_id).gap
    after = publish(created(2))
    assert [e[0] for e in bus.read_after(log.latest_id).events] == [after]


def test_only_catalog_events_can_be_published():
    with pytest.raises(catalog.EventError):
        publish({"type": "dataset_created", "dataset_id": 1})
    with pytest.raises(catalog.EventError, match="connection event"):
        publish(catalog.Pong(ts=1, server_ts=1.0))


def test_publish_without_redis_returns_none_and_does_not_raise(settings):
    bus.reset_clients()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.EVENT_PUBLISH_RETRY_SECONDS = 0.5
    try:
        started = time.monotonic()
        assert publish(created(1)) is None
        assert publish(progress(905, 1)) is None
        assert time.monotonic() - started >= 1.0  # each retried for half a second, then dropped
    finally:
        bus.reset_clients()


def test_progress_is_coalesced_first_and_last_always_sent(settings):
    settings.EVENT_PROGRESS_INTERVAL = 0.2
    bus.reset_clients()
    start = bus.latest_id()
    started = time.monotonic()
    for pct in range(0, 101):
        publish(progress(901, pct))
        time.sleep(0.002)  # ~0.3 s of reporting (longer on a slow machine): 101 updates
    reporting = time.monotonic() - started
    publish(catalog.JobCompleted(project_id=1, job_id=901, dataset_id=1, status="succeeded", duration=0.3))
    events = [json.loads(t) for _, _, t in bus.read_after(start).events]
    progress_values = [e["progress"] for e in events if e["type"] == "job_progress"]
    assert progress_values[0] == 0.0 and progress_values[-1] == 100.0
    # At most one per 0.2 s of the time the reporting took, plus the first and the last.
    assert len(progress_values) <= 2 + reporting / settings.EVENT_PROGRESS_INTERVAL + 1
    assert events[-1]["type"] == "job_completed"  # the end comes after the last progress


def test_held_progress_is_flushed_by_the_timer(settings):
    settings.EVENT_PROGRESS_INTERVAL = 2  # long enough for the second publish to come within it
    bus.reset_clients()
    start = bus.latest_id()
    publish(progress(902, 10))
    assert publish(progress(902, 20)) is None  # held

    def flushed():
        values = [json.loads(t)["progress"] for _, _, t in bus.read_after(start).events]
        return values if len(values) > 1 else None

    values = procs.wait_for(flushed, timeout=60, message="the held progress to be flushed")
    assert values == [10.0, 20.0]


def test_progress_of_different_jobs_is_not_coalesced_together(settings):
    settings.EVENT_PROGRESS_INTERVAL = 5
    bus.reset_clients()
    assert publish(progress(903, 1)) is not None
    assert publish(progress(904, 1)) is not None


def test_publish_is_thread_safe():
    start = bus.latest_id()
    threads = [threading.Thread(target=lambda: [publish(created(1)) for _ in range(50)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bus.read_after(start).events) == 200


@pytest.mark.django_db(transaction=True)
def test_publish_on_commit_waits_for_the_commit():
    from django.db import transaction

    from mlops_dashboard.events import publish_on_commit

    start = bus.latest_id()
    with transaction.atomic():
        publish_on_commit(created(5))
        assert bus.read_after(start).events == []
    assert len(bus.read_after(start).events) == 1


def test_a_view_sees_its_own_topics_and_the_objects_granted_to_it():
    from mlops_dashboard.events.topics import View

    member = View(user_id=1, project_ids=frozenset({3}), all_projects=False, staff=False)
    assert member.sees(["dashboard"]) and member.sees(["user.1"]) and member.sees(["project.3", "dataset.4"])
    assert not member.sees(["user.2"]) and not member.sees(["project.4", "dataset.9"]) and not member.sees(["staff"])
    assert not member.sees(["pipeline_run.5"]) and member.sees(["pipeline_run.5"], {"pipeline_run.5"})
    assert not member.sees(["project.x"]) and not member.sees([])
    assert member.base_topics() == {"dashboard", "user.1", "project.3"}
    admin = View(user_id=2, project_ids=frozenset({3}), all_projects=True, staff=True)
    assert admin.sees(["project.99"]) and admin.sees(["staff"]) and not admin.sees(["user.1"])
    assert admin.base_topics() == {"dashboard", "user.2", "project.3", "staff"}


def _log_text_bytes(redis_client) -> int:
    return sum(len(m) for m in redis_client.zrange(bus.keys()[1], 0, -1))


def test_log_is_bounded_in_bytes_and_reports_the_gap(settings, redis_client):
    settings.EVENT_LOG_SIZE = 1000
    settings.EVENT_LOG_MAX_BYTES = 50_000
    ids = [publish(catalog.DatasetCreated(project_id=1, dataset_id=n, name="x" * 10_000)) for n in range(12)]
    log = bus.read_after(ids[0] - 1)
    kept = [e[0] for e in log.events]
    assert kept == ids[-len(kept):] and 3 <= len(kept) <= 5  # newest first kept, ~10 KB each
    assert log.gap  # the first events fell out of the log: a client resuming there must reload
    assert not bus.read_after(kept[0] - 1).gap
    assert _log_text_bytes(redis_client) <= 50_000
    assert int(redis_client.get(bus.log_bytes_key())) == _log_text_bytes(redis_client)


def test_log_byte_count_heals_when_the_log_is_lost(settings, redis_client):
    settings.EVENT_LOG_MAX_BYTES = 50_000
    publish(created(1))
    redis_client.delete(bus.keys()[1])  # the log gone, its byte count left behind
    redis_client.set(bus.log_bytes_key(), 10**9)
    publish(created(2))
    ids = [publish(created(n)) for n in range(3, 6)]
    assert [e[0] for e in bus.read_after(ids[0] - 1).events] == ids  # not trimmed to nothing on every publish
    assert int(redis_client.get(bus.log_bytes_key())) == _log_text_bytes(redis_client)
    redis_client.delete(bus.log_bytes_key())  # an upgrade: the log without its count
    publish(created(6))
    assert int(redis_client.get(bus.log_bytes_key())) == _log_text_bytes(redis_client)


def test_an_oversized_event_has_its_largest_list_shortened_with_a_count(settings):
    start = bus.latest_id()
    findings = [f"finding {i} " + "y" * 100 for i in range(5_000)]
    publish(catalog.QualityAssessment(project_id=1, dataset_id=1, quality_score=50.0,
                                      stats={"findings": findings, "weights": {"a": 1}}))
    publish(catalog.TrainingFailed(project_id=1, job_id=1, error="e", error_code="INTERNAL", stage_failed="x",
                                   progress_when_failed=1.0, suggestions=["s" * 50] * 10_000))
    (_, _, quality), (_, _, failed) = bus.read_after(start).events
    assert len(quality) <= settings.WS_MAX_MESSAGE_BYTES and len(failed) <= settings.WS_MAX_MESSAGE_BYTES
    stats = json.loads(quality)["stats"]
    assert stats["findings"] == findings[: len(stats["findings"])] and len(stats["findings"]) > 100
    assert stats["findings_truncated"] == 5_000 - len(stats["findings"]) and stats["weights"] == {"a": 1}
    failed = json.loads(failed)
    assert failed["suggestions_truncated"] == 10_000 - len(failed["suggestions"])


def test_an_oversized_string_fails_loudly_under_test_and_is_cut_in_production(settings):
    from mlops_dashboard.events import frames

    huge = catalog.DatasetCreated(project_id=1, dataset_id=1, name="n" * 100_000)
    assert settings.EVENT_OVERSIZE_STRICT  # tests/env.py
    with pytest.raises(frames.EventTooLarge, match="not capped where it entered"):
        publish(huge)
    settings.EVENT_OVERSIZE_STRICT = False
    start = bus.latest_id()
    assert publish(huge) is not None
    (_, _, text), = bus.read_after(start).events
    assert len(text) <= settings.WS_MAX_MESSAGE_BYTES and json.loads(text)["name"].endswith("…")
