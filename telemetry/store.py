"""Writing and rolling up points: the only module that knows how the point tables are laid out.

Rollups stay current this way: writing points marks each (series, minute) it touched in
`RollupPending`, in the same statement on PostgreSQL (same transaction on SQLite). Beat runs
`rollups_refresh_pending` every TELEMETRY_ROLLUP_INTERVAL seconds: it takes the marks and recomputes
those minutes from the raw points, then their hours from the minute rollups, one
`INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE` per resolution. Stored rollups thus lag the
points by up to that interval; `rollups_read` (the series selector's) computes the still marked
buckets from the raw points, so what it returns is never stale. `rollups_refresh(series_ids, start,
end)` recomputes a whole range at once (the CSV import's).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, connection, transaction
from psycopg.errors import UniqueViolation

from .models import HourRollup, Metric, MinuteRollup, Point, RollupPending

# (series id, timestamp, value): the timestamp an aware datetime or epoch microseconds (an int).
Row = tuple[int, datetime | int, float]

# Times as epoch microseconds (an int): (moment - EPOCH) // MICROSECOND, and back EPOCH + us * MICROSECOND.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
PENDING_BATCH = 5000  # marks taken per statement by rollups_refresh_pending
_SQLITE_ROWS = 500  # VALUES rows per statement on SQLite (its bound-parameter limit)

POINT = Point._meta.db_table
MINUTES = MinuteRollup._meta.db_table
HOURS = HourRollup._meta.db_table
PENDING = RollupPending._meta.db_table
_UPSERT = ("ON CONFLICT (series_id, bucket) DO UPDATE SET count = EXCLUDED.count, sum = EXCLUDED.sum, "
           "min = EXCLUDED.min, max = EXCLUDED.max")

# PostgreSQL: one statement writes a batch, marks its minutes and runs the caller's other parts. A
# reading newer than its series' last one (Metric.last_timestamp, which every write moves up to its
# newest reading) is inserted plainly; the others (a reading sent again, or late) go through
# ON CONFLICT ... DO UPDATE, whose speculative insertion costs PostgreSQL about as much again per row.
# A reading "new" by that test may still be stored already (a concurrent write of the same times, an
# import under way): the statement then fails on the primary key, having changed nothing, and is run
# again with every reading through ON CONFLICT (`_pg_write`).
_PG_ROWS = ("pts AS (SELECT s, timestamptz 'epoch' + t * interval '1 microsecond' AS at, v "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::float8[]) AS u(s, t, v))")
_PG_LAST = f"prior AS (SELECT id, last_timestamp FROM {Metric._meta.db_table} WHERE id IN (SELECT s FROM pts))"
_PG_NEW = ("(SELECT pts.* FROM pts LEFT JOIN prior ON prior.id = pts.s "
           "WHERE (prior.last_timestamp IS NULL OR pts.at > prior.last_timestamp){guard})")
_PG_OLD = "(SELECT pts.* FROM pts JOIN prior ON prior.id = pts.s WHERE pts.at <= prior.last_timestamp{guard})"
_PG_ALL = "(SELECT * FROM pts WHERE true{guard})"
_PG_INSERT = f'INSERT INTO {POINT} (series_id, "timestamp", value) SELECT s, at, v FROM {{rows}} AS r'
_PG_UPSERT = _PG_INSERT + ' ON CONFLICT (series_id, "timestamp") DO UPDATE SET value = EXCLUDED.value'
_PG_MARKS = (f"INSERT INTO {PENDING} (series_id, bucket) SELECT DISTINCT s, date_trunc('minute', at, 'UTC') "
             "FROM pts WHERE true{guard} ORDER BY 1, 2 ON CONFLICT DO NOTHING")
# With `only`: the number of series it finds (the caller's other parts may test it too:
# `(SELECT n FROM checked)`); every write is guarded by it.
_PG_CHECKED = "checked AS (SELECT count(*) AS n FROM ({only}) AS c)"


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def floor(moment: datetime, size: timedelta) -> datetime:
    moment = moment.astimezone(UTC)
    if size == MINUTE:
        return moment.replace(second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def points_write(rows: list[Row], *, also: Iterable[tuple[str, list]] = (),
                 only: tuple[str, list] | None = None) -> int | None:
    """Upsert readings; a (series, timestamp) already stored takes the new value. `rows` hold at most
    one reading per (series, timestamp). See points_write_columns."""
    micros = [t if type(t) is int else (t - EPOCH) // MICROSECOND for _, t, _ in rows]
    return points_write_columns([s for s, _, _ in rows], micros, [v for _, _, v in rows], also=also, only=only)


def points_write_columns(ids: list[int], micros: list[int], values: list[float], *,
                         also: Iterable[tuple[str, list]] = (), only: tuple[str, list] | None = None) -> int | None:
    """Upsert readings given as columns: series ids, times in epoch microseconds, values (at most one
    reading per (series, timestamp)); a (series, timestamp) already stored takes the new value. Marks
    the minutes written for `rollups_refresh_pending`.
    `also`: further data-modifying statements (sql, params) of the caller's, run in the same round trip
    on PostgreSQL (as more `WITH` parts of the one statement); the caller runs its own elsewhere.
    `only` (PostgreSQL): a query (sql, params) of series ids: the rows are written only when every
    series of them is among those it finds; their number is returned (else None). The `also` parts
    may test it too: `(SELECT n FROM checked)`."""
    also = list(also)
    if not ids:
        for sql, params in also:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
        return 0 if only is not None else None
    if is_postgresql():
        return _pg_write(ids, micros, values, also, only)
    adapt = connection.ops.adapt_datetimefield_value
    moments = [EPOCH + t * MICROSECOND for t in micros]
    marks = sorted({(s, floor(t, MINUTE)) for s, t in zip(ids, moments)})
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(f'INSERT INTO {POINT} (series_id, "timestamp", value) VALUES (%s, %s, %s) '
                           f'ON CONFLICT (series_id, "timestamp") DO UPDATE SET value = excluded.value',
                           [(s, adapt(t), v) for s, t, v in zip(ids, moments, values)])
        cursor.executemany(f"INSERT INTO {PENDING} (series_id, bucket) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                           [(s, adapt(b)) for s, b in marks])


def _pg_write(ids: list[int], micros: list[int], values: list[float], also: list[tuple[str, list]],
              only: tuple[str, list] | None) -> int | None:
    """points_write on PostgreSQL: one statement (see _PG_ROWS), run again with every reading through
    ON CONFLICT if a reading taken for new was stored already."""
    # Arrays as text literals built by str.join: a fifth of the CPU of psycopg dumping a list element
    # by element. Times as exact epoch microseconds; floats by repr (exact round trip).
    n_series = len(set(ids)) if only is not None else 0
    arrays = ["{" + ",".join(map(str, ids)) + "}", "{" + ",".join(map(str, micros)) + "}",
              "{" + ",".join(map(repr, map(float, values))) + "}"]

    def statement(optimistic: bool) -> tuple[str, list]:
        parts, params = [], []
        if only is not None:
            parts.append(_PG_CHECKED.format(only=only[0]))
            params += only[1]
        for i, (part, part_params) in enumerate(also):
            parts.append(f"also{i} AS ({part})")
            params += part_params
        parts.append(_PG_ROWS)
        params += arrays
        guard, guard_params = ("", []) if only is None else (" AND (SELECT n FROM checked) = %s", [n_series])
        if optimistic:
            parts.append(_PG_LAST)
            parts.append(f"fresh AS ({_PG_INSERT.format(rows=_PG_NEW.format(guard=guard))})")
            parts.append(f"late AS ({_PG_UPSERT.format(rows=_PG_OLD.format(guard=guard))})")
            params += guard_params * 2
        else:
            parts.append(f"written AS ({_PG_UPSERT.format(rows=_PG_ALL.format(guard=guard))})")
            params += guard_params
        parts.append(f"marked AS ({_PG_MARKS.format(guard=guard)})")
        params += guard_params
        return "WITH " + ",\n".join(parts) + ("\nSELECT n FROM checked" if only is not None else "\nSELECT 1"), params

    sql, params = statement(optimistic=True)
    try:
        # In a transaction, a savepoint: the failed statement must not spoil the caller's transaction.
        with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            found = cursor.fetchone()[0]
    except IntegrityError as exc:
        if not isinstance(exc.__cause__, UniqueViolation):
            raise
        sql, params = statement(optimistic=False)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            found = cursor.fetchone()[0]
    return found if only is not None else None


def _keys_relation(keys: list[tuple[int, datetime]], size: timedelta) -> tuple[str, list]:
    """A relation d(i, series_id, lo, hi) of the buckets (series, start) of `size`, and its params."""
    if is_postgresql():
        return ("unnest(%s::int[], %s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS d(i, series_id, lo, hi)",
                [list(range(len(keys))), [s for s, _ in keys], [b for _, b in keys], [b + size for _, b in keys]])
    adapt = connection.ops.adapt_datetimefield_value
    values = ", ".join(["(%s, %s, %s, %s)"] * len(keys))
    params = [x for i, (s, b) in enumerate(keys) for x in (i, s, adapt(b), adapt(b + size))]
    return (f"(SELECT column1 AS i, column2 AS series_id, column3 AS lo, column4 AS hi FROM (VALUES {values})) AS d",
            params)


def _chunks(keys: list, n: int):
    for i in range(0, len(keys), n):
        yield keys[i:i + n]


def _recompute(keys: list[tuple[int, datetime]], size: timedelta) -> None:
    """Store the rollups of these buckets: minutes from the raw points, hours from the minutes."""
    if size == MINUTE:
        target, source, time, agg = MINUTES, POINT, '"timestamp"', "count(*), sum(p.value), min(p.value), max(p.value)"
    else:
        target, source, time, agg = HOURS, MINUTES, "bucket", "sum(p.count), sum(p.sum), min(p.min), max(p.max)"
    step = len(keys) if is_postgresql() else _SQLITE_ROWS
    for chunk in _chunks(sorted(keys), max(step, 1)):
        relation, params = _keys_relation(chunk, size)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {target} (series_id, bucket, count, sum, min, max) "
                f"SELECT d.series_id, d.lo, {agg} FROM {relation} "
                f"JOIN {source} p ON p.series_id = d.series_id AND p.{time} >= d.lo AND p.{time} < d.hi "
                f"WHERE true GROUP BY d.series_id, d.lo {_UPSERT}", params)


def rollups_refresh_pending(*, limit: int = PENDING_BATCH) -> int:
    """Recompute the rollups of the minutes marked by writes (and of their hours), a batch of marks at a
    time, until none is left. Returns how many minutes were recomputed."""
    done = 0
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                if is_postgresql():
                    # SKIP LOCKED: two runs at once take different marks.
                    cursor.execute(f"DELETE FROM {PENDING} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {PENDING} "
                                   f"LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING series_id, bucket", [limit])
                    minutes = [(s, b) for s, b in cursor.fetchall()]
                else:
                    taken = list(RollupPending.objects.order_by("series_id", "bucket")
                                 .values_list("series_id", "bucket")[:limit])
                    minutes = [(s, b) for s, b in taken]
                    for chunk in _chunks(minutes, _SQLITE_ROWS):
                        relation, params = _keys_relation(chunk, MINUTE)
                        cursor.execute(f"DELETE FROM {PENDING} WHERE EXISTS (SELECT 1 FROM {relation} "
                                       f"WHERE d.series_id = {PENDING}.series_id AND d.lo = {PENDING}.bucket)", params)
            if not minutes:
                return done
            _recompute(minutes, MINUTE)
            _recompute(sorted({(s, floor(b, HOUR)) for s, b in minutes}), HOUR)
        done += len(minutes)
        if len(minutes) < limit:
            return done


def rollups_refresh(series_ids: Iterable[int], start: datetime, end: datetime) -> None:
    """Recompute the minute and hour buckets of these series that overlap [start, end] (and clear their
    marks)."""
    series_ids = sorted(set(series_ids))
    if not series_ids:
        return
    lo_minute, hi_minute = floor(start, MINUTE), floor(end, MINUTE) + MINUTE
    lo_hour, hi_hour = floor(start, HOUR), floor(end, HOUR) + HOUR
    ids = ", ".join(["%s"] * len(series_ids))
    if is_postgresql():
        trunc_minute, trunc_hour = "date_trunc('minute', \"timestamp\", 'UTC')", "date_trunc('hour', bucket, 'UTC')"
    else:
        trunc_minute = "strftime('%%Y-%%m-%%d %%H:%%M:00', \"timestamp\")"
        trunc_hour = "strftime('%%Y-%%m-%%d %%H:00:00', bucket)"
    adapt = connection.ops.adapt_datetimefield_value
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {PENDING} WHERE series_id IN ({ids}) AND bucket >= %s AND bucket < %s",
                       [*series_ids, adapt(lo_minute), adapt(hi_minute)])
        cursor.execute(
            f"INSERT INTO {MINUTES} (series_id, bucket, count, sum, min, max) "
            f"SELECT series_id, {trunc_minute}, count(*), sum(value), min(value), max(value) FROM {POINT} "
            f'WHERE series_id IN ({ids}) AND "timestamp" >= %s AND "timestamp" < %s GROUP BY 1, 2 {_UPSERT}',
            [*series_ids, adapt(lo_minute), adapt(hi_minute)])
        cursor.execute(
            f"INSERT INTO {HOURS} (series_id, bucket, count, sum, min, max) "
            f"SELECT series_id, {trunc_hour}, sum(count), sum(sum), min(min), max(max) FROM {MINUTES} "
            f"WHERE series_id IN ({ids}) AND bucket >= %s AND bucket < %s GROUP BY 1, 2 {_UPSERT}",
            [*series_ids, adapt(lo_hour), adapt(hi_hour)])


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# PostgreSQL computes epoch milliseconds (as int(datetime.timestamp() * 1000) does) and the mean
# itself: a chart's rows come back as plain numbers, nothing built per row in Python but the list.
_PG_MS = "trunc(extract(epoch FROM {}) * 1000)::bigint"
_TIME = '"timestamp"'


def points_read(series_id: int, start: datetime, end: datetime, *, limit: int | None = None) -> list[list]:
    """Raw readings of one series in [start, end], oldest first: [[epoch_ms, value], ...]; the first
    `limit` only when given (a caller asks for one more than it allows to learn that there are more)."""
    if is_postgresql():
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT {_PG_MS.format(_TIME)}, value FROM {POINT} '
                           f'WHERE series_id = %s AND "timestamp" >= %s AND "timestamp" <= %s ORDER BY "timestamp"'
                           + (" LIMIT %s" if limit is not None else ""),
                           [series_id, start, end] + ([limit] if limit is not None else []))
            return [list(row) for row in cursor.fetchall()]
    rows = (Point.objects.filter(series_id=series_id, timestamp__gte=start, timestamp__lte=end)
            .order_by("timestamp").values_list("timestamp", "value"))
    if limit is not None:
        rows = rows[:limit]
    return [[_epoch_ms(t), v] for t, v in rows]


def rollups_read(series_id: int, resolution: str, start: datetime, end: datetime) -> list[list]:
    """The rollups of one series with a bucket start in [start, end], oldest first:
    [[epoch_ms, mean, min, max, count], ...]. Buckets whose minutes are still marked (written since
    the last refresh) are computed from the raw points."""
    size = MINUTE if resolution == "minute" else HOUR
    model = MinuteRollup if resolution == "minute" else HourRollup
    if is_postgresql():
        return _pg_rollups_read(series_id, resolution, start, end)
    # The marks first: a refresh committing between the two reads leaves the stored rows fresh.
    marked = RollupPending.objects.filter(series_id=series_id, bucket__gte=floor(start, size), bucket__lte=end)
    stale = sorted({floor(b, size) for b in marked.values_list("bucket", flat=True)})
    stale = [b for b in stale if start <= b <= end]
    rows = [[_epoch_ms(b), s / n if n else None, lo, hi, n] for b, n, s, lo, hi in
            model.objects.filter(series_id=series_id, bucket__gte=start, bucket__lte=end)
            .order_by("bucket").values_list("bucket", "count", "sum", "min", "max")]
    if not stale:
        return rows
    by_ms = {row[0]: row for row in rows}
    for ms, n, total, lo, hi in _buckets_from_raw(series_id, stale, size):
        by_ms[ms] = [ms, total / n if n else None, lo, hi, n]
    return [by_ms[ms] for ms in sorted(by_ms)]


def _runs(buckets: list[datetime], size: timedelta) -> list[list[datetime]]:
    """Consecutive buckets (sorted) merged into [start, end) ranges."""
    runs: list[list[datetime]] = []
    for b in buckets:
        if runs and runs[-1][1] == b:
            runs[-1][1] = b + size
        else:
            runs.append([b, b + size])
    return runs


def _ranges_sql(column: str, runs: list[list[datetime]]) -> tuple[str, list]:
    return (" OR ".join([f"({column} >= %s AND {column} < %s)"] * len(runs)), [x for run in runs for x in run])


def _pg_rollups_read(series_id: int, resolution: str, start: datetime, end: datetime) -> list[list]:
    """Two statements: the marks of the range, then the stored buckets and the marked ones from the raw
    points (for hours, with their stored unmarked minutes), all bounds literals (client-side binding),
    so the planner prunes the partitions. The marks are read first: a refresh committing in between
    leaves the stored rows fresh."""
    size = MINUTE if resolution == "minute" else HOUR
    table = MINUTES if resolution == "minute" else HOURS
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT bucket FROM {PENDING} WHERE series_id = %s AND bucket >= %s AND bucket <= %s "
                       f"ORDER BY bucket", [series_id, floor(start, size), end])
        marks = [m for (m,) in cursor.fetchall() if start <= floor(m, size) <= end]
        stored = (f"SELECT bucket AS b, count AS n, sum AS s, min AS lo, max AS hi FROM {table} "
                  f"WHERE series_id = %s AND bucket >= %s AND bucket <= %s")
        params: list = [series_id, start, end]
        if marks:
            stale = sorted({floor(m, size) for m in marks})
            stored += f" AND bucket NOT IN ({', '.join(['%s'] * len(stale))})"
            params += stale
            ranges, values = _ranges_sql('"timestamp"', _runs(marks, MINUTE))
            parts = (f"SELECT date_trunc('minute', \"timestamp\", 'UTC') AS m, count(*) AS n, sum(value) AS s, "
                     f"min(value) AS lo, max(value) AS hi FROM {POINT} WHERE series_id = %s AND ({ranges}) GROUP BY 1")
            params += [series_id, *values]
            if size == HOUR:
                ranges, values = _ranges_sql("bucket", _runs(stale, HOUR))
                parts += (f" UNION ALL SELECT bucket, count, sum, min, max FROM {MINUTES} WHERE series_id = %s "
                          f"AND ({ranges}) AND bucket NOT IN ({', '.join(['%s'] * len(marks))})")
                params += [series_id, *values, *marks]
            stored += (f" UNION ALL SELECT date_trunc('{resolution}', m, 'UTC'), sum(n)::bigint, sum(s), min(lo), "
                       f"max(hi) FROM ({parts}) AS parts GROUP BY 1")
        cursor.execute(f"SELECT {_PG_MS.format('b')}, s / nullif(n, 0), lo, hi, n FROM ({stored}) AS buckets "
                       f"ORDER BY b", params)
        return [list(row) for row in cursor.fetchall()]


def _buckets_from_raw(series_id: int, buckets: list[datetime], size: timedelta):
    """(epoch_ms, count, sum, min, max) of these buckets of one series, from the raw points (SQLite)."""
    for chunk in _chunks(buckets, _SQLITE_ROWS):
        relation, params = _keys_relation([(series_id, b) for b in chunk], size)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT d.i, count(*), sum(p.value), min(p.value), max(p.value) FROM {relation} "
                           f'JOIN {POINT} p ON p.series_id = d.series_id AND p."timestamp" >= d.lo '
                           f'AND p."timestamp" < d.hi GROUP BY d.i', params)
            for i, n, total, lo, hi in cursor.fetchall():
                yield _epoch_ms(chunk[i]), n, total, lo, hi
