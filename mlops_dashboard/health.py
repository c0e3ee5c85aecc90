"""Checks of the services the dashboard depends on, each answering ok or down with a latency.

`/health/` serves `checks_cached()`: one round of real checks at most once a second per process,
whatever the number of callers (a Celery ping alone takes its full second).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections

CELERY_PING_TIMEOUT = 1.0


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        extra = check() or {}
        status = "ok"
    except Exception as exc:  # a health check reports failures, it never raises them
        extra = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        status = "down"
    result = {"status": status, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    result.update(extra)
    return result


def check_database():
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connections.close_all()  # this runs in a pool thread: don't leave its connection open
    return {"vendor": connections["default"].vendor}


def redis_client_name() -> str:
    return f"mlops-health-{os.getpid()}"  # the pid: a forked process makes a client of its own


_redis_clients: dict[tuple[str, int], redis.Redis] = {}
_redis_lock = threading.Lock()


def _redis_client() -> redis.Redis:
    """One client (one small connection pool) per process and URL, not a new one per check."""
    url = settings.REDIS_URL
    with _redis_lock:
        client = _redis_clients.get((url, os.getpid()))
        if client is None:
            client = _redis_clients[(url, os.getpid())] = redis.Redis.from_url(
                url, socket_timeout=2, socket_connect_timeout=2, max_connections=4, client_name=redis_client_name())
        return client


def check_redis():
    _redis_client().ping()


async def _layer_round_trip():
    layer = get_channel_layer()
    channel = await layer.new_channel("health.")
    await layer.send(channel, {"type": "health.check"})
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    if message.get("type") != "health.check":
        raise RuntimeError("unexpected message from the channel layer")


def check_channel_layer():
    async_to_sync(_layer_round_trip)()


def check_celery():
    from mlops_dashboard.celery import app

    replies = app.control.ping(timeout=CELERY_PING_TIMEOUT)
    workers = sorted(name for reply in replies for name in reply)
    if not workers:
        raise RuntimeError(f"no worker answered a ping within {CELERY_PING_TIMEOUT:g} s")
    return {"workers": workers}


CHECKS = {
    "database": check_database,
    "redis": check_redis,
    "channel_layer": check_channel_layer,
    "celery": check_celery,
}


def run_checks() -> dict[str, dict]:
    with ThreadPoolExecutor(max_workers=len(CHECKS)) as pool:
        futures = {name: pool.submit(_timed, check) for name, check in CHECKS.items()}
        return {name: future.result() for name, future in futures.items()}


# --- the cached round behind /health/ ------------------------------------------------------------------

MAX_AGE = 1.0  # a round younger than this is served as it is
STALE_MAX = 10.0  # an older round is served while one caller refreshes it; past this, callers wait


class _Round:
    def __init__(self):
        self.done = threading.Event()
        self.checks: dict | None = None
        self.finished = 0.0  # time.monotonic() when done
        self.checked_at = 0.0  # time.time() when done
        self.number = 0


_lock = threading.Lock()
_last: _Round | None = None  # the last finished round
_running: _Round | None = None  # the round in progress
rounds = 0  # rounds of real checks this process ran (shown to staff, read by tests)


def _finish(current: _Round) -> None:
    global _last, _running, rounds
    checks = None
    try:
        checks = run_checks()
    except Exception as exc:  # run_checks reports failures itself; this is only a last resort
        checks = {name: {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]} for name in CHECKS}
    finally:
        with _lock:
            if checks is not None:
                current.checks, current.finished, current.checked_at = checks, time.monotonic(), time.time()
                rounds += 1
                current.number = rounds
                _last = current
            _running = None  # whatever happened, the next caller may start a round
        current.done.set()


def checks_cached() -> tuple[dict, float, int]:
    """(checks, when they ran (epoch seconds), round number). A round younger than MAX_AGE is served
    as is. An older one (up to STALE_MAX) is served at once while the caller that found it old runs
    the next round; callers with nothing fresh enough to serve wait for that one round."""
    global _running
    with _lock:
        last, now = _last, time.monotonic()
        if last is not None and now - last.finished < MAX_AGE:
            return last.checks, last.checked_at, last.number
        mine = _running is None
        if mine:
            _running = _Round()
        current = _running
    if mine:
        _finish(current)
    elif last is not None and now - last.finished < STALE_MAX:
        return last.checks, last.checked_at, last.number
    else:
        current.done.wait(timeout=60)
        if current.checks is None:  # the round outlived its wait: say so rather than block longer
            return {name: {"status": "down", "error": "check timed out"} for name in CHECKS}, time.time(), rounds
    return current.checks, current.checked_at, current.number


def reset_cache() -> None:
    """Forget the last round (tests that change what the checks see)."""
    global _last
    with _lock:
        _last = None
