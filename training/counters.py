"""Model versions' prediction counts, kept in Redis and flushed to the database by a periodic task.

Every prediction request added to its version's row (an UPDATE per request, all of a model's
requests queued on one row lock). Now:

- Redis holds each counted version's exact total (`HINCRBY` in a hash, seeded from the database's
  count the first time, so it goes on from there) and its last prediction's time, in one atomic
  script per request, whatever the number of server processes;
- `prediction_counts_flush` (a Celery beat task, every PREDICTION_FLUSH_SECONDS) writes the totals
  of the versions counted since its last run to the database, never lowering a count (so a repeated
  or overlapping flush changes nothing, and nothing is lost between taking and writing);
- whatever shows or uses a count reads the database's rows and `overlay`s Redis's totals, the
  larger of the two: exact whether flushed or not.

With Redis away, a request counts in the database directly, as before.
"""

from __future__ import annotations

import calendar
import logging
from datetime import datetime, timezone as dt_timezone

import redis
from django.conf import settings
from django.db import connection
from django.db.models import Q

from mlops_dashboard.events import bus

from .models import ModelVersion

logger = logging.getLogger(__name__)

FLUSH_BATCH = 500  # versions per round trip of a flush

# KEYS: totals hash, last-time hash, dirty set. ARGV: version id, count, epoch seconds.
# Returns the version's new total, or false when Redis has no total for it yet (seed, then again).
_RECORD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return false end
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
return total
"""


def _key(name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:training:predictions:{name}"


def _keys() -> list[str]:
    return [_key("version-totals"), _key("version-last"), _key("dirty")]


def _field(pk: int, created_at: datetime) -> str:
    """A version's field in the hashes: its id and creation time (microseconds), so that a database
    made again (a reset, tests) whose ids come back never inherits another version's counts."""
    return f"{pk}:{calendar.timegm(created_at.utctimetuple()) * 1_000_000 + created_at.microsecond}"


# _RECORD, then the same count added to other counters (each kept for its own seconds), and a key
# set unless it exists (a gate, for its seconds). KEYS: _RECORD's three, the gate, then the counters.
# ARGV: _RECORD's three, the gate's seconds, then each counter's seconds.
# Returns {the version's total or false, the first counter's new value, 1 when the gate was set}.
_RECORD_WITH = """
local total = false
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  total = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[1])
end
local first = false
for i = 5, #KEYS do
  local value = redis.call('INCRBY', KEYS[i], ARGV[2])
  redis.call('EXPIRE', KEYS[i], ARGV[i])
  if not first then first = value end
end
local gate = redis.call('SET', KEYS[4], 1, 'NX', 'EX', ARGV[4]) and 1 or 0
return {total, first, gate}
"""
_record_with = None


def _script(client):
    global _record_with
    if _record_with is None:
        _record_with = client.register_script(_RECORD_WITH)
    return _record_with


class Sent:
    """The counting script (_RECORD_WITH) sent to Redis whose reply is read later (`reply`), so that the round trip
    overlaps the caller's work (the model predicting). When it could not be sent, or Redis did not
    know the script, `reply` makes the call the ordinary way (and raises what that raises)."""

    def __init__(self, client, keys: list, args: list):
        self.client, self.keys, self.args = client, keys, args
        self.conn = None
        pool = client.connection_pool
        try:
            conn = pool.get_connection()
        except (redis.RedisError, OSError):
            return
        try:
            conn.send_command("EVALSHA", _script(client).sha, len(keys), *keys, *args)
        except (redis.RedisError, OSError):
            conn.disconnect()
            pool.release(conn)
        else:
            self.conn = conn

    def reply(self):
        raw = None
        if self.conn is not None:
            conn, self.conn = self.conn, None
            pool = self.client.connection_pool
            try:
                raw = conn.read_response()
            except redis.exceptions.NoScriptError:  # Redis restarted: the ordinary call loads it
                pool.release(conn)
            except BaseException:
                conn.disconnect()  # a reply may be left unread on it
                pool.release(conn)
                raise
            else:
                pool.release(conn)
        if raw is None:
            raw = _script(self.client)(keys=self.keys, args=self.args, client=self.client)
        total, first, opened = raw
        return (None if total is None else int(total)), int(first), bool(opened)


def record_with_send(client, version: ModelVersion, count: int, now: datetime, *, gate: tuple[str, int],
                     counters: list[tuple[str, int]]) -> Sent:
    """Add `count` predictions to `version` at `now`, add `count` to each (key, seconds kept) of
    `counters`, and set the `gate` (key, seconds) unless it is set, in one round trip, sent now. Its
    `.reply()` is (the version's new total, or None when Redis holds none for it yet: then
    `record_seeded`; the first counter's new value; whether the gate was set)."""
    keys = [*_keys(), gate[0], *(key for key, _ in counters)]
    args = [_field(version.pk, version.created_at), count, repr(now.timestamp()), gate[1], *(ttl for _, ttl in counters)]
    return Sent(client, keys, args)


def record_seeded(version: ModelVersion, count: int, now: datetime) -> int:
    """Seed the version's total in Redis from the database's (unless another process just did),
    then add `count`; the new total."""
    row = ModelVersion.objects.filter(pk=version.pk).values_list("prediction_count", flat=True).first()
    if row is None:
        raise ModelVersion.DoesNotExist(f"model version {version.pk} no longer exists")
    field = _field(version.pk, version.created_at)
    client = bus.sync_client()
    client.hsetnx(_keys()[0], field, int(row))
    return int(client.eval(_RECORD, 3, *_keys(), field, count, repr(now.timestamp())))


def record_database(pk: int, count: int, now: datetime) -> int:
    """Add to the database's count directly (Redis away); the new total there. One UPDATE ...
    RETURNING (PostgreSQL, SQLite >= 3.35): the row lock lasts one statement. A total Redis holds
    is larger and wins when it answers again (`overlay`)."""
    table = connection.ops.quote_name(ModelVersion._meta.db_table)
    count_col = connection.ops.quote_name("prediction_count")
    at_col = connection.ops.quote_name("last_prediction_at")
    pk_col = connection.ops.quote_name(ModelVersion._meta.pk.column)
    field = ModelVersion._meta.get_field("last_prediction_at")
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {count_col} = {count_col} + %s, {at_col} = %s WHERE {pk_col} = %s RETURNING {count_col}",
            [count, field.get_db_prep_value(now, connection), pk],
        )
        row = cursor.fetchone()
    if row is None:
        raise ModelVersion.DoesNotExist(f"model version {pk} no longer exists")
    return int(row[0])


def _moment(raw) -> datetime | None:
    return datetime.fromtimestamp(float(raw), tz=dt_timezone.utc) if raw is not None else None


def _read(fields: list[str]) -> tuple[list, list]:
    """Redis's totals and last times of these fields (None where it holds none, or is away)."""
    if not fields:
        return [], []
    try:
        pipe = bus.sync_client().pipeline(transaction=False)
        pipe.hmget(_keys()[0], fields)
        pipe.hmget(_keys()[1], fields)
        totals, lasts = pipe.execute()
    except redis.RedisError as exc:
        logger.warning("unflushed prediction counts not read: %s", exc)
        return [None] * len(fields), [None] * len(fields)
    return totals, lasts


def overlay(versions):
    """Set each version's `prediction_count` and `last_prediction_at` to the exact figures (the
    database's, or Redis's when larger: counted and not flushed yet). Returns `versions`."""
    versions = list(versions) if not isinstance(versions, list) else versions
    totals, lasts = _read([_field(v.pk, v.created_at) for v in versions])
    for version, total, last in zip(versions, totals, lasts):
        if total is not None and int(total) > (version.prediction_count or 0):
            version.prediction_count = int(total)
        moment = _moment(last)
        if moment is not None and (version.last_prediction_at is None or moment > version.last_prediction_at):
            version.last_prediction_at = moment
    return versions


def total_of(queryset) -> int:
    """Exact predictions served by these versions."""
    rows = list(queryset.values_list("pk", "created_at", "prediction_count"))
    totals, _ = _read([_field(pk, created) for pk, created, _ in rows])
    return sum(max(int(count or 0), int(total or 0)) for (_, _, count), total in zip(rows, totals))


def flush() -> int:
    """Write the totals counted in Redis to the database (never lowering one). Returns how many
    versions were written. A version taken from the dirty set is put back when its write fails."""
    client = bus.sync_client()
    written = 0
    while True:
        taken = client.spop(_keys()[2], FLUSH_BATCH)
        if not taken:
            return written
        fields = [f.decode() if isinstance(f, bytes) else f for f in taken]
        try:
            pipe = client.pipeline(transaction=False)
            pipe.hmget(_keys()[0], fields)
            pipe.hmget(_keys()[1], fields)
            totals, lasts = pipe.execute()
            rows = {_field(pk, created): pk for pk, created in ModelVersion.objects.filter(
                pk__in=[int(f.split(":")[0]) for f in fields]).values_list("pk", "created_at")}
            for field, total, last in zip(fields, totals, lasts):
                pk = rows.get(field)
                if pk is None:  # the version is gone (or its id is another version's now)
                    continue
                if total is not None:
                    ModelVersion.objects.filter(pk=pk, prediction_count__lt=int(total)).update(prediction_count=int(total))
                moment = _moment(last)
                if moment is not None:
                    ModelVersion.objects.filter(Q(last_prediction_at__isnull=True) | Q(last_prediction_at__lt=moment),
                                                pk=pk).update(last_prediction_at=moment)
                written += 1
        except Exception:
            client.sadd(_keys()[2], *fields)
            raise
        if len(fields) < FLUSH_BATCH:
            return written


def forget(pk: int, created_at: datetime) -> None:
    """A deleted version's figures go (the database's row went)."""
    field = _field(pk, created_at)
    try:
        pipe = bus.sync_client().pipeline(transaction=False)
        pipe.hdel(_keys()[0], field)
        pipe.hdel(_keys()[1], field)
        pipe.srem(_keys()[2], field)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("prediction counts of deleted version %s left in Redis: %s", pk, exc)
