"""Serving: load a version's fitted pipeline (cached per process, checked against its sha256),
predict with it, and count its predictions (milestones, per-minute rate, volume events).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import OrderedDict

import redis
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Model
from django.db.models.base import ModelState
from django.utils import timezone

from mlops_dashboard import permissions
from mlops_dashboard.events import bus, catalog, publish_on_commit
from mlops_dashboard.coalescing import Coalescer
from mlops_dashboard.generation_cache import GenerationCache

from .. import counters, selectors
from ..models import ModelVersion
from .errors import ArtifactError

logger = logging.getLogger(__name__)

MAX_PREDICTION_INSTANCES = 10_000
MILESTONES = (100, 500, 1_000, 5_000, 10_000)
MILESTONE_STEP = 10_000  # after the last milestone: every 10,000
VOLUME_INTERVAL = 10  # seconds between prediction_volume events of one version while traffic flows
RATE_SLOT = 10  # seconds per bucket of the per-minute rate
MODEL_CACHE_SIZE = 8

_models: OrderedDict[tuple[int, str], object] = OrderedDict()
_models_lock = threading.Lock()


# The lookups a prediction request makes (the version by id, the one serving a name, the projects
# having a name, a project by slug), cached per process and dropped everywhere within a second of a
# change (generation_cache.py): a deploy, a rollback, a version saved, deleted or in error, a project
# changed. Entries are copied out: requests set attributes on them.
_lookups: dict[tuple, object] = {}
LOOKUPS_MAX = 10_000


def _lookups_clear() -> None:
    _lookups.clear()


_lookups_generation = GenerationCache("serving", _lookups_clear)


def _cached(key: tuple, load):
    usable = _lookups_generation.usable()
    if usable and key in _lookups:
        value = _lookups[key]
    else:
        generation = _lookups_generation.generation
        value = load()
        if usable:
            def store():
                if len(_lookups) >= LOOKUPS_MAX:
                    _lookups.clear()
                _lookups[key] = value

            _lookups_generation.put(generation, store)
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return _copied(value)


def _copied(obj):
    """A shallow copy of a cached row, as copy.copy makes it (Model.__getstate__: its own fields and
    related-object cache), without the pickling protocol's detour: a few of these per prediction."""
    if not isinstance(obj, Model):
        return copy.copy(obj)
    new = obj.__class__.__new__(obj.__class__)
    new.__dict__.update(obj.__dict__)
    state = new._state = ModelState()
    state.__dict__.update(obj._state.__dict__)
    state.fields_cache = obj._state.fields_cache.copy()
    return new


def lookups_fresh() -> bool:
    """May the *_peek lookups answer now (their cache's check is recent)? No I/O."""
    return _lookups_generation.fresh()


def lookups_check() -> bool:
    """Read the lookups cache's generation if its check is due (a Redis read: not on the event loop)."""
    return _lookups_generation.usable()


def _peeked(key: tuple):
    """A cached lookup without I/O, for the event loop (training/api_fast.py): its copy, or None when
    it is not cached (or cached as None) or the cache's check is due."""
    if not _lookups_generation.fresh():
        return None
    value = _lookups.get(key)
    if value is None:
        return None
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return _copied(value)


def model_version_for_predict_peek(pk: int) -> ModelVersion | None:
    return _peeked(("version", pk))


def model_version_serving_peek(*, project_id: int, name: str) -> ModelVersion | None:
    return _peeked(("serving", project_id, name))


def model_projects_named_peek(name: str, project_ids) -> list | None:
    return _peeked(("named", name, None if project_ids is None else frozenset(project_ids)))


def project_by_slug_peek(slug: str):
    return _peeked(("project", slug))


def model_loaded_peek(version: ModelVersion):
    """The version's fitted pipeline if this process has it loaded, else None (no I/O)."""
    with _models_lock:
        return _models.get((version.pk, version.artifact_sha256))


def serving_changed(sender=None, **kwargs) -> None:
    """A version, a deployment or a project changed: every process's lookups go within a second."""
    _lookups_generation.changed()


def model_version_for_predict(pk: int) -> ModelVersion | None:
    """Version `pk` with its project (None when there is none); visibility is the caller's check."""
    return _cached(("version", pk), lambda: ModelVersion.objects.select_related("project").filter(pk=pk).first())


def model_version_serving_cached(*, project_id: int, name: str) -> ModelVersion | None:
    return _cached(("serving", project_id, name),
                   lambda: selectors.model_version_serving(project_id=project_id, name=name))


def model_projects_named_cached(name: str, project_ids) -> list:
    ids = None if project_ids is None else frozenset(project_ids)
    return _cached(("named", name, ids), lambda: selectors.model_projects_named(name, ids))


def project_by_slug(slug: str):
    from mlops_dashboard.models import Project

    return _cached(("project", slug), lambda: Project.objects.filter(slug=slug).first())


def connect_signals() -> None:
    from django.db.models.signals import post_delete, post_save

    from mlops_dashboard.models import Project

    from ..models import Deployment

    for model in (ModelVersion, Deployment, Project):
        uid = f"training.serving.{model._meta.label_lower}"
        post_save.connect(serving_changed, sender=model, dispatch_uid=f"{uid}.save")
        post_delete.connect(serving_changed, sender=model, dispatch_uid=f"{uid}.delete")


def forget_model(version_id: int) -> None:
    with _models_lock:
        for key in [k for k in _models if k[0] == version_id]:
            del _models[key]


def model_status_event(version: ModelVersion, status: str) -> catalog.ModelStatusChange:
    return catalog.ModelStatusChange(
        project_id=version.project_id,
        model_id=version.pk,
        status=status,
        health_score={"active": 1.0, "inactive": None, "error": 0.0, "training": None}[status],
        last_prediction=version.last_prediction_at.isoformat() if version.last_prediction_at else None,
    )


def model_version_mark_error(*, version: ModelVersion, reason: str) -> bool:
    """A version whose artifact cannot be trusted stops serving (status error)."""
    with transaction.atomic():
        changed = ModelVersion.objects.filter(pk=version.pk).exclude(status=ModelVersion.Status.ERROR).update(
            status=ModelVersion.Status.ERROR
        )
        if changed:
            logger.error("model version %s marked error: %s", version.pk, reason)
            version.status = ModelVersion.Status.ERROR
            publish_on_commit(model_status_event(version, ModelVersion.Status.ERROR))
            serving_changed()  # an update(): no signal
    forget_model(version.pk)
    return bool(changed)


def model_version_load(*, version: ModelVersion):
    """The version's fitted pipeline, cached per process by (version id, sha256).

    The bytes are checked against the stored sha256 before they are unpickled, on every load.
    """
    from .. import trainer

    key = (version.pk, version.artifact_sha256)
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            _models.move_to_end(key)
            return model
    try:
        with default_storage.open(version.artifact.name, "rb") as f:
            data = f.read()
        model = trainer.load_artifact(data, version.artifact_sha256)
    except (OSError, trainer.ArtifactIntegrityError) as exc:
        model_version_mark_error(version=version, reason=str(exc))
        raise ArtifactError(f"{version.label} cannot serve: its artifact is missing or does not match its checksum.") from exc
    with _models_lock:
        _models[key] = model
        while len(_models) > MODEL_CACHE_SIZE:
            _models.popitem(last=False)
    return model


_threads = threading.local()

# Rows of concurrent requests predicted in one call, at most: a few small requests together, never
# a big one held up behind another.
COALESCE_MAX_ROWS = 256
_coalescer = Coalescer(COALESCE_MAX_ROWS)


def one_thread_each() -> None:
    """Each prediction uses one core (BLAS and OpenMP, e.g. gradient boosting's): the server's
    threads (API_FAST_THREADS) run several at once, and more threads per call would oversubscribe
    the machine. Set once per thread (OpenMP's limit is the calling thread's)."""
    if not getattr(_threads, "limited", False):
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        _threads.limited = True


def model_version_predict(*, version: ModelVersion, instances: list, user=None) -> dict:
    """Predict with a version and count the predictions. Who may: anyone who may see the version
    (viewer and up; None: the system). Raises trainer.InvalidInputError when the instances do not
    match the version's feature schema, ArtifactError when it cannot serve."""
    from .. import trainer

    permissions.authorize(user, "view", version)
    if version.status == ModelVersion.Status.ERROR:
        raise ArtifactError(f"{version.label} is in error and cannot serve predictions.")
    one_thread_each()
    model = model_version_load(version=version)
    errors = trainer.check_instances(instances, version.feature_schema)
    if errors:
        raise trainer.InvalidInputError(errors)

    # Requests for this model while it is busy are predicted together (coalescing.py).
    return _coalescer.run(serving_key(version), instances, batch_predictor(version, model))


def serving_key(version: ModelVersion) -> tuple:
    """What requests predicted together share: the version and its artifact."""
    return version.pk, version.artifact_sha256


def batch_predictor(version: ModelVersion, model):
    """run(groups of checked instances) -> one result per group: the groups predicted in one call
    and counted, for model_version_predict and the API's loop path (training/api_fast.py)."""
    from .. import trainer

    def run(groups: list[list]) -> list[dict]:
        """Predict and count the rows of these requests in one call; each request's share. The
        count goes to Redis first, and its reply is read once the model is done: the round trip
        overlaps the prediction (a prediction that fails takes its count back)."""
        rows = groups[0] if len(groups) == 1 else [row for group in groups for row in group]
        counting = _record_begin(version, len(rows))
        try:
            result = trainer.predict_checked(model, rows, version.feature_schema)
        except BaseException:
            _record_end(counting)
            model_version_record_predictions(version=version, count=-len(rows))
            raise
        _record_end(counting)
        if len(groups) == 1:
            return [result]
        shares, start = [], 0
        for group in groups:
            end = start + len(group)
            shares.append({k: v[start:end] if isinstance(v, list) else v for k, v in result.items()})
            start = end
        return shares

    return run


def model_version_record_predictions(*, version: ModelVersion, count: int) -> int:
    """Add `count` predictions to the version's total (atomically, whatever the number of server
    processes: in Redis, flushed to the database by `prediction_counts_flush`; counters.py) and
    publish its project's prediction_volume at milestones or every 10 s. Returns the new total.
    One round trip to Redis as a rule; with Redis away, the database counts (and no event goes)."""
    return _record_end(_record_begin(version, count))


def _record_begin(version: ModelVersion, count: int) -> tuple:
    """model_version_record_predictions, sent to Redis; `_record_end` reads its reply and finishes."""
    now = timezone.now()
    try:
        state = _count_send(version, count, now)
    except redis.RedisError as exc:
        state = exc
    return version, count, now, state


def _record_end(begun: tuple) -> int:
    version, count, now, state = begun
    try:
        if isinstance(state, redis.RedisError):
            raise state
        total, event = _count_finish(state)
    except redis.RedisError as exc:
        logger.warning("prediction volume not tracked: %s", exc)
        total, event = counters.record_database(version.pk, count, now), None
    version.prediction_count, version.last_prediction_at = total, now
    if event is not None:
        publish_on_commit(event)
    return total


def prediction_counts_flush() -> int:
    """Write the prediction counts kept in Redis to the database (the beat task, every
    PREDICTION_FLUSH_SECONDS). Returns how many versions were written."""
    return counters.flush()


def milestone_between(old: int, new: int) -> int | None:
    """The largest milestone m with old < m <= new, if any."""
    reached = None
    for m in MILESTONES:
        if old < m <= new:
            reached = m
    if new >= MILESTONES[-1] + MILESTONE_STEP:
        m = (new // MILESTONE_STEP) * MILESTONE_STEP
        if old < m <= new:
            reached = m
    return reached


def _redis_key(*parts) -> str:
    return ":".join([settings.REDIS_KEY_PREFIX, "training", *map(str, parts)])


def _rate_keys(project_id: int, slot: int) -> list[str]:
    return [_redis_key("predictions", project_id, "rate", s) for s in range(slot - 5, slot + 1)]


def _per_minute(buckets, now: float, slot: int) -> float:
    window = 5 * RATE_SLOT + (now - slot * RATE_SLOT)
    return round(sum(int(b or 0) for b in buckets) * 60.0 / max(window, 1.0), 2)


def predictions_per_minute(project_id: int, *, now: float | None = None) -> float:
    """A project's predictions per minute over about the last minute (0.0 when Redis is down)."""
    now = time.time() if now is None else now
    slot = int(now // RATE_SLOT)
    try:
        buckets = bus.sync_client().mget(_rate_keys(project_id, slot))
    except redis.RedisError as exc:
        logger.warning("prediction rate not read: %s", exc)
        return 0.0
    return _per_minute(buckets, now, slot)


def _count_send(version: ModelVersion, count: int, moment) -> tuple:
    """Send the counting of `count` predictions (`_count_finish` reads the reply)."""
    now = time.time()
    slot = int(now // RATE_SLOT)
    total_key = _redis_key("predictions", version.project_id, "total")
    rate_key = _redis_key("predictions", version.project_id, "rate", slot)
    client = bus.sync_client()
    # The project's total is kept a day when idle (then re-seeded from the exact totals).
    sent = counters.record_with_send(
        client, version, count, moment, gate=(_redis_key("predictions", "gate", version.pk), VOLUME_INTERVAL),
        counters=[(total_key, 86_400), (rate_key, RATE_SLOT * 8)])
    return client, sent, version, count, moment, now, slot, total_key


def _count_finish(state: tuple):
    """The version's new total, and the prediction_volume event to publish (or None). Every figure
    of the event is the version's project's: its counters, milestones and rate are its own."""
    client, sent, version, count, moment, now, slot, total_key = state
    project_id = version.project_id
    version_total, redis_total, gate_open = sent.reply()
    if version_total is None:  # Redis holds no total of this version yet: seeded from the database's
        version_total = counters.record_seeded(version, count, moment)
    # Counted: from here on, a Redis error only loses the event.
    try:
        # The milestone is one of the project's total; Redis' INCRBY orders concurrent requests
        # across processes, so exactly one request crosses each milestone. Its counter is seeded
        # from the exact totals when Redis lost it (first use, or a restart).
        if redis_total == count:
            seeded = project_prediction_total(project_id)
            client.incrby(total_key, max(0, seeded - count))
            milestone = milestone_between(seeded - count, seeded)
        else:
            milestone = milestone_between(redis_total - count, redis_total)
        if milestone is None and not gate_open:
            return version_total, None
        buckets = client.mget(_rate_keys(project_id, slot))
    except redis.RedisError as exc:
        logger.warning("prediction volume not tracked: %s", exc)
        return version_total, None
    per_minute = _per_minute(buckets, now, slot)
    total = project_prediction_total(project_id)  # what the API and the pages show
    if milestone is not None:
        message = f"{milestone:,} predictions served ({version.label} now at {version_total:,})."
    else:
        message = f"{total:,} predictions served; {per_minute:,.0f} per minute."
    return version_total, catalog.PredictionVolume(
        project_id=project_id,
        total_predictions=int(total),
        predictions_per_minute=float(per_minute),
        milestone_reached=milestone,
        message=message,
        model_id=version.pk,
        model_name=version.name,
        model_predictions=int(version_total),
    )


def project_prediction_total(project_id: int) -> int:
    """Predictions served by every version of one project."""
    return counters.total_of(ModelVersion.objects.filter(project_id=project_id))
