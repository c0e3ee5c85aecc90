"""Checks of the services the dashboard depends on, each answering ok or down with a latency."""

from __future__ import annotations

import asyncio
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


def check_redis():
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


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
