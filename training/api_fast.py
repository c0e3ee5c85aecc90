"""Predictions answered on the server's event loop: the plain case of the prediction endpoints
(training/api.py's PredictView and its three URLs), without Django's request, DRF's dispatch or a
thread per request.

mlops_dashboard/fast_routes.py calls `predict_on_loop` first for a token call to a prediction URL.
It answers only when every check of the DRF view passes, and answers exactly as the view would:

- on the loop, with no I/O (nothing here waits for the database or Redis): the token is in this
  process's cache (auth_cache.py: alive, not expired, its last use noted recently), its scope may
  predict, its user may see the model; the version, the project and the loaded model are in this
  process's caches (services/serving.py); the request asks for JSON and sends JSON of a bounded
  size, with no query string (DRF's `?format=`). The caches answer only while their check of
  Redis's generation counter is less than AUTH_CACHE_CHECK_SECONDS old, as on the thread path: when
  it is due, it is read first, in a thread;
- then, in the server's API threads (fast_routes' pool), for all the requests of one model queued
  meanwhile together (coalescing.LoopCoalescer): each body is read (orjson, as fast_json's parser
  reads it) and its rows checked (trainer.check_instances), the user's throttle of every request that
  passed is counted in one Redis round trip (throttles.user_requests_allowed: the same window and keys
  as UserThrottle), and the rows of the requests allowed are predicted and counted in one call
  (serving.batch_predictor, as model_version_predict does it), each request getting its own answer,
  written by fast_json's renderer with the view's headers (fast_routes.loop_headers);
- or, for a request of COALESCE_MAX_ROWS rows or more, the same work for that request alone in one
  of the server's processes (mlops_dashboard/process_pool.py, API_PROCESSES), once they are up: two
  big requests are predicted at once, each on a core, where the server's threads would predict them
  one after the other (the GIL). A process that dies before taking the request leaves it to the
  thread path; one that dies while predicting it gives a 500 (it may have counted its rows).

Anything else returns None before anything was counted, and the request then takes the thread path
(DRF's view), which gives every other answer as before: 401 (an unknown key), 403 (a token's scope),
404, 409, 400 (bad JSON, bad rows), 413, 429, a first request whose token or model is not cached yet.
The API timing (ApiTimingMiddleware's) is recorded by fast_routes for both.
"""

from __future__ import annotations

import asyncio

from django.core.exceptions import SynchronousOnlyOperation
from django.db import close_old_connections

from mlops_dashboard import auth_cache, fast_json, fast_routes, permissions, throttles
from mlops_dashboard.coalescing import LoopCoalescer, run_together
from mlops_dashboard.models import TokenScope
from mlops_dashboard.process_pool import ProcessPool, Unavailable
from mlops_dashboard.request_bodies import header
from mlops_dashboard.tokens import api_token_peek, token_user

from . import trainer
from .api import MAX_PREDICT_BODY
from .models import ModelVersion
from .services import serving

# The Accept and Content-Type values answered here (DRF's negotiation picks the JSON renderer and
# parser for these, and the charset is UTF-8); any other goes to DRF.
_ACCEPTS = frozenset({b"*/*", b"application/json", b"application/*"})
_JSON = frozenset({b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8"})

_coalescer = LoopCoalescer(serving.COALESCE_MAX_ROWS)
# Big requests (COALESCE_MAX_ROWS rows or more) go to the server's processes when it has them, each
# on a core of its own: in the server's threads they would run one after the other, for the GIL.
_processes = ProcessPool("API_PROCESSES")
_renderer = fast_json.FastJSONRenderer()


class _Request:
    __slots__ = ("user_id", "body", "version")

    def __init__(self, user_id: int, body: bytes, version: ModelVersion):
        self.user_id = user_id
        self.body = body
        self.version = version


async def predict_on_loop(scope, body: bytes, match, executor):
    """(200, headers, body) for a prediction this process can answer at once; None otherwise."""
    if not (auth_cache.fresh() and serving.lookups_fresh()):
        # Their once-a-second check is due: read it in a thread (one request reads, the others use it).
        await asyncio.get_running_loop().run_in_executor(executor, _check_caches)
    user = _user(scope)
    if user is None or scope.get("query_string") or not 0 < len(body) <= MAX_PREDICT_BODY:
        return None
    accept = header(scope, b"accept")
    content_type = header(scope, b"content-type")
    if (accept is not None and accept.strip().lower() not in _ACCEPTS) or content_type is None \
            or content_type.strip().lower() not in _JSON:
        return None
    try:
        version = _version(match, user)
    except SynchronousOnlyOperation:  # something not cached after all wanted the database: not here
        return None
    if version is None or version.status == ModelVersion.Status.ERROR:
        return None
    model = serving.model_loaded_peek(version)
    headers = fast_routes.loop_headers(scope, match)
    if model is None or headers is None:
        return None
    # Rows, roughly, for the batch's bound (one object per row): the body is read in the thread.
    rows = max(1, body.count(b"{") - 1)
    request = _Request(user.pk, body, version)
    pool = _processes.ready() if rows >= serving.COALESCE_MAX_ROWS else None
    if pool is not None:
        try:
            outcome = await _processes.run(pool, _work_in_process, request)
        except Unavailable:  # nothing ran: the thread path answers
            return None
        if isinstance(outcome, BaseException):
            raise outcome
    else:
        outcome = await _coalescer.run(serving.serving_key(version), request, _work_for(model), executor, size=rows)
    if outcome is None:
        return None
    return 200, headers, outcome


def _check_caches() -> None:
    auth_cache.check()
    serving.lookups_check()


def _user(scope):
    """The user of the request's token, as ApiTokenAuthentication and the permission classes find
    it (IsAuthenticated, TokenScopePermission for a view of scope `predict`), when this process has
    it at hand; else None."""
    value = header(scope, b"authorization")
    parts = value.split() if value is not None else ()
    if len(parts) != 2 or parts[0].lower() != b"token":
        return None
    try:
        key = parts[1].decode("utf-8")
    except UnicodeDecodeError:
        return None
    token = api_token_peek(key)
    if token is None or token.scope not in (TokenScope.ALL, TokenScope.PREDICT):
        return None
    user = token_user(token)
    return user if user.is_active and user.is_authenticated else None


def _version(match, user) -> ModelVersion | None:
    """The version the URL names, as the view finds it, when the caches hold every part of the
    answer and the user may see it; else None."""
    kwargs = match.kwargs
    if match.url_name == "model-version-predict":
        version = serving.model_version_for_predict_peek(kwargs["pk"])
    elif match.url_name == "project-model-predict":
        project = serving.project_by_slug_peek(kwargs["slug"])
        if project is None or not permissions.can_see(user, project):
            return None
        version = serving.model_version_serving_peek(project_id=project.pk, name=kwargs["name"])
    elif match.url_name == "model-predict-by-name":
        projects = serving.model_projects_named_peek(kwargs["name"], permissions.visible_project_ids(user))
        if not projects or len(projects) != 1:
            return None
        version = serving.model_version_serving_peek(project_id=projects[0].pk, name=kwargs["name"])
    else:
        return None
    if version is None or not permissions.can(user, "view", version):
        return None
    return version


def _work_for(model):
    def work(requests: list[_Request]) -> list:
        try:
            return _work(model, requests)
        finally:
            close_old_connections()  # as request_finished does: a count that fell back to the database
    return work


def _work_in_process(request: _Request):
    """In one of the server's processes (mlops_dashboard/process_pool.py): the request's outcome, as
    _work gives it, with the model loaded there (cached per process, as in the server). None (the
    thread path) when it cannot be loaded there: the server, which has it, then answers."""
    try:
        model = serving.model_version_load(version=request.version)
    except Exception:  # noqa: BLE001 - the thread path answers, and reports what is wrong
        return None
    return _work_for(model)([request])[0]


def _work(model, requests: list[_Request]) -> list:
    """In an API thread: one outcome per request (its answer's body, None for DRF's path, or the
    exception that becomes a 500 problem)."""
    serving.one_thread_each()
    outcomes: list = [None] * len(requests)
    checked = []  # (index, instances)
    for i, request in enumerate(requests):
        instances = _instances(request)
        if instances is not None and not trainer.check_instances(instances, request.version.feature_schema):
            checked.append((i, instances))
    if not checked:
        return outcomes
    allowed = throttles.user_requests_allowed([requests[i].user_id for i, _ in checked])
    checked = [pair for pair, ok in zip(checked, allowed) if ok]
    if not checked:
        return outcomes
    version = requests[checked[0][0]].version  # one version and artifact: the batch's key
    results = run_together([instances for _, instances in checked], serving.batch_predictor(version, model))
    for (i, _), result in zip(checked, results):
        if isinstance(result, Exception):
            outcomes[i] = result
            continue
        mine = requests[i].version
        data = {"project_id": mine.project_id, "model_id": mine.pk, "model_name": mine.name,
                "model_version": mine.version, **result}
        outcomes[i] = _renderer.render(data, "application/json", {})
    return outcomes


def _instances(request: _Request) -> list | None:
    """The body's instances as the view reads them (fast_json's parser, then _read_instances'
    checks), or None when the view would answer otherwise (or would read it with json instead)."""
    data = fast_json.orjson_or_none(request.body)
    if not isinstance(data, dict) or len(data) != 1:
        return None
    instances = data.get("instances")
    if not isinstance(instances, list) or not instances or len(instances) > serving.MAX_PREDICTION_INSTANCES:
        return None
    return instances
