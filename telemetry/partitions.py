"""Time partitions of the point and rollup tables, and retention per resolution.

On PostgreSQL each table is partitioned by RANGE of its time column (migration 0002): raw points by
day, minute rollups by week (from Monday), hour rollups by month, plus a DEFAULT partition that takes
whatever has no dated partition (a point dated 2019 or next year), so an insert never fails.
`partitions_maintain` (beat, `telemetry.partitions_maintain`) makes the partitions of the coming
TELEMETRY_PARTITIONS_AHEAD_DAYS (moving any rows the DEFAULT partition holds for them), drops the
partitions that lie entirely before their retention cutoff, and deletes the expired rows of the
DEFAULT partition in batches. A partition partly inside the retention stays whole: data is kept up to
one partition span longer than its retention.

On SQLite the tables are plain and retention deletes the expired rows in batches. The pruners below
are registered with the core retention registry (telemetry/apps.py), so `retention_prune` applies
them too.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Table:
    name: str
    time: str  # the partition key
    span: str  # day | week | month
    retention_setting: str

    @property
    def default(self) -> str:
        return f"{self.name}_default"

    def retention_days(self) -> int:
        return int(getattr(settings, self.retention_setting))


POINTS = Table("telemetry_point", "timestamp", "day", "TELEMETRY_RAW_RETENTION_DAYS")
MINUTES = Table("telemetry_minuterollup", "bucket", "week", "TELEMETRY_MINUTE_RETENTION_DAYS")
HOURS = Table("telemetry_hourrollup", "bucket", "month", "TELEMETRY_HOUR_RETENTION_DAYS")
TABLES = (POINTS, MINUTES, HOURS)
# Serializes maintenance runs (beat's and retention_prune's) on one database.
_LOCK_KEY = 0x7E1E_0016
_NAME = re.compile(r"_p(\d{8})$")


def is_partitioned() -> bool:
    return connection.vendor == "postgresql"


def span_start(moment: datetime, span: str) -> datetime:
    """The start (UTC midnight) of the partition holding `moment`."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if span == "week":
        return day - timedelta(days=day.weekday())
    if span == "month":
        return day.replace(day=1)
    return day


def span_end(start: datetime, span: str) -> datetime:
    if span == "week":
        return start + timedelta(days=7)
    if span == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)


def partition_name(table: Table, start: datetime) -> str:
    return f"{table.name}_p{start:%Y%m%d}"


def partitions(table: Table) -> list[tuple[str, datetime, datetime]]:
    """The dated partitions of a table: (name, start, end), oldest first (not the DEFAULT one)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "WHERE i.inhparent = to_regclass(%s)", [table.name])
        names = [row[0] for row in cursor.fetchall()]
    found = []
    for name in names:
        match = _NAME.search(name)
        if match and name.startswith(f"{table.name}_p"):
            start = datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC)
            found.append((name, start, span_end(start, table.span)))
    return sorted(found, key=lambda p: p[1])


def partition_create(table: Table, start: datetime) -> bool:
    """Make the partition starting at `start` unless it exists; rows the DEFAULT partition holds for
    its range move into it. True when made."""
    start = span_start(start, table.span)
    end = span_end(start, table.span)
    name = partition_name(table, start)
    q = connection.ops.quote_name
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        if cursor.fetchone()[0]:
            return False
        # Short lock waits: ingest never queues behind maintenance for long (the next run retries).
        cursor.execute("SET LOCAL lock_timeout = '5s'")
        cursor.execute(f"LOCK TABLE {q(table.name)} IN ACCESS EXCLUSIVE MODE")
        cursor.execute("DROP TABLE IF EXISTS pg_temp.telemetry_moving")
        cursor.execute(f"CREATE TEMPORARY TABLE telemetry_moving (LIKE {q(table.name)})")
        cursor.execute(f"WITH moved AS (DELETE FROM {q(table.default)} WHERE {q(table.time)} >= %s "
                       f"AND {q(table.time)} < %s RETURNING *) INSERT INTO telemetry_moving SELECT * FROM moved",
                       [start, end])
        # Bounds are literals (DDL takes no parameters); both are UTC midnights made here.
        cursor.execute(f"CREATE TABLE {q(name)} PARTITION OF {q(table.name)} "
                       f"FOR VALUES FROM ('{start:%Y-%m-%d %H:%M:%S}+00') TO ('{end:%Y-%m-%d %H:%M:%S}+00')")
        cursor.execute(f"INSERT INTO {q(table.name)} SELECT * FROM telemetry_moving")
        moved = cursor.rowcount
        cursor.execute("DROP TABLE telemetry_moving")
    logger.info("telemetry: made partition %s (%s rows moved from the default partition)", name, moved)
    return True


def _cutoff(table: Table, now: datetime) -> datetime | None:
    days = table.retention_days()
    return now - timedelta(days=days) if days > 0 else None


def expired_prune(table: Table, cutoff: datetime, *, batch_size: int | None = None) -> int:
    """Remove what lies before `cutoff`: on PostgreSQL the dated partitions that end at or before it
    (whole) and the DEFAULT partition's older rows; on SQLite the older rows. In batches, each its own
    statement. Returns the rows removed (a dropped partition counts by the planner's estimate)."""
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    q = connection.ops.quote_name
    removed = 0
    if is_partitioned():
        for name, _start, end in partitions(table):
            if end > cutoff:
                break
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                               [name])
                row = cursor.fetchone()
                cursor.execute("SET LOCAL lock_timeout = '5s'")
                cursor.execute(f"DROP TABLE IF EXISTS {q(name)}")
            removed += row[0] if row else 0
            logger.info("telemetry: dropped partition %s (before %s)", name, cutoff.isoformat())
        source, key = table.default, "ctid"
    else:
        source, key = table.name, "rowid"
    value = connection.ops.adapt_datetimefield_value(cutoff)
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {q(source)} WHERE {key} IN (SELECT {key} FROM {q(source)} "
                           f"WHERE {q(table.time)} < %s LIMIT %s)", [value, batch_size])
            n = cursor.rowcount
        removed += n
        if n < batch_size:
            return removed


def points_prune(cutoff: datetime) -> int:
    return expired_prune(POINTS, cutoff)


def minute_rollups_prune(cutoff: datetime) -> int:
    return expired_prune(MINUTES, cutoff)


def hour_rollups_prune(cutoff: datetime) -> int:
    return expired_prune(HOURS, cutoff)


def partitions_maintain(*, now: datetime | None = None, ahead_days: int | None = None) -> dict:
    """Make the coming partitions (from the current one to `ahead_days` ahead) and remove expired data
    of each resolution. {"created": [names], "removed": {table: rows}}."""
    now = now or timezone.now()
    ahead_days = settings.TELEMETRY_PARTITIONS_AHEAD_DAYS if ahead_days is None else ahead_days
    created: list[str] = []
    removed: dict[str, int] = {}
    if is_partitioned():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY])
        try:
            for table in TABLES:
                start = span_start(now, table.span)
                while start <= now + timedelta(days=ahead_days):
                    try:
                        if partition_create(table, start):
                            created.append(partition_name(table, start))
                    except Exception:  # a lock not granted in time: the next run makes it
                        logger.warning("telemetry: partition %s not made", partition_name(table, start),
                                       exc_info=True)
                    start = span_end(start, table.span)
                cutoff = _cutoff(table, now)
                if cutoff is not None:
                    removed[table.name] = expired_prune(table, cutoff)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])
    else:
        for table in TABLES:
            cutoff = _cutoff(table, now)
            if cutoff is not None:
                removed[table.name] = expired_prune(table, cutoff)
    return {"created": created, "removed": removed}
