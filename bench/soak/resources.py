"""Resources, as bench/load.py measures them: the memory and CPU of each part of the stack, sampled
every few seconds and marked at the start and end of the measurement, and the problems in its logs."""

from __future__ import annotations

import os
import time

from bench._stack import log

MEMORY_TARGET_MB = 50.0


class ResourcesPart:
    """LoadBench's samples and marks, and the MEMORY, CPU and LOGS sections of the report."""

    def _sampler(self):
        import psutil

        psutil.cpu_percent(None)
        next_log = time.monotonic() + 30
        seq0, t0 = self.seq(), time.monotonic()
        while not self.stop_sampling.wait(self.args.sample_interval):
            try:
                self.samples.append({
                    "t": time.time(), "cpu": psutil.cpu_percent(None) * psutil.cpu_count(),
                    "srv": [s.rss_mb() for s in self.stack.servers], "wrk": [w.rss_mb() for w in self.stack.workers],
                    "db": self.stack.database_connections()})
            except Exception:  # noqa: BLE001 - a process went away; the end of the run says so
                continue
            if time.monotonic() >= next_log:
                next_log += 30
                s, seq = self.samples[-1], self.seq()
                done = sum(w["tally"]["training"]["ok"] for w in self.waves)
                log(f"  {time.monotonic() - t0:5.0f} s: waves {len(self.waves)}, trainings ok {done}, "
                    f"events {seq - seq0:,} ({(seq - seq0) / (time.monotonic() - t0):.1f}/s), CPU {s['cpu']:.0f}%, "
                    f"server RSS {'/'.join(f'{x:.0f}' for x in s['srv'])} MB, "
                    f"worker RSS {'/'.join(f'{x:.0f}' for x in s['wrk'])} MB"
                    + ("" if s["db"] is None else f", database connections {s['db'][0]} ({s['db'][1]} waiting for a lock)"))

    def mark(self) -> dict:
        import psutil

        st = self.stack
        cpu = {
            "servers": sum(s.cpu() for s in st.servers), "workers": sum(w.cpu() for w in st.workers),
            "clients": sum(c.cpu() for c in self.clients), "predictions": self.traffic.cpu(),
            "orchestrator": sum(psutil.Process().cpu_times()[:2]),  # itself only: its children are counted above
        }
        return {"t": time.time(), "mono": time.monotonic(), "seq": self.seq(), "cpu": cpu,
                "machine": psutil.cpu_times(), "load": os.getloadavg(),
                "srv": [s.rss_mb() for s in st.servers], "wrk": [w.rss_mb() for w in st.workers],
                "db": st.database_connections()}

    def report_memory(self) -> tuple[bool, str]:
        """The MEMORY section; returns its target: (met, text)."""
        a, st, s0, s1 = self.args, self.stack, self.start, self.end
        log("\nMEMORY (RSS, MB: start of the measurement -> end, growth; peak of the samples every "
            f"{a.sample_interval:g} s)")
        growth = []
        for i, s in enumerate(st.servers):
            g = s1["srv"][i] - s0["srv"][i]
            growth.append(g)
            peak = max([x["srv"][i] for x in self.samples] + [s1["srv"][i]])
            log(f"  server{i + 1} (uvicorn)     {s0['srv'][i]:7.1f} -> {s1['srv'][i]:7.1f}  {g:+7.1f}  peak {peak:7.1f}")
        for i, w in enumerate(st.workers):
            g = s1["wrk"][i] - s0["wrk"][i]
            peak = max([x["wrk"][i] for x in self.samples] + [s1["wrk"][i]])
            log(f"  worker{i + 1} (main+pool{'+beat' if i == 0 else ''}) {s0['wrk'][i]:7.1f} -> {s1['wrk'][i]:7.1f}  "
                f"{g:+7.1f}  peak {peak:7.1f}")
        log("  socket clients: " + ", ".join(f"{c['rss_mb']:.0f}" for c in self.checks) + " MB")
        if s0["db"] is not None:
            peak = max([x["db"] for x in self.samples if x["db"]] + [s1["db"]])
            log(f"  database connections: {s0['db'][0]} -> {s1['db'][0]}; highest sample {peak[0]} "
                f"({peak[1]} of them waiting for a lock)")
        secs = s1["mono"] - s0["mono"]
        return (max(growth) < MEMORY_TARGET_MB,
                f"server memory growth {', '.join(f'{g:+.1f}' for g in growth)} MB < {MEMORY_TARGET_MB:g} MB over {secs:.0f} s")

    def report_cpu(self):
        s0, s1 = self.start, self.end
        secs = s1["mono"] - s0["mono"]
        m0, m1 = s0["machine"], s1["machine"]
        idle = (m1.idle + getattr(m1, "iowait", 0)) - (m0.idle + getattr(m0, "iowait", 0))
        total_cpu = sum(m1) - sum(m0)
        busy = (1 - idle / total_cpu) * 100 * os.cpu_count() if total_cpu else float("nan")
        ours = {k: (s1["cpu"][k] - s0["cpu"][k]) / secs * 100 for k in s0["cpu"]}
        samples = [x["cpu"] for x in self.samples if s0["t"] <= x["t"] <= s1["t"]]
        log(f"\nCPU (% of one core; the machine has {os.cpu_count() * 100}%)")
        log(f"  machine                {busy:.0f}% on average, highest {self.args.sample_interval:g}-s sample "
            f"{max(samples, default=float('nan')):.0f}%; load average {s0['load'][0]:.1f} -> {s1['load'][0]:.1f}")
        log("  " + ", ".join(f"{k} {v:.0f}%" for k, v in ours.items())
            + f", everything else on the machine {max(0.0, busy - sum(ours.values())):.0f}%")

    def report_logs(self):
        st = self.stack
        problems = [p for s in st.servers for p in s.problems()]
        worker_problems = [line for w in st.workers for line in w.output().splitlines()
                           if "Traceback" in line or "ERROR" in line or "CRITICAL" in line]
        if problems or worker_problems:
            log(f"\nLOGS: {len(problems)} problem lines from the servers, {len(worker_problems)} from the workers")
            for line in (problems + worker_problems)[:6]:
                log(f"    {line[:200]}")
            too_many = sum("too many clients" in line for s in st.servers + st.workers for line in s.output().splitlines())
            if too_many:
                log(f"  PostgreSQL refused {too_many} connections (\"too many clients\"): see the database connections "
                    "under MEMORY" + ("" if st.env.get("DATABASE_CONN_MAX_AGE") == "0" else
                                      ". With DATABASE_CONN_MAX_AGE > 0 (the default on PostgreSQL) each request's "
                                      "thread keeps its own connection under ASGI; --env DATABASE_CONN_MAX_AGE=0 "
                                      "measures the rest"))
