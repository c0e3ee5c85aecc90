#!/usr/bin/env python
"""Slow clients: how long GET /login/ takes while anonymous clients trickle request bodies.

    .venv/bin/python bench/slow_clients.py [--clients 12] [--length 60000] [--requests 30] [--slots 10]

What runs (real processes, loopback only; under a minute, each request bounded by --timeout):
- a temporary SQLite database (migrated), a private Redis namespace (bench/_stack.py);
- one uvicorn process serving `mlops_dashboard.asgi` as `make run` starts it, with
  WEB_MAX_CONCURRENT_REQUESTS=--slots (10, the default) and WEB_BODY_TIMEOUT=120 (raised from
  30 s so that the trickling clients outlive the measurement);
- --requests sequential GET /login/ from one keep-alive client: first alone (the baseline), then
  while --clients raw-socket clients hold `POST /login/` with `Content-Length: --length` open and
  send one byte of the body every 0.5 s (the attack seen on the running stack announced 1,000,000,
  which is now refused at once: past WEB_ANONYMOUS_MAX_BODY, 64 KiB; 60,000 is let in).

Printed: p50 and max latency without and with the trickling clients, their ratio, and whether the
trickling clients were all still open (unanswered) at the end. Target: max under 1 s with 12.
Before request bodies were read ahead of the request slots, the 11th such client froze the server:
every GET timed out.
Redis: REDIS_URL's host, database --redis-db (13), key prefix `slow-<pid>` (deleted at the end).
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
from tests import rawhttp  # noqa: E402


def latencies(url: str, n: int, timeout: float) -> list[float]:
    """Seconds per GET /login/ (a timed-out request counts as `timeout`)."""
    out = []
    with httpx.Client(timeout=timeout) as client:
        for _ in range(n):
            started = time.perf_counter()
            try:
                client.get(url).raise_for_status()
                out.append(time.perf_counter() - started)
            except httpx.TimeoutException:
                out.append(timeout)
                client.close()
                client = httpx.Client(timeout=timeout)
    return out


class Tricklers:
    """n anonymous clients announcing a login form of `length` bytes, sending a byte of it every 0.5 s."""

    def __init__(self, port: int, n: int, length: int):
        self.socks = [rawhttp.open_request(port, "POST", "/login/", {
            "Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(length)}, b"username=")
            for _ in range(n)]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(0.5):
            for sock in self.socks:
                rawhttp.send_some(sock, b"a")

    def still_open(self) -> int:
        return sum(not rawhttp.answered(sock) for sock in self.socks)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        for sock in self.socks:
            sock.close()


def fmt(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:8.1f} ms   max {max(values) * 1000:8.1f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=12, help="trickling clients (default 12)")
    parser.add_argument("--length", type=int, default=60_000, help="Content-Length they announce (default 60000)")
    parser.add_argument("--requests", type=int, default=30, help="GET /login/ per phase (default 30)")
    parser.add_argument("--slots", type=int, default=10, help="WEB_MAX_CONCURRENT_REQUESTS (default 10)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a GET counts as timed out")
    parser.add_argument("--redis-db", type=int, default=13)
    args = parser.parse_args()

    stack = Stack("slow", redis_db=args.redis_db, postgres=False, LOG_LEVEL="WARNING",
                  WEB_MAX_CONCURRENT_REQUESTS=args.slots, WEB_BODY_TIMEOUT=120)
    try:
        stack.create_database()
        server = stack.server()
        url = f"{server.url}/login/"
        log(f"uvicorn on {server.url}: WEB_MAX_CONCURRENT_REQUESTS={args.slots}, WEB_BODY_TIMEOUT=120 (bench setting)")
        latencies(url, 5, args.timeout)  # warm up (templates, static manifest)
        alone = latencies(url, args.requests, args.timeout)
        tricklers = Tricklers(server.port, args.clients, args.length)
        try:
            time.sleep(1.0)  # let the server take them all in before measuring
            crowded = latencies(url, args.requests, args.timeout)
            still_open = tricklers.still_open()
        finally:
            tricklers.close()
        log(f"\nGET /login/, {args.requests} sequential requests per phase")
        log(f"  alone:                                {fmt(alone)}")
        log(f"  with {args.clients:3d} trickling POST /login/ open: {fmt(crowded)}   (Content-Length {args.length:,})")
        ratio = statistics.median(crowded) / statistics.median(alone)
        log(f"  ratio (p50 with / without): {ratio:.2f}   timed out: {sum(v >= args.timeout for v in crowded)}")
        log(f"  trickling clients still open (unanswered) at the end: {still_open} of {args.clients}")
        verdict = "met" if max(crowded) < 1.0 else "MISSED"
        log(f"  target (max under 1 s with the trickling clients open): {verdict}")
    except Exception:
        stack.show_logs()
        raise
    finally:
        stack.close()


if __name__ == "__main__":
    main()
