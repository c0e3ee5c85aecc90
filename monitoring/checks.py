"""Checks of every component and integration, each answering a status and a latency.

Statuses: healthy, warning (slow, degraded, backlogged), critical (down), unknown (nothing to tell
yet) and inactive (nothing to serve: no model deployed). Services are what the dashboard runs on:
the database, Redis, the channel layer, the Celery workers (with their queues and active tasks), the
socket server and the serving model. Integrations are how they are wired together: the broker's
queues, the event bus and the beat scheduler.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from django.conf import settings
from django.db import close_old_connections

from mlops_dashboard import health as backbone
from mlops_dashboard.events import bus
from training import selectors as training_selectors

from . import state

SLOW_MS = 1000.0  # a check slower than this is a warning
INSPECT_TIMEOUT = 1.0
QUEUE_BACKLOG_WARNING = 500

LABELS = {
    "database": "Database",
    "redis": "Redis",
    "channel_layer": "Channel layer",
    "celery": "Celery workers",
    "socket_server": "Socket server",
    "model_serving": "Serving model",
    "broker": "Task broker",
    "event_bus": "Event bus",
    "scheduler": "Beat scheduler",
}
SERVICES = ("database", "redis", "channel_layer", "celery", "socket_server", "model_serving")
INTEGRATIONS = ("broker", "event_bus", "scheduler")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def component(name: str, status: str, latency_ms: float | None = None, detail: str = "", **extra) -> dict:
    if status == "healthy" and latency_ms is not None and latency_ms > SLOW_MS:
        status, detail = "warning", (detail + " · " if detail else "") + f"slow ({latency_ms:.0f} ms)"
    return {
        "name": name,
        "label": LABELS.get(name, name),
        "kind": "service" if name in SERVICES else "integration",
        "status": status,
        "latency_ms": None if latency_ms is None else round(latency_ms, 2),
        "detail": detail,
        "checked_at": now_iso(),
        **extra,
    }


def _backbone(name: str, check) -> dict:
    result = backbone._timed(check)
    if result["status"] == "ok":
        detail = result.get("vendor", "") if name == "database" else ""
        return component(name, "healthy", result["latency_ms"], detail)
    return component(name, "critical", result["latency_ms"], result.get("error", "down"), error=result.get("error"))


def check_database() -> dict:
    return _backbone("database", backbone.check_database)


def check_redis() -> dict:
    return _backbone("redis", backbone.check_redis)


def check_channel_layer() -> dict:
    return _backbone("channel_layer", backbone.check_channel_layer)


# --- Celery ---------------------------------------------------------------------------------------------


def _task_summary(task: dict) -> dict:
    started = task.get("time_start")
    return {
        "id": task.get("id"),
        "name": task.get("name") or task.get("type"),
        "args": str(task.get("args", ""))[:120],
        "started_at": datetime.fromtimestamp(started, UTC).isoformat() if started else None,
        "runtime_s": round(time.time() - started, 1) if started else None,
        "worker_pid": task.get("worker_pid"),
    }


def inspect_workers(known: int = 0) -> tuple[list[dict], float]:
    """Every worker answering a ping, with its queues and active tasks; and the ping's latency (ms)."""
    from mlops_dashboard.celery import app

    started = time.perf_counter()
    replies = app.control.ping(timeout=INSPECT_TIMEOUT, limit=known or None)
    latency = (time.perf_counter() - started) * 1000
    names = sorted(name for reply in replies for name in reply)
    if not names:
        return [], latency
    inspector = app.control.inspect(destination=names, timeout=INSPECT_TIMEOUT, limit=len(names))
    with ThreadPoolExecutor(max_workers=3) as pool:
        active_f = pool.submit(inspector.active)
        queues_f = pool.submit(inspector.active_queues)
        stats_f = pool.submit(inspector.stats)
        active, queues, stats = active_f.result() or {}, queues_f.result() or {}, stats_f.result() or {}
    workers = []
    for name in names:
        tasks = [_task_summary(t) for t in active.get(name, [])]
        pool_info = (stats.get(name) or {}).get("pool") or {}
        workers.append({
            "name": name,
            "status": "healthy",
            "queues": sorted(q.get("name", "") for q in queues.get(name, [])),
            "active": tasks,
            "active_count": len(tasks),
            "concurrency": pool_info.get("max-concurrency"),
            "pid": (stats.get(name) or {}).get("pid"),
        })
    return workers, latency


def check_celery(known: int = 0) -> dict:
    try:
        workers, latency = inspect_workers(known)
    except Exception as exc:  # the broker is down, or the control channel failed
        error = f"{type(exc).__name__}: {exc}"[:300]
        return component("celery", "critical", None, error, workers=[], error=error)
    if not workers:
        return component("celery", "critical", latency, "No worker answered a ping.", workers=[])
    busy = sum(w["active_count"] for w in workers)
    detail = f"{len(workers)} worker{'s' * (len(workers) != 1)}, {busy} active task{'s' * (busy != 1)}"
    # The ping waits for every worker it knows of: its latency is the slowest worker's answer.
    return component("celery", "healthy", min(latency, INSPECT_TIMEOUT * 1000), detail, workers=workers)


# --- the socket server, the serving model ------------------------------------------------------------


def check_socket_server(stats: dict | None = None) -> dict:
    stats = stats or state.process_stats()
    n = stats["asgi_processes"]
    if not n:
        return component("socket_server", "unknown", None, "No ASGI process has reported yet.",
                         processes=0, connections=0)
    conns = stats["active_connections"]
    detail = f"{n} process{'es' * (n != 1)}, {conns} open socket{'s' * (conns != 1)}"
    return component("socket_server", "healthy", stats["ws_response_time_ms"], detail, processes=n, connections=conns)


def check_model_serving() -> dict:
    """Whether any model version serves. A global component (on `dashboard`, seen by every user): it
    names no project's model, only how many serve; each project's model is on its own topic."""
    started = time.perf_counter()
    try:
        serving = training_selectors.model_versions_active_count()
        errors = training_selectors.model_versions_error_count()
    except Exception as exc:  # tables not migrated yet, database down
        return component("model_serving", "unknown", None, f"{type(exc).__name__}: {exc}"[:200])
    finally:
        close_old_connections()
    latency = (time.perf_counter() - started) * 1000
    if serving:
        return component("model_serving", "healthy", latency,
                         f"{serving} model version{'s' * (serving != 1)} serving", serving=serving)
    if errors:
        return component("model_serving", "warning", latency, f"No version serving; {errors} in error.", serving=0)
    return component("model_serving", "inactive", latency, "No model deployed.", serving=0)


# --- integrations -----------------------------------------------------------------------------------------


def check_broker(queue_names: list[str]) -> dict:
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    names = sorted(set(queue_names) or {"celery"})
    started = time.perf_counter()
    try:
        import redis

        c = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
        try:
            lengths = {name: int(c.llen(f"{prefix}{name}")) for name in names}
        finally:
            c.close()
    except Exception as exc:
        return component("broker", "critical", None, f"{type(exc).__name__}: {exc}"[:200], queues=[])
    latency = (time.perf_counter() - started) * 1000
    backlog = sum(lengths.values())
    status = "warning" if backlog > QUEUE_BACKLOG_WARNING else "healthy"
    detail = ", ".join(f"{n}: {v} waiting" for n, v in lengths.items())
    return component("broker", status, latency, detail, queues=[{"name": n, "waiting": v} for n, v in lengths.items()])


def check_event_bus() -> dict:
    started = time.perf_counter()
    try:
        c = bus.sync_client()
        seq_key, log_key, _ = bus.keys()
        pipe = c.pipeline(transaction=False)
        pipe.get(seq_key)
        pipe.zcard(log_key)
        seq, size = pipe.execute()
    except Exception as exc:
        return component("event_bus", "critical", None, f"{type(exc).__name__}: {exc}"[:200])
    latency = (time.perf_counter() - started) * 1000
    return component("event_bus", "healthy", latency, f"{int(size)} events in the replay log",
                     latest_id=int(seq or 0), log_size=int(size), log_capacity=settings.EVENT_LOG_SIZE)


def check_scheduler() -> dict:
    try:
        since = state.seconds_since("beat")
    except Exception as exc:
        return component("scheduler", "unknown", None, f"{type(exc).__name__}: {exc}"[:200])
    if since is None:
        return component("scheduler", "unknown", None, "No scheduled monitoring task has run yet.")
    limit = 3 * max(settings.MONITORING_INTERVAL, 1)
    if since > limit:
        return component("scheduler", "warning", None, f"Last scheduled task {since:.0f} s ago.", last_run_s=since)
    return component("scheduler", "healthy", None, f"Last scheduled task {since:.0f} s ago.", last_run_s=round(since, 1))


# --- all of them ---------------------------------------------------------------------------------------


def run_all(known_workers: int = 0) -> dict:
    """Every check, the slow ones in parallel: {services, integrations, workers, checked_at}."""

    def closing(fn, *args):
        try:
            return fn(*args)
        finally:
            close_old_connections()

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {
            "database": pool.submit(closing, check_database),
            "redis": pool.submit(closing, check_redis),
            "channel_layer": pool.submit(closing, check_channel_layer),
            "celery": pool.submit(closing, check_celery, known_workers),
            "model_serving": pool.submit(closing, check_model_serving),
            "event_bus": pool.submit(closing, check_event_bus),
        }
        results = {name: f.result() for name, f in futures.items()}
    try:
        results["socket_server"] = check_socket_server()
    except Exception as exc:
        results["socket_server"] = component("socket_server", "unknown", None, f"{type(exc).__name__}: {exc}"[:200])
    workers = results["celery"].get("workers", [])
    results["broker"] = check_broker([q for w in workers for q in w["queues"]])
    results["scheduler"] = check_scheduler()
    return {
        "services": [results[n] for n in SERVICES],
        "integrations": [results[n] for n in INTEGRATIONS],
        "workers": workers,
        "checked_at": now_iso(),
    }
