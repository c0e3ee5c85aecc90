"""Load and soak: the whole stack under mixed work, with every socket checked against the event log.

    .venv/bin/python bench/load.py                  # 1,000 sockets, 10-minute soak (about 13 minutes in all)
    .venv/bin/python bench/load.py --quick          # 100 sockets, 60 s (about 4 minutes in all)
    .venv/bin/python bench/load.py --sockets 1000 --duration 120   # a shorter run at full width
    .venv/bin/python bench/load.py --quick --env DATABASE_CONN_MAX_AGE=0   # a setting for every process of the stack

What runs (all real processes on this machine, loopback only, each in its own process group,
stopped at the end or on Ctrl-C; their logs in a temporary directory, shown when the run fails):
- a fresh database: PostgreSQL `mlops_load_<pid>` when one answers on 127.0.0.1:5432 (user
  postgres, dropped at the end), else a temporary SQLite file; migrated, with one user and a DRF
  token. Redis: REDIS_URL's host, database --redis-db (13), key prefix `load-<pid>` (every key
  with it deleted at the end), EVENT_LOG_SIZE large enough that the event log keeps the whole run (and no byte bound);
- the stack as `make run` starts it (scripts/run_stack.py): 2 uvicorn processes (DJANGO_DEBUG=false,
  host metrics left to the workers) and 2 Celery workers (prefork, --worker-concurrency 2 each),
  beat embedded in the first (-B) so the reaper, monitoring and pipeline kicks run as in production;
- setup through the REST API: titanic.csv, penguins.csv and scikit-learn's breast-cancer data
  uploaded (a worker validates and profiles them), a random forest trained on titanic and deployed
  as `load-titanic`, the demo pipeline (pipelines/demo.py: validate, clean, train, gate, deploy)
  created over the breast-cancer data;
- --sockets WebSockets (`Authorization: Token <key>`), half on each server, held by --clients
  processes (asyncio + uvloop, a minimal WebSocket client on asyncio Protocols); each pings every 15 s
  like static/js/realtime.js and, if the server closes it, reconnects with `?last_event_id=` like
  the browser does. Every socket records each event's id and receipt time;
- prediction traffic: a process sending POST /api/models/by-name/load-titanic/predict/ (one row)
  at a constant --predict-rate (open loop: a request's latency counts from the moment it was due,
  so a slow server cannot slow the offered load down), alternating between the servers;
- waves of work: each starts at once 10 training jobs (titanic and penguins; sgd, mlp, random
  forest, gradient boosting; a few seconds each), 10 dataset uploads (POST /api/datasets/,
  multipart) and 1 run of the demo pipeline; the next wave starts when every job of the last one
  is terminal (polled through the API). Failed, refused or stuck (--wave-timeout) jobs are errors.

The measurement starts after the sockets are open and a warm-up wave has finished, and lasts
--duration seconds (the wave running at the deadline is finished and counted). Then:
- expected events: the Redis event log (`<prefix>:events:log`, the truth) between a socket's
  connection (the sequence read right after its handshake) and the end of the measurement,
  addressed to `dashboard`, to the bench user's `user.<id>` or to their projects' `project.<id>`.
  Delivered/expected per socket, lost = expected but never received, duplicates and out-of-order
  ids per socket;
- event latency: receipt time in the client minus the event's `timestamp` (set when it was
  published; one machine clock), over the measured period;
- API latency: predictions, and separately every other call (uploads, job starts, polls);
- memory: RSS of each uvicorn process and of each worker (main process + pool + beat) at the
  start and the end of the measurement; CPU of the machine and of each part of the stack.
Targets (issue 7): 0 lost, event p99 < 250 ms, server memory growth < 50 MB over the soak; also
ids strictly increasing with no duplicate on every socket, and no API error, failed or stuck job.
The exit status is 0 only when every target is met.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._stack import Stack, log, raise_open_files_limit  # noqa: E402
from bench.clients import Api  # noqa: E402
from bench.soak.api import ApiPart  # noqa: E402
from bench.soak.events import EventsPart  # noqa: E402
from bench.soak.resources import ResourcesPart  # noqa: E402
from bench.soak.work import TRAININGS_PER_WAVE, UPLOADS_PER_WAVE, WorkPart, tally_text  # noqa: E402


class LoadBench(EventsPart, ApiPart, WorkPart, ResourcesPart):
    """The stack, its load and the report; each part measures one thing (bench/soak/)."""

    def __init__(self, args):
        self.args = args
        # One user starts a whole wave of uploads at once: UPLOADS_PER_USER (default 3) raised to fit.
        self.stack = Stack("load", redis_db=args.redis_db, keep=args.keep, EVENT_LOG_SIZE=args.event_log_size,
                           EVENT_LOG_MAX_BYTES=str(2**40),
                           **{"UPLOADS_PER_USER": UPLOADS_PER_WAVE, **dict(item.split("=", 1) for item in args.env)})
        self.pool = ThreadPoolExecutor(max_workers=TRAININGS_PER_WAVE + UPLOADS_PER_WAVE + 1)
        self.waves: list[dict] = []
        self.job_errors: list[str] = []
        self.samples: list[dict] = []  # every few seconds: machine CPU, RSS of servers and workers
        self.stop_sampling = threading.Event()
        self.api = None
        self.clients = []
        self.traffic = None

    # --- setup -----------------------------------------------------------------------------------

    def setup(self):
        import redis

        a, st = self.args, self.stack
        log(f"setup: temp dir {st.tmp}; database {st.database}; Redis {st.redis_url}, key prefix {st.prefix}")
        st.create_database()
        # A maintainer of the default project: it uploads, trains and deploys there, and its sockets
        # follow the project's topic.
        self.user_id, self.token = st.create_user("load", role="maintainer")
        st.start_servers(2)
        st.start_workers(2, a.worker_concurrency)
        log("setup: servers " + ", ".join(f"uvicorn pid {s.proc.pid} port {s.port}" for s in st.servers)
            + "; workers " + ", ".join(f"pid {w.proc.pid}" for w in st.workers)
            + f" (prefork x {a.worker_concurrency}, beat in worker1)")
        self.redis = redis.Redis.from_url(st.redis_url)
        self.seq_key, self.log_key = f"{st.prefix}:events:seq", f"{st.prefix}:events:log"
        self.api = Api([f"http://127.0.0.1:{s.port}" for s in st.servers], self.token)
        self.setup_work()

    # --- the run ---------------------------------------------------------------------------------

    def run(self) -> int:
        a = self.args
        self.setup()
        self.open_sockets()
        self.start_traffic()
        log(f"prediction traffic: {a.predict_rate:g} requests/s; warm-up wave")
        threading.Thread(target=self._sampler, daemon=True).start()
        warm = self.wave(0)
        log(f"warm-up wave done in {warm['secs']:.0f} s; measuring for {a.duration:g} s")
        self.start = self.mark()
        k = 0
        while time.monotonic() - self.start["mono"] < a.duration:
            k += 1
            w = self.wave(k)
            self.waves.append(w)
            log(f"  wave {k}: {w['secs']:.0f} s; {tally_text(w['tally'])}")
        self.end = self.mark()
        self.stop_sampling.set()
        self.traffic_result = self.traffic.call({"cmd": "stop", "out": str(self.stack.tmp / "predictions.npz")},
                                                timeout=120)
        self.check_sockets()
        closed = [c.call({"cmd": "close"}, timeout=120) for c in self.clients]
        self.closed = {k: sum(o[k] for o in closed) for k in ("closed", "errors", "unclean")}
        return self.report(warm)

    # --- report ----------------------------------------------------------------------------------

    def report(self, warm: dict) -> int:
        a, st, s0, s1 = self.args, self.stack, self.start, self.end
        secs = s1["mono"] - s0["mono"]
        bar = "=" * 100
        log(f"\n{bar}\nLOAD AND SOAK (bench/load.py)\n{bar}")
        log(f"stack: 2 uvicorn servers, 2 Celery workers x {a.worker_concurrency} (prefork; beat in worker1), "
            f"{st.database}, Redis {st.redis_url}; {os.cpu_count()} CPUs shared with whatever else runs")
        log(f"load: {a.sockets:,} sockets ({a.sockets // 2:,} per server, {a.clients} client processes, ping every "
            f"{a.ping_interval:g} s), predictions {a.predict_rate:g}/s, waves of {TRAININGS_PER_WAVE} trainings + "
            f"{UPLOADS_PER_WAVE} uploads + 1 pipeline run (one user: UPLOADS_PER_USER raised to {UPLOADS_PER_WAVE})")
        log(f"measured: {secs:.0f} s after a warm-up wave of {warm['secs']:.0f} s (--duration {a.duration:g})")

        lost, p99, order = self.report_events(secs)
        errors = self.report_work(secs, warm, self.report_api(secs))
        memory = self.report_memory()
        self.report_cpu()
        self.report_logs()
        results = [lost, p99, memory, order,
                   (errors == 0, f"no API error, no failed or stuck job: {errors} errors")]
        log(f"\nTARGETS ({a.sockets:,} sockets, {secs:.0f} s measured)")
        for ok, text in results:
            log(f"  {'PASS' if ok else 'FAIL'}  {text}")
        passed = all(ok for ok, _ in results)
        log(f"\n{'PASS' if passed else 'FAIL'}: run took {time.monotonic() - self.began:.0f} s")
        return 0 if passed else 1

    def close(self):
        self.stop_sampling.set()
        if self.api is not None:
            self.api.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.stack.close()


def orchestrate(args) -> int:
    limit = raise_open_files_limit(max(20_000, args.sockets * 3))
    if limit < args.sockets + 500:
        log(f"warning: open files limit {limit}; {args.sockets} sockets need more (ulimit -n)")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    bench = LoadBench(args)
    bench.began = time.monotonic()
    code = 2
    try:
        code = bench.run()
    except KeyboardInterrupt:
        log("\ninterrupted: stopping everything")
        code = 130
    except Exception as exc:  # noqa: BLE001 - show what the stack said, then tear it down
        import traceback

        traceback.print_exc()
        log(f"\nFAILED: {exc}")
        bench.stack.show_logs()
    finally:
        bench.close()
    return code


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 sockets, 60 s")
    parser.add_argument("--sockets", type=int, help="WebSockets, half on each server (default 1000; quick 100)")
    parser.add_argument("--duration", type=float, help="seconds measured after the warm-up wave (default 600; quick 60)")
    parser.add_argument("--predict-rate", type=float, default=50.0, help="prediction requests per second (default 50)")
    parser.add_argument("--clients", type=int, default=2, help="processes holding the sockets (default 2)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="pool processes per worker (default 2)")
    parser.add_argument("--wave-timeout", type=float,
                        help="seconds after which a wave's unfinished jobs count as stuck (default 300; quick 120)")
    parser.add_argument("--ping-interval", type=float, default=15.0, help="seconds between a socket's pings; 0: none")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between polls of a wave's jobs")
    parser.add_argument("--sample-interval", type=float, default=5.0, help="seconds between CPU/RSS samples")
    parser.add_argument("--drain", type=float, default=20.0, help="seconds the sockets get to receive the last events")
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("LOAD_REDIS_DB", "13")))
    parser.add_argument("--event-log-size", type=int, default=500_000, help="EVENT_LOG_SIZE: the whole run must fit")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for every process of the stack (repeatable), e.g. DATABASE_CONN_MAX_AGE=0")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--role", choices=["orchestrator", "sockets", "traffic"], default="orchestrator",
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role != "orchestrator":
        import uvloop

        from bench.soak import api, events

        uvloop.run(events.main() if args.role == "sockets" else api.main())
        return 0
    args.sockets = args.sockets or (100 if args.quick else 1000)
    args.duration = args.duration if args.duration is not None else (60.0 if args.quick else 600.0)
    args.wave_timeout = args.wave_timeout or (120.0 if args.quick else 300.0)
    if any("=" not in item for item in args.env):
        parser.error("--env takes NAME=VALUE")
    if args.sockets < 2 or args.sockets % 2:
        parser.error("--sockets must be an even number (half on each server)")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
