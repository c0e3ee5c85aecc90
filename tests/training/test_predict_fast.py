"""Predictions served from the API's own threads (fast_routes.py) with versions cached per process and
counts kept in Redis (training/counters.py): the same answers and counts as Django's full path, a
rollback and a revoked token honoured by a running server within a second, counts exact whether
flushed to the database or not, and none lost to a flush running alongside predictions."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from django.conf import settings
from django.test import Client

from mlops_dashboard.models import TokenScope
from mlops_dashboard.tokens import api_token_create
from tests.factories import ProjectFactory, UserFactory, member
from tests.mlops_dashboard.test_fast_routes import asgi_call
from training import api, counters, services
from training.models import ModelVersion

from .conftest import titanic_instances


@pytest.fixture
def served(transactional_db, titanic, train_version, user, clean_prediction_counters):
    """A deployed titanic model, alice's token, and a few rows of it."""
    version = train_version(titanic, name="titanic", algorithm="random_forest", epochs=3)
    services.model_version_deploy(user=None, version=version)
    _, key = api_token_create(user=user)
    instances, _ = titanic_instances(version, 3)
    return version, key, instances


def both_paths(path: str, raw: bytes, key: str) -> list[tuple[int, bytes]]:
    """The same request through Django's full stack (the test client), then through the ASGI
    application (a token call to a predict route: the fast path)."""
    headers = {"Authorization": f"Token {key}"}
    django = Client().post(path, data=raw, content_type="application/json", headers=headers)
    status, _, content = asgi_call("post", path, raw, {**headers, "Content-Type": "application/json"})
    return [(django.status_code, django.content), (status, content)]


def test_the_fast_path_predicts_refuses_and_counts_as_django_does(served):
    version, key, instances = served
    other = ProjectFactory(name="Elsewhere", slug="elsewhere")
    stranger = UserFactory(username="stranger")
    member(stranger, "viewer", other)
    _, stranger_key = api_token_create(user=stranger)
    _, telemetry_key = api_token_create(user=stranger, scope=TokenScope.TELEMETRY)
    good = json.dumps({"instances": instances}).encode()
    missing = json.dumps({"instances": [{k: v for k, v in instances[0].items() if k != "age"}]}).encode()
    cases = [
        ("by id", f"/api/models/{version.pk}/predict/", good, key, 200),
        ("by name", "/api/models/by-name/titanic/predict/", good, key, 200),
        ("by project", f"/api/projects/{version.project.slug}/models/titanic/predict/", good, key, 200),
        ("missing column", f"/api/models/{version.pk}/predict/", missing, key, 400),
        ("not json", f"/api/models/{version.pk}/predict/", b"{not json", key, 400),
        ("no instances", f"/api/models/{version.pk}/predict/", b'{"rows": []}', key, 400),
        ("unknown name", "/api/models/by-name/nobody/predict/", good, key, 404),
        ("unknown id", "/api/models/999999/predict/", good, key, 404),
        ("another project's version", f"/api/models/{version.pk}/predict/", missing, stranger_key, 404),
        ("another project's slug", f"/api/projects/{version.project.slug}/models/titanic/predict/", good,
         stranger_key, 404),
        ("a telemetry token", f"/api/models/{version.pk}/predict/", good, telemetry_key, 403),
        ("a bad token", f"/api/models/{version.pk}/predict/", good, "nope", 401),
    ]
    for name, path, raw, token, expected in cases:
        (django_status, django_body), (fast_status, fast_body) = both_paths(path, raw, token)
        assert django_status == fast_status == expected, (name, django_body, fast_body)
        assert json.loads(fast_body) == json.loads(django_body), name
    # Three requests of three rows answered on each path: counted alike.
    assert counters.overlay([ModelVersion.objects.get(pk=version.pk)])[0].prediction_count == 2 * 3 * 3


def test_a_body_over_the_limit_is_413_on_both_paths(served):
    version, key, _ = served
    raw = b" " * (api.MAX_PREDICT_BODY + 1)
    (django_status, django_body), (fast_status, fast_body) = both_paths(f"/api/models/{version.pk}/predict/", raw, key)
    assert django_status == fast_status == 413, (django_body, fast_body)


def _after_the_check_interval():
    time.sleep(settings.AUTH_CACHE_CHECK_SECONDS + 0.05)


def test_a_deploy_and_a_rollback_are_honoured_by_a_running_server_within_a_second(server, served, titanic,
                                                                                     train_version):
    first, key, instances = served
    second = train_version(titanic, name="titanic", algorithm="random_forest", epochs=3)
    url = "/api/models/by-name/titanic/predict/"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Token {key}"}, timeout=30) as http:
        for _ in range(3):  # cached by the server now
            assert http.post(url, json={"instances": instances}).json()["model_version"] == first.version
        services.model_version_deploy(user=None, version=second)
        _after_the_check_interval()
        assert http.post(url, json={"instances": instances}).json()["model_version"] == second.version
        services.model_version_deploy(user=None, version=ModelVersion.objects.get(pk=first.pk))  # the rollback
        _after_the_check_interval()
        assert http.post(url, json={"instances": instances}).json()["model_version"] == first.version


def test_a_revoked_token_cannot_predict_on_a_running_server_within_a_second(server, served):
    version, key, instances = served
    program = UserFactory(username="program")
    member(program, "viewer", version.project)
    token, other = api_token_create(user=program, scope=TokenScope.PREDICT)
    url = f"/api/models/{version.pk}/predict/"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(3):
            r = http.post(url, json={"instances": instances}, headers={"Authorization": f"Token {other}"})
            assert r.status_code == 200, r.text
        token.delete()
        _after_the_check_interval()
        r = http.post(url, json={"instances": instances}, headers={"Authorization": f"Token {other}"})
        assert r.status_code == 401, r.text


def test_counts_are_exact_before_and_after_a_flush_and_none_is_lost_to_one(served):
    """Four threads count while a fifth flushes again and again: the total shown is exact all along
    (the database's, or Redis's when larger), and the database's is exact after the last flush."""
    version, _, _ = served
    stop = threading.Event()
    flushes = []

    def flusher():
        while not stop.is_set():
            flushes.append(services.prediction_counts_flush())

    def counter():
        for _ in range(200):
            services.model_version_record_predictions(version=ModelVersion.objects.get(pk=version.pk), count=3)

    flushing = threading.Thread(target=flusher)
    flushing.start()
    threads = [threading.Thread(target=counter) for _ in range(4)]
    for t in threads:
        t.start()
    seen = []
    while any(t.is_alive() for t in threads):
        seen.append(counters.overlay([ModelVersion.objects.get(pk=version.pk)])[0].prediction_count)
    for t in threads:
        t.join()
    stop.set()
    flushing.join()
    assert sum(flushes) > 0  # the flush wrote while counts went on
    assert seen == sorted(seen)  # never went back
    assert counters.overlay([ModelVersion.objects.get(pk=version.pk)])[0].prediction_count == 4 * 200 * 3
    services.prediction_counts_flush()
    row = ModelVersion.objects.get(pk=version.pk)
    assert row.prediction_count == 4 * 200 * 3 and row.last_prediction_at is not None
    assert services.project_prediction_total(version.project_id) == 4 * 200 * 3


def test_counting_goes_on_when_redis_forgot_its_scripts(served, redis_client):
    """The count is sent before the model runs and read after it; a Redis that restarted (no
    scripts) gets the script loaded again, and nothing is lost."""
    version, _, instances = served
    model_version = ModelVersion.objects.get(pk=version.pk)
    services.model_version_predict(version=model_version, instances=instances)
    redis_client.script_flush()
    services.model_version_predict(version=model_version, instances=instances)
    services.model_version_predict(version=model_version, instances=instances)
    assert counters.overlay([ModelVersion.objects.get(pk=version.pk)])[0].prediction_count == 3 * len(instances)


def test_a_prediction_that_fails_after_it_was_counted_takes_its_count_back(served, monkeypatch):
    from training import trainer

    version, _, instances = served
    model_version = ModelVersion.objects.get(pk=version.pk)
    services.model_version_predict(version=model_version, instances=instances)

    def broken(*args, **kwargs):  # a model failing on rows its checks accepted
        raise RuntimeError("the model failed")

    monkeypatch.setattr(trainer, "predict_checked", broken)
    with pytest.raises(RuntimeError):
        services.model_version_predict(version=model_version, instances=instances)
    assert counters.overlay([ModelVersion.objects.get(pk=version.pk)])[0].prediction_count == len(instances)


# --- answered on the event loop (training/api_fast.py) ------------------------------------------


@pytest.fixture
def loop_ready(served, settings, redis_client):
    """The served model with a long cache check (a slow machine's pauses do not make the loop path
    step aside) and no throttle history for its user."""
    from mlops_dashboard import fast_routes

    settings.AUTH_CACHE_CHECK_SECONDS = 60
    for key in redis_client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:cache:*throttle_*", count=1000):
        redis_client.delete(key)
    yield served, fast_routes
    for key in redis_client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:cache:*throttle_*", count=1000):
        redis_client.delete(key)


def _call(path: str, raw: bytes, key: str, **extra) -> tuple[int, dict, bytes]:
    return asgi_call("post", path, raw, {"Authorization": f"Token {key}", "Content-Type": "application/json",
                                         **extra})


def test_the_loop_answers_byte_for_byte_as_the_thread_path(loop_ready, monkeypatch):
    """Each of the three prediction URLs, once its token, version and model are cached: answered on
    the event loop, with the status, headers and body the thread path (DRF's view) gives."""
    (version, key, instances), fast_routes = loop_ready
    raw = json.dumps({"instances": instances}).encode()
    for path in (f"/api/models/{version.pk}/predict/", "/api/models/by-name/titanic/predict/",
                 f"/api/projects/{version.project.slug}/models/titanic/predict/"):
        first = _call(path, raw, key)  # caches the token, the lookups and the model
        assert first[0] == 200, first
        before = fast_routes.answered_on_loop
        on_loop = _call(path, raw, key, Accept="application/json")
        assert fast_routes.answered_on_loop == before + 1, path
        with monkeypatch.context() as m:
            m.setattr(fast_routes, "_ON_LOOP", {})
            on_thread = _call(path, raw, key, Accept="application/json")
        assert fast_routes.answered_on_loop == before + 1, path
        assert on_loop == on_thread, path
        assert on_loop[1]["content-type"] == "application/json" and on_loop[1]["x-frame-options"] == "DENY"
    # 3 URLs x (first, loop, thread) x 3 rows: every answer counted once.
    assert counters.overlay([ModelVersion.objects.get(pk=version.pk)])[0].prediction_count == 3 * 3 * 3


def test_what_the_loop_does_not_answer_gets_the_thread_paths_answer(loop_ready, monkeypatch):
    """With the token and model cached, requests the loop leaves to the view (bad rows, bad JSON, a long
    integer, another Accept, a query string, a stranger) get exactly the thread path's answer, and
    are counted once."""
    (version, key, instances), fast_routes = loop_ready
    stranger = UserFactory(username="stranger")
    member(stranger, "viewer", ProjectFactory(name="Elsewhere", slug="elsewhere"))
    _, stranger_key = api_token_create(user=stranger)
    path = f"/api/models/{version.pk}/predict/"
    good = json.dumps({"instances": instances[:1]}).encode()
    assert _call(path, good, key)[0] == 200
    assert _call(path, good, stranger_key)[0] == 404  # the stranger's token is cached now
    missing = json.dumps({"instances": [{k: v for k, v in instances[0].items() if k != "age"}]}).encode()
    long_int = json.dumps({"instances": [{**instances[0], "age": 10 ** 30}]}).encode()
    cases = [
        ("missing column", path, missing, key, {}, 400),
        ("extra field", path, json.dumps({"instances": instances[:1], "x": 1}).encode(), key, {}, 400),
        ("empty list", path, b'{"instances": []}', key, {}, 400),
        ("not json", path, b"{not json", key, {}, 400),
        ("a long integer (read by json, not orjson)", path, long_int, key, {}, 200),
        ("html asked for", path, good, key, {"Accept": "text/html"}, 200),
        ("a query string", path + "?format=json", good, key, {}, 200),
        ("a stranger", path, good, stranger_key, {}, 404),
    ]
    before = fast_routes.answered_on_loop
    answers = [_call(p, raw, token, **extra) for _, p, raw, token, extra, _ in cases]
    assert fast_routes.answered_on_loop == before
    with monkeypatch.context() as m:
        m.setattr(fast_routes, "_ON_LOOP", {})
        expected = [_call(p, raw, token, **extra) for _, p, raw, token, extra, _ in cases]
    for (name, *_, status), answer, thread in zip(cases, answers, expected):
        assert answer[0] == status, (name, answer)
        if name == "html asked for":  # DRF's browsable page: a token of its own in each
            assert answer[1]["content-type"] == thread[1]["content-type"] == "text/html; charset=utf-8"
        else:
            assert answer == thread, name
    # Each request answered once, by the thread path: the first, then 3 of the cases, twice each.
    assert counters.overlay([ModelVersion.objects.get(pk=version.pk)])[0].prediction_count == 1 + 2 * 3


def test_the_loop_counts_each_request_once_against_the_users_throttle(loop_ready, settings):
    (version, key, instances), fast_routes = loop_ready
    settings.API_THROTTLE_USER = "5/minute"
    path = f"/api/models/{version.pk}/predict/"
    raw = json.dumps({"instances": instances[:1]}).encode()
    assert _call(path, raw, key)[0] == 200  # the thread path: 1 of 5
    before = fast_routes.answered_on_loop
    statuses = [_call(path, raw, key) for _ in range(6)]
    assert [s for s, _, _ in statuses] == [200] * 4 + [429] * 2
    assert fast_routes.answered_on_loop == before + 4
    refused = statuses[-1]
    assert refused[1]["content-type"] == "application/problem+json" and 0 < int(refused[1]["retry-after"]) <= 60
    assert counters.overlay([ModelVersion.objects.get(pk=version.pk)])[0].prediction_count == 5


def test_a_token_revoked_by_another_process_is_refused_within_the_check_interval(served, settings, redis_client):
    """The loop path answers from the caches only while their last check is recent: once the
    interval has passed, the next request takes the thread path, which sees the change."""
    from mlops_dashboard import auth_cache, fast_routes
    from mlops_dashboard.models import ApiToken

    version, key, instances = served
    settings.AUTH_CACHE_CHECK_SECONDS = 0.5
    path = f"/api/models/{version.pk}/predict/"
    raw = json.dumps({"instances": instances[:1]}).encode()
    deadline = time.monotonic() + 30
    before = fast_routes.answered_on_loop
    while fast_routes.answered_on_loop == before:  # answered on the loop once the caches are warm
        assert _call(path, raw, key)[0] == 200
        assert time.monotonic() < deadline
    # As another server process revokes it: the row goes (no signal here) and the generation moves.
    ApiToken.objects.all()._raw_delete(ApiToken.objects.db)
    redis_client.incr(auth_cache.generation_key())
    time.sleep(settings.AUTH_CACHE_CHECK_SECONDS + 0.05)
    status, _, body = _call(path, raw, key)
    assert status == 401, body


# --- big batches in the server's processes (mlops_dashboard/process_pool.py) ------------------------


def test_big_batches_are_predicted_in_the_servers_processes_as_in_its_threads(server, served):
    """A server with API_PROCESSES=2 predicts a 300-row request in a process of its own once they are
    up: the same answer byte for byte as a server predicting in its threads, each row counted once;
    and when one of its processes is killed, requests go on getting the same answer while a new pool
    starts; when the server itself is killed, its processes exit."""
    import psutil

    from tests import procs

    version, key, _ = served
    instances, _ = titanic_instances(version, 300)
    raw = json.dumps({"instances": instances}).encode()
    headers = {"Authorization": f"Token {key}", "Content-Type": "application/json"}
    url = f"/api/models/{version.pk}/predict/"
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        expected = http.post(url, content=raw)  # the session's server: API_PROCESSES=0 in tests
    assert expected.status_code == 200, expected.text
    pooled = procs.Server(API_PROCESSES=2).start()
    answered = 1
    try:
        with httpx.Client(base_url=pooled.url, headers=headers, timeout=60) as http:
            def same_answer() -> bool:
                nonlocal answered
                answer = http.post(url, content=raw)
                answered += 1
                assert (answer.status_code, answer.content) == (expected.status_code, expected.content)
                return True

            def up(times: int) -> bool:
                same_answer()
                return pooled.output_since_start().count("API processes up: 2") >= times

            procs.wait_for(lambda: up(1), timeout=90, interval=0.2, message="the server's processes")
            children = pooled.ps.children()
            assert len(children) >= 2, children  # the pool's (and multiprocessing's resource tracker)
            for _ in range(5):  # in the processes now
                same_answer()
            pool = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
            assert len(pool) == 2, [c.cmdline() for c in children]
            pool[0].kill()
            psutil.wait_procs([pool[0]], timeout=30)
            procs.wait_for(lambda: up(2), timeout=90, interval=0.2,
                           message="a new pool after one of its processes was killed")
            same_answer()
        # A server killed outright cannot end its pool: its processes see it gone and exit.
        replaced = [c for c in pooled.ps.children() if "spawn_main" in " ".join(c.cmdline())]
        assert len(replaced) == 2 and not set(replaced) & set(pool)
        pooled.proc.kill()
        _, alive = psutil.wait_procs(replaced, timeout=60)
        assert not alive, alive
    finally:
        pooled.stop()
    # Every answered row counted once, whichever process predicted it.
    assert counters.overlay([ModelVersion.objects.get(pk=version.pk)])[0].prediction_count == answered * 300
