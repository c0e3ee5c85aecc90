#!/usr/bin/env python
"""/health/ under a crowd: what 30 anonymous clients polling /health/ cost the API, in one run.

    .venv/bin/python bench/health.py [--clients 30] [--seconds 15]

What runs (real processes, loopback only): a temporary SQLite database with a user and a DRF token,
one uvicorn process and one Celery worker as `make run` starts them (bench/_stack.py). One client
times GET /api/events/?limit=1 (keep-alive, one request after another) for --seconds alone, then
for --seconds again while --clients threads call /health/ in a loop, each on its own connection.

Printed: the API's p50/p95 latency in both phases and their ratio (crowded / alone), and the rate at
which /health/ was answered. /health/ runs its real checks (a Celery ping takes a second) at most
once a second per process; the crowd gets the cached round.
Redis: REDIS_URL's host, database 12, key prefix `health-<pid>` (deleted at the end).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench._stack import Stack, log  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_api(url: str, token: str, seconds: float) -> list[float]:
    took = []
    with httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=60) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = client.get(url + "/api/events/?limit=1")
            took.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"the API answered {response.status_code}: {response.text[:200]}")
    return took


def crowd(url: str, stop: threading.Event, counts: list[int], errors: list[str]):
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            try:
                response = client.get(url + "/health/")
                counts.append(response.status_code)
            except httpx.HTTPError as exc:
                errors.append(repr(exc)[:200])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the logs")
    args = parser.parse_args()

    stack = Stack("health", redis_db=12, keep=args.keep, postgres=False, LOG_LEVEL="WARNING")
    try:
        log(f"setup: {stack.database}, temp dir {stack.tmp}")
        stack.create_database()
        _, token = stack.create_user()
        server = stack.server()
        stack.start_workers(1, 1, beat_in_first=False)
        time_api(server.url, token, 2)  # warm up

        alone = time_api(server.url, token, args.seconds)
        stop, counts, errors = threading.Event(), [], []
        threads = [threading.Thread(target=crowd, args=(server.url, stop, counts, errors), daemon=True)
                   for _ in range(args.clients)]
        for t in threads:
            t.start()
        started = time.monotonic()
        crowded = time_api(server.url, token, args.seconds)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        elapsed = time.monotonic() - started

        log(f"\nAPI GET /api/events/?limit=1, {len(alone)} and {len(crowded)} requests:")
        log(f"  alone:                         p50 {statistics.median(alone):7.1f} ms   p95 {pct(alone, 0.95):7.1f} ms")
        log(f"  with {args.clients} clients on /health/:   p50 {statistics.median(crowded):7.1f} ms"
            f"   p95 {pct(crowded, 0.95):7.1f} ms")
        log(f"  ratio crowded / alone:         p50 {statistics.median(crowded) / statistics.median(alone):7.2f}"
            f"      p95 {pct(crowded, 0.95) / pct(alone, 0.95):7.2f}")
        log(f"/health/: {len(counts)} answers in {elapsed:.1f} s ({len(counts) / elapsed:.0f}/s), "
            f"statuses {sorted(set(counts))}, {len(errors)} errors {errors[:3]}")
        return 0
    except Exception:
        stack.show_logs()
        raise
    finally:
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
