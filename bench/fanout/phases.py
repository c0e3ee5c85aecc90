"""The measuring side of bench/event_latency.py: a server per scenario, sockets opened in the client
processes, and phases of publishing at a set rate, each giving one row of figures."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench._stack import Stack, log
from bench.fanout import P99_BUDGET_MS
from bench.fanout.report import format_row
from tests.procs import Helper, Server

SCRIPT = Path(__file__).resolve().parent.parent / "event_latency.py"


def _merge_counts(dicts) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


class Bench:
    """One ASGI server at a time, the client processes holding its sockets and the publisher, on a
    private stack (SQLite, Redis namespace `bench-<pid>`)."""

    def __init__(self, args):
        self.args = args
        # MONITORING_COLLECTOR_ROLE=worker for every process, as `make run` starts its servers.
        self.stack = Stack("bench", redis_db=args.redis_db, keep=args.keep, postgres=False,
                           MONITORING_COLLECTOR_ROLE="worker")
        self.tmp, self.prefix, self.redis_url = self.stack.tmp, self.stack.prefix, self.stack.redis_url
        self.phase = 0
        self.rows: list[dict] = []
        self.checks: list[dict] = []
        self.closes: list[dict] = []
        self.predictions: list[dict] = []
        self.traffic = None

    # --- setup -----------------------------------------------------------------------------------

    def setup(self):
        import psutil

        log(f"setup: temp dir {self.tmp}, Redis {self.redis_url}, key prefix {self.prefix}")
        self.stack.create_database()
        # A maintainer of the default project: its sockets follow the project's topic, where the
        # publisher's activity events go (and --predict-rate deploys a model in it).
        _, self.token = self.stack.create_user("bench", role="maintainer")
        nice = self.args.client_nice if self.args.client_nice is not None else self.args.nice
        self.publisher = self.stack.helper(SCRIPT, "publisher", nice=nice)
        n_clients = self.args.clients
        self.clients = [self.stack.helper(SCRIPT, "client", i, nice=nice) for i in range(n_clients)]
        psutil.cpu_percent(None)
        log(f"setup: {psutil.cpu_count()} CPUs, {n_clients} client processes, publisher pid {self.publisher.proc.pid}")
        if self.args.predict_rate:
            from bench.fanout.predictions import Traffic, deploy_model

            self.traffic = Traffic(self.stack, deploy_model(self.stack), self.token, self.args.predict_rate)
            log(f"setup: a random forest on titanic deployed; {self.args.predict_rate:g} predictions/s to our "
                "server during its phases")

    def cleanup(self):
        self.stack.close()

    # --- sockets -------------------------------------------------------------------------------

    def open_sockets(self, server: Server, n: int, concurrency: int = 100) -> dict:
        shares = [n // len(self.clients) + (i < n % len(self.clients)) for i in range(len(self.clients))]
        active = [(c, k) for c, k in zip(self.clients, shares) if k]
        for c, k in active:
            c.send({"cmd": "open", "n": k, "url": server.ws_url, "token": self.token,
                    "concurrency": max(1, concurrency // len(active))})
        outs = [c.recv(timeout=150) for c, _ in active]
        self.active = [c for c, _ in active]
        # Give the server a moment to finish the last handshakes' group joins before publishing.
        time.sleep(0.5)
        return {
            "opened": sum(o["opened"] for o in outs), "errors": sum(o["errors"] for o in outs),
            "error_samples": [e for o in outs for e in o["error_samples"]][:5], "secs": max(o["secs"] for o in outs),
            "extensions": outs[0]["extensions"],
        }

    def close_sockets(self) -> dict:
        for c in self.active:
            c.send({"cmd": "close"})
        outs = [c.recv(timeout=90) for c in self.active]
        return {
            "closed": sum(o["closed"] for o in outs), "errors": sum(o["errors"] for o in outs),
            "unclean": sum(o["unclean"] for o in outs),
            "error_samples": [e for o in outs for e in o["error_samples"]][:5],
            "unclean_codes": sorted({c for o in outs for c in o["unclean_codes"]}),
            "secs": max(o["secs"] for o in outs),
        }

    # --- one measured phase --------------------------------------------------------------------------

    def run_phase(self, *, label: str, mode: str, server: Server | None, n: int, rate: float, duration: float,
                  drain: float, receivers: list[Helper], channel: str | None = None) -> dict:
        import numpy as np
        import psutil

        self.phase += 1
        for c in receivers:
            c.call({"cmd": "phase", "phase": self.phase})
        procs = {"clients": receivers, "publisher": [self.publisher]}
        cpu0 = {k: [p.cpu() for p in ps] for k, ps in procs.items()}
        srv_cpu0 = server.cpu() if server else 0.0
        srv_wait0 = server.runqueue_wait() if server else 0.0
        tracebacks0 = server.tracebacks() if server else 0
        rss_peak = [server.rss_mb() if server else 0.0]
        stop_sampling = threading.Event()

        def sample_rss():
            while not stop_sampling.wait(0.5):
                try:
                    rss_peak[0] = max(rss_peak[0], server.rss_mb())
                except Exception:  # noqa: BLE001
                    return

        if server:
            threading.Thread(target=sample_rss, daemon=True).start()
        spy = None
        if server and self.args.pyspy:
            # Development aid: sample the server's stacks during the publishing window.
            out = Path(self.args.pyspy) / f"{label.replace('/', '_')}-{n}x{rate:g}.txt"
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(server.proc.pid),
                                    "-d", str(int(duration)), "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        psutil.cpu_percent(None)
        t0, wall0 = time.time(), time.monotonic()
        pub = self.publisher.call({"cmd": "run", "mode": mode, "phase": self.phase, "rate": rate,
                                   "duration": duration, "channel": channel}, timeout=duration * 3 + 60)
        wall = time.monotonic() - wall0
        machine_cpu = psutil.cpu_percent(None) * psutil.cpu_count()
        srv_cpu = (server.cpu() - srv_cpu0) / wall * 100 if server else 0.0
        srv_wait = (server.runqueue_wait() - srv_wait0) / wall * 100 if server else 0.0
        cpu = {k: [(p.cpu() - c0) / wall * 100 for p, c0 in zip(ps, cpu0[k])] for k, ps in procs.items()}
        rss_end = server.rss_mb() if server else 0.0
        stop_sampling.set()
        if spy is not None:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()

        expected = pub["published"] * n
        deadline = time.monotonic() + drain
        while True:
            got = sum(c.call({"cmd": "count"})["received"] for c in receivers)
            if got >= expected or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        drained_in = drain - max(0.0, deadline - time.monotonic())
        srv_errors = server.tracebacks() - tracebacks0 if server else 0
        lat, reps = [], []
        for i, c in enumerate(receivers):
            path = self.tmp / f"lat-{self.phase}-{i}.bin"
            reps.append(c.call({"cmd": "report", "path": str(path)}))
            lat.append(np.fromfile(path, dtype=np.float64))
        lat = np.concatenate(lat) * 1000 if lat else np.array([])
        delivered = int(lat.size)
        last_rx = max((r["last_rx"] for r in reps if r["last_rx"]), default=None)
        span = (last_rx - t0) if last_rx else wall
        ours_cpu = srv_cpu + sum(cpu["clients"]) + sum(cpu["publisher"])
        row = {
            "label": label, "mode": mode, "server": f"{server.kind} {server.flags}" if server else "redis",
            "sockets": n, "rate": rate, "published": pub["published"], "pub_errors": pub["errors"],
            "expected": expected, "delivered": delivered,
            "offered_dps": pub["published"] * n / pub["secs"], "dps": delivered / span if span > 0 else 0.0,
            "p50": float(np.percentile(lat, 50)) if delivered else float("nan"),
            "p99": float(np.percentile(lat, 99)) if delivered else float("nan"),
            "max": float(lat.max()) if delivered else float("nan"),
            "srv_cpu": srv_cpu, "srv_rss": rss_end,
            "srv_wait": srv_wait, "srv_errors": srv_errors,
            "srv_us_per_delivery": (srv_cpu / 100 * wall) / delivered * 1e6 if delivered else float("nan"), "srv_rss_peak": rss_peak[0],
            "client_cpu": cpu["clients"], "pub_cpu": cpu["publisher"][0],
            "other_cpu": max(0.0, machine_cpu - ours_cpu),
            "pub_call_p50": pub["call_p50_ms"], "pub_call_p99": pub["call_p99_ms"], "pub_behind": pub["behind_ms"],
            "order_errors": sum(r["order_errors"] for r in reps),
            "per_socket_min": min((r["per_socket_min"] for r in reps if r["per_socket_min"] is not None), default=None),
            "unexpected_closes": sum(r["unexpected_closes"] for r in reps),
            "close_reasons": [x for r in reps for x in r["close_reasons"]][:3],
            "strays": _merge_counts(r["strays"] for r in reps),
            "drained_in": drained_in, "duration": duration,
        }
        row["ok"] = delivered == expected and expected > 0 and row["p99"] <= P99_BUDGET_MS and not srv_errors
        self.rows.append(row)
        log("  " + format_row(row))
        return row

    # --- scenarios -----------------------------------------------------------------------------------

    def floor(self, rate: float, duration: float):
        channel = f"{self.prefix}:floor"
        receiver = self.clients[0]
        receiver.call({"cmd": "floor", "redis_url": self.redis_url, "channel": channel})
        log(f"floor: raw redis-py PUBLISH -> redis.asyncio SUBSCRIBE, {rate:g} msg/s for {duration:g} s")
        return self.run_phase(label="floor", mode="floor", server=None, n=1, rate=rate, duration=duration,
                              drain=5, receivers=[receiver], channel=channel)

    def scenario(self, *, label: str, kind: str, app: str, mode: str, n: int, rates: list[float], duration: float,
                 drain: float, sweep: bool, settings_module: str = "mlops_dashboard.settings",
                 final_rate: float | None = None, close_check: bool = False, open_concurrency: int = 100):
        server = self.stack.server(kind, app=app, uvicorn_flags=self.args.uvicorn_flags, nice=self.args.nice,
                                   DJANGO_SETTINGS_MODULE=settings_module)
        rss_idle = server.rss_mb()
        log(f"{label}: {server.kind} pid {server.proc.pid} ({server.flags}), opening {n} sockets")
        opened = self.open_sockets(server, n, open_concurrency)
        log(f"  opened {opened['opened']}/{n} in {opened['secs']:.1f} s, errors {opened['errors']} "
            f"{opened['error_samples'][:2]}, extensions {opened['extensions'] or 'none'}, "
            f"server RSS {rss_idle:.0f} -> {server.rss_mb():.0f} MB")
        results = []
        traffic = self.traffic if mode == "ours" and opened["opened"] == n else None
        if traffic is not None:
            traffic.start(server.url)
        if opened["opened"] == n:
            for rate in rates:
                row = self.run_phase(label=label, mode=mode, server=server, n=n, rate=rate, duration=duration,
                                     drain=drain, receivers=self.active)
                results.append(row)
                if sweep and not row["ok"]:
                    break
            if final_rate is not None and all(r["rate"] != final_rate for r in results):
                results.append(self.run_phase(label=label, mode=mode, server=server, n=n, rate=final_rate,
                                              duration=duration, drain=drain, receivers=self.active))
        if traffic is not None:
            self.predictions.append(traffic.stop(f"{label}, {n:,} sockets"))
        closed = self.close_sockets()
        time.sleep(2.0 if close_check else 0.5)
        problems = server.problems()
        alive = server.proc.poll() is None
        log(f"  closed {closed['closed']} at once in {closed['secs']:.1f} s: client errors {closed['errors']}, "
            f"unclean closes {closed['unclean']} {closed['unclean_codes']}, server log problems {len(problems)}"
            + (f": {problems[:3]}" if problems else ""))
        self.stack.stop_server(server)
        self.closes.append({"label": label, "n": n, "opened": opened, "closed": closed, "tracebacks": server.tracebacks(),
                            "too_many": sum(bool(re.match(r"\S.*Too many connections", p)) for p in problems)})
        if close_check:
            self.checks.append({
                "label": label, "n": n, "opened": opened, "closed": closed, "problems": problems, "alive": alive,
                "received_all": all(r["delivered"] == r["expected"] for r in results) and bool(results),
                "unexpected_closes": sum(r["unexpected_closes"] for r in results),
            })
        return results

