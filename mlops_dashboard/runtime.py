"""What one process measures about itself, between two flushes of its collector.

Cheap, lock-protected, in-memory counters that request handling updates on its hot path (no Redis
call per request or per socket): open WebSocket connections, API request durations and WebSocket
ping round trips. A process's metrics collector writes them to Redis every few seconds under a key
with a TTL, and any process sums them across the whole deployment. No Django imports, so the
consumer and middleware can use it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

WINDOW_SECONDS = 60.0  # durations older than this no longer count as "recent"
MAX_SAMPLES = 2000

_lock = threading.Lock()
_connections = 0
_api_ms: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
# Each socket's last reported round trip (socket -> (when, ms)), most recent last: one figure per
# socket, so a socket that reports often (or lies) weighs no more than any other in the p95. A
# closed socket's figure stays for the window (it was measured); at most MAX_SAMPLES sockets.
_ws_rtt_ms: dict[str, tuple[float, float]] = {}


def connection_opened() -> None:
    global _connections
    with _lock:
        _connections += 1


def connection_closed() -> None:
    global _connections
    with _lock:
        _connections = max(0, _connections - 1)


def connections() -> int:
    return _connections


def record_api_duration(ms: float) -> None:
    with _lock:
        _api_ms.append((time.monotonic(), float(ms)))


def record_ws_rtt(ms, socket: str = "") -> bool:
    """A socket's last measured ping round trip (sent with its next ping), replacing its previous
    one. False if not plausible."""
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0 <= ms < 120_000:
        return False
    with _lock:
        _ws_rtt_ms.pop(socket, None)
        _ws_rtt_ms[socket] = (time.monotonic(), float(ms))
        while len(_ws_rtt_ms) > MAX_SAMPLES:
            del _ws_rtt_ms[next(iter(_ws_rtt_ms))]
    return True


def _recent(values: deque, now: float) -> list[float]:
    while values and now - values[0][0] > WINDOW_SECONDS:
        values.popleft()
    return [round(v, 2) for _, v in values]


def _recent_per_socket(now: float) -> list[float]:
    while _ws_rtt_ms:
        oldest = next(iter(_ws_rtt_ms))
        if now - _ws_rtt_ms[oldest][0] <= WINDOW_SECONDS:
            break
        del _ws_rtt_ms[oldest]
    return [round(v, 2) for _, v in _ws_rtt_ms.values()]


def snapshot() -> dict:
    """This process's figures: open sockets and the last minute's API durations and ping RTTs."""
    now = time.monotonic()
    with _lock:
        return {
            "pid": os.getpid(),
            "connections": _connections,
            "api_ms": _recent(_api_ms, now),
            "ws_rtt_ms": _recent_per_socket(now),
        }


def reset() -> None:
    global _connections
    with _lock:
        _connections = 0
        _api_ms.clear()
        _ws_rtt_ms.clear()


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


os.register_at_fork(after_in_child=reset)  # a forked child starts with no sockets of its own
