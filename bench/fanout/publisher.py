"""The publisher process of bench/event_latency.py: the real bus (ours), async_to_sync(group_send)
(stock), or a raw Redis PUBLISH (floor), at a set rate."""

from __future__ import annotations

import json
import os
import sys
import time
from array import array


def _activity(sent: float, seq: int, phase: int) -> dict:
    return {
        "id": seq, "title": "Benchmark event", "description": "Published by bench/event_latency.py.",
        "user": "bench", "action_type": "bench", "status": "info", "severity_level": "info",
        "duration": None, "metadata": {"sent": sent, "seq": seq, "phase": phase},
    }


def main():
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops_dashboard.settings")
    django.setup()
    import redis
    from asgiref.sync import async_to_sync
    from channels_redis.core import RedisChannelLayer
    from django.conf import settings

    from bench.stock_settings import CHANNEL_LAYERS as STOCK_LAYERS
    from mlops_dashboard.events import bus, catalog, publish

    stock_layer = RedisChannelLayer(**STOCK_LAYERS["default"]["CONFIG"])
    raw = redis.Redis.from_url(settings.REDIS_URL)

    from mlops_dashboard.projects import default_project

    project_id = default_project().pk  # the bench user's project: its sockets follow its topic

    def send_ours(sent, seq, phase, _channel):
        return publish(catalog.ActivityUpdate(activity=_activity(sent, seq, phase), project_id=project_id)) is not None

    def send_stock(sent, seq, phase, _channel):
        # What a stock Celery task does: a fresh event loop (and Redis connection) per call.
        event = {"type": "activity_update", "id": seq, "timestamp": bus.now_iso(),
                 "activity": _activity(sent, seq, phase)}
        async_to_sync(stock_layer.group_send)("dashboard", {"type": "event.forward", "event": event})
        return True

    def send_floor(sent, seq, phase, channel):
        raw.publish(channel, json.dumps({"sent": sent, "seq": seq, "phase": phase}))
        return True

    senders = {"ours": send_ours, "stock": send_stock, "floor": send_floor}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        send = senders[cmd["mode"]]
        rate, phase, channel = float(cmd["rate"]), cmd["phase"], cmd.get("channel")
        total = max(1, round(rate * cmd["duration"]))
        calls, errors, behind = array("d"), 0, 0.0
        start = time.monotonic() + 0.05
        for seq in range(total):
            wait = start + seq / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                behind = max(behind, -wait)
            t0 = time.perf_counter()
            try:
                ok = send(time.time(), seq, phase, channel)
            except Exception:  # noqa: BLE001
                ok = False
            calls.append(time.perf_counter() - t0)
            errors += not ok
        secs = time.monotonic() - start
        ordered = sorted(calls)
        sys.stdout.write(json.dumps({
            "published": total - errors, "errors": errors, "secs": secs, "behind_ms": behind * 1000,
            "call_p50_ms": ordered[len(ordered) // 2] * 1000, "call_p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        }) + "\n")
        sys.stdout.flush()
