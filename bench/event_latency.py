"""Event latency and fan-out capacity of one ASGI process, against a live stack.

    .venv/bin/python bench/event_latency.py            # full run (about 4 minutes)
    .venv/bin/python bench/event_latency.py --quick    # smoke test: 1 and 100 sockets, 5 s points
    .venv/bin/python bench/event_latency.py --nice -10 --client-nice -5   # on a busy shared machine (root)

What runs (all real processes on this machine, loopback only):
- a temporary SQLite database (migrated) with one user and a DRF token;
- the ASGI server under test, one process: uvicorn (or daphne) serving `mlops_dashboard.asgi`;
- client processes (asyncio + uvloop + `websockets`) holding the sockets, authenticated with
  `Authorization: Token <key>`; they offer permessage-deflate as browsers do;
- a publisher process calling the real `mlops_dashboard.events.publish()` at a set rate; each
  event is an `activity_update` carrying the publisher's `time.time()`, a sequence number and the
  phase number in `activity.metadata`.
Latency is receipt time minus publish time (one machine clock). Server CPU and RSS come from psutil.

In the same run it measures
- the floor: a raw redis-py PUBLISH from the publisher process to a redis.asyncio SUBSCRIBE in a
  client process;
- the stock Channels path (`bench/stock_asgi.py`): channels_redis' default `RedisChannelLayer`, a
  plain `AsyncJsonWebsocketConsumer` relaying with `send_json`, the publisher calling
  `async_to_sync(layer.group_send)` per event as stock code in a Celery task does;
- daphne serving our app (at 100 sockets), to say which server is faster;
- with --predict-rate R: R predictions/s (a random forest on titanic, deployed in the bench's
  database; one row each, open loop, from a process of their own) sent to our server while its
  sockets receive events (bench/fanout/predictions.py), their latency reported per scenario.

Redis: the host of REDIS_URL (default 127.0.0.1:6379), database `--redis-db` (14), key prefix
`bench-<pid>`; every key with that prefix is deleted at the end. The server runs as `make run`
starts it (DJANGO_DEBUG=false, monitoring on but host metrics left to the workers, as
MONITORING_COLLECTOR_ROLE=worker; any other events that reach the sockets are counted apart, as
"other events").

Sweeps (100 sockets: rising events/s) stop at the first point that misses p99 <= 100 ms or loses an
event. At 1,000 sockets a p99 is about one event's fan-out, so it moves with any stall of the
machine: read it with the "server waiting for a CPU" and "other CPU" figures of the same row.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._stack import log, raise_open_files_limit  # noqa: E402
from tests.procs import UVICORN_FLAGS  # noqa: E402


def orchestrate(args) -> int:
    limit = raise_open_files_limit()
    if limit != -1 and limit < 4_500:
        log(f"warning: open files limit {limit}; the 2,000-socket check needs about 4,500 (ulimit -n)")
    from bench.fanout.phases import Bench
    from bench.fanout.predictions import describe
    from bench.fanout.report import report

    bench = Bench(args)
    started = time.monotonic()
    groups = {"ours": {"ours1", "ours100", "ours1000"}, "stock": {"stock100", "stock1000"}}
    only = None
    if args.only:
        only = set()
        for name in args.only.split(","):
            only |= groups.get(name, {name})

    def want(name):
        return only is None or name in only

    try:
        bench.setup()
        d = args.duration or (5.0 if args.quick else 10.0)
        d1000 = args.duration or 15.0  # 75 events per point: a p99 that is not one event's fan-out
        ours = dict(kind="uvicorn", app="mlops_dashboard.asgi:application", mode="ours")
        daphne = dict(kind="daphne", app="mlops_dashboard.asgi:application", mode="ours")
        # The stock layer fails handshakes with "Too many connections" above ~100 concurrent ones
        # (its pool's default size), so its sockets open 20 at a time.
        stock = dict(kind="uvicorn", app="bench.stock_asgi:application", mode="stock",
                     settings_module="bench.stock_settings", open_concurrency=20)
        sweep100 = [float(x) for x in args.rates.split(",")] if args.rates else [50, 100, 150, 200, 300, 400]
        if want("floor"):
            bench.floor(rate=1000, duration=2 if args.quick else 5)
        if args.quick:
            if want("ours1"):
                bench.scenario(label="ours/uvicorn", n=1, rates=[20], duration=d, drain=5, sweep=False, **ours)
            if want("ours100"):
                bench.scenario(label="ours/uvicorn", n=100, rates=[100], duration=d, drain=5, sweep=False, **ours)
            if want("stock100"):
                bench.scenario(label="stock/uvicorn", n=100, rates=[10], duration=d, drain=10, sweep=False, **stock)
        else:
            if want("ours1"):
                bench.scenario(label="ours/uvicorn", n=1, rates=[20], duration=d, drain=5, sweep=False, **ours)
            if want("ours100"):
                bench.scenario(label="ours/uvicorn", n=100, rates=sweep100, duration=d, drain=8, sweep=True, **ours)
            if want("ours1000"):
                bench.scenario(label="ours/uvicorn", n=1000, rates=[5, 10], duration=d1000, drain=8, sweep=True,
                               **ours)
            if want("close"):
                bench.scenario(label="ours/uvicorn", n=2000, rates=[2], duration=d, drain=8, sweep=False,
                               close_check=True, **ours)
            if want("daphne"):
                bench.scenario(label="ours/daphne", n=100, rates=[100, 200, 300], duration=d, drain=8, sweep=True,
                               **daphne)
            if want("stock100"):
                bench.scenario(label="stock/uvicorn", n=100, rates=[2, 5, 10, 20, 30], duration=d, drain=10, sweep=True,
                               final_rate=100, **stock)
            if want("stock1000"):
                bench.scenario(label="stock/uvicorn", n=1000, rates=[5], duration=d, drain=10, sweep=False, **stock)
        report(bench.rows, bench.closes, bench.checks)
        describe(bench.predictions)
        log(f"\nbench took {time.monotonic() - started:.0f} s; uvicorn flags: {args.uvicorn_flags}; "
            f"DJANGO_DEBUG=false; Redis {bench.redis_url}; niceness {args.nice}; load average "
            + " ".join(f"{x:.1f}" for x in os.getloadavg()))
        return 0
    finally:
        bench.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 100 sockets (and stock at 100), 5 s points")
    parser.add_argument("--duration", type=float, help="seconds of publishing per point (default 10, quick 5)")
    parser.add_argument("--clients", type=int, default=2, help="client processes holding the sockets (default 2)")
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("BENCH_REDIS_DB", "14")))
    parser.add_argument("--uvicorn-flags", default=os.environ.get("BENCH_UVICORN_FLAGS", UVICORN_FLAGS))
    parser.add_argument("--only", help="comma-separated subset of: floor, ours (= ours1, ours100, ours1000), close, "
                                       "daphne, stock (= stock100, stock1000)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server logs)")
    parser.add_argument("--nice", type=int, default=int(os.environ.get("BENCH_NICE", "0")),
                        help="run server, clients and publisher at this niceness (e.g. -10 as root, on a shared machine)")
    parser.add_argument("--client-nice", type=int, default=None,
                        help="niceness of the client and publisher processes (default: --nice)")
    parser.add_argument("--pyspy", metavar="DIR", help="record py-spy profiles of the server into DIR (slows it)")
    parser.add_argument("--predict-rate", type=float, default=0.0,
                        help="predictions/s (one row each) sent to our server during its phases (default 0: none)")
    parser.add_argument("--rates", help="events/s of the 100-socket sweep (default 50,100,150,200,300,400)")
    parser.add_argument("--role", choices=["orchestrator", "client", "publisher"], default="orchestrator",
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "client":
        import uvloop

        from bench.fanout import client

        uvloop.run(client.main())
        return 0
    if args.role == "publisher":
        from bench.fanout import publisher

        publisher.main()
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
