"""The storage report: rows, table bytes and files per registered kind (mlops_dashboard.retention),
and the Redis event log. Shown by `manage.py storage_report` and the System page.

Cheap enough for a page: the report is cached for STORAGE_REPORT_CACHE_SECONDS, and on PostgreSQL a
large table's rows are the planner's estimate (`pg_class.reltuples`, kept by autovacuum's ANALYZE)
rather than a `count(*)` that reads the whole table; the report says which figures are estimates.
"""

from __future__ import annotations

import logging
import os

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.utils import DatabaseError
from django.utils import timezone

from . import retention

logger = logging.getLogger(__name__)

CACHE_KEY = "storage_report"
# Above this many rows (as estimated), PostgreSQL tables are not counted exactly.
ESTIMATE_ABOVE_ROWS = 100_000


def _table_postgresql(cursor, table: str, exact) -> dict:
    # A partitioned table weighs what its partitions (the leaves of its tree) weigh; a plain table is
    # measured alone. reltuples is -1 for a leaf never analyzed (taken as 0 while another was).
    cursor.execute("SELECT CASE WHEN bool_or(c.reltuples >= 0) THEN sum(greatest(c.reltuples, 0))::bigint "
                   "ELSE -1 END, sum(pg_total_relation_size(c.oid))::bigint "
                   "FROM pg_class c WHERE c.oid IN (SELECT relid FROM pg_partition_tree(to_regclass(%s)) "
                   "WHERE isleaf UNION SELECT to_regclass(%s) WHERE NOT EXISTS "
                   "(SELECT 1 FROM pg_partition_tree(to_regclass(%s))))",
                   [connection.ops.quote_name(table)] * 3)
    estimate, size = cursor.fetchone()
    if estimate is None or estimate < 0 or estimate <= ESTIMATE_ABOVE_ROWS:  # -1: never analyzed
        return {"rows": exact(), "estimated": False, "bytes": size}
    return {"rows": int(estimate), "estimated": True, "bytes": size}


def _table_sqlite(cursor, table: str, exact) -> dict:
    size = None
    try:  # the dbstat table exists when SQLite was built with it (Python's usually is)
        cursor.execute("SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                       "(SELECT name FROM sqlite_master WHERE tbl_name = %s)", [table])
        size = cursor.fetchone()[0]
    except DatabaseError:
        pass
    return {"rows": exact(), "estimated": False, "bytes": size}


def _table(model) -> dict:
    table = model._meta.db_table
    measure = _table_postgresql if connection.vendor == "postgresql" else _table_sqlite
    with connection.cursor() as cursor:
        figures = measure(cursor, table, model._base_manager.count)
    return {"table": table, **figures}


def _files(directory: str) -> dict:
    count = size = 0
    for root, _dirs, names in os.walk(directory):
        for name in names:
            try:
                size += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
                count += 1
            except FileNotFoundError:  # removed meanwhile
                continue
    return {"count": count, "bytes": size}


def _retention_text(kind: retention.StorageKind) -> str:
    if not kind.pruner:
        return "kept"
    if not kind.setting:
        return "until expired"
    value = kind.retention
    if value <= 0:
        return "forever"
    unit = kind.unit if value != 1 else kind.unit.rstrip("s")
    return f"{value} {unit}"


def _event_log() -> dict:
    from .events import bus

    try:
        client = bus.sync_client()
        _, log_key, _ = bus.keys()
        return {"entries": client.zcard(log_key), "bytes": client.memory_usage(log_key) or 0,
                "limit": settings.EVENT_LOG_SIZE}
    except Exception as exc:
        logger.warning("storage report: the event log could not be read", exc_info=True)
        return {"entries": None, "bytes": None, "limit": settings.EVENT_LOG_SIZE, "error": type(exc).__name__}


def storage_report_build() -> dict:
    """Measure every registered kind now (no cache)."""
    media = str(settings.MEDIA_ROOT)
    seen_tables: set[str] = set()
    rows = []
    for kind in retention.kinds():
        tables = []
        for label in kind.models:
            model = apps.get_model(label)
            if model._meta.db_table in seen_tables:
                continue
            seen_tables.add(model._meta.db_table)
            tables.append(_table(model))
        sizes = [t["bytes"] for t in tables]
        rows.append({
            "key": kind.key, "label": kind.label, "retention": _retention_text(kind), "setting": kind.setting,
            "tables": tables, "rows": sum(t["rows"] for t in tables) if tables else None,
            "estimated": any(t["estimated"] for t in tables),
            "bytes": sum(sizes) if tables and None not in sizes else None,
            "files": ({"directory": kind.directory, **_files(os.path.join(media, kind.directory))}
                      if kind.directory else None),
        })
    directories = {kind.directory for kind in retention.kinds() if kind.directory}
    other = {"count": 0, "bytes": 0}
    if os.path.isdir(media):
        with os.scandir(media) as entries:
            for entry in entries:
                if entry.name in directories:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    found = _files(entry.path)
                    other["count"] += found["count"]
                    other["bytes"] += found["bytes"]
                elif entry.is_file(follow_symlinks=False):
                    other["count"] += 1
                    other["bytes"] += entry.stat(follow_symlinks=False).st_size
    return {"generated_at": timezone.now().isoformat(), "database": connection.vendor, "kinds": rows,
            "other_files": other, "event_log": _event_log()}


def storage_report(*, fresh: bool = False) -> dict:
    """The report, reused for STORAGE_REPORT_CACHE_SECONDS (`fresh`: measure now)."""
    seconds = settings.STORAGE_REPORT_CACHE_SECONDS
    if not fresh and seconds > 0:
        try:
            cached = cache.get(CACHE_KEY)
        except Exception:  # the cache is Redis: measure without it
            cached = None
        if cached is not None:
            return cached
    report = storage_report_build()
    if seconds > 0:
        try:
            cache.set(CACHE_KEY, report, seconds)
        except Exception:
            logger.warning("storage report: not cached", exc_info=True)
    return report
