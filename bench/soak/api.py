"""The API, as bench/load.py measures it: prediction traffic at a constant rate from a process of its
own (open loop: a request's latency counts from the moment it was due, so a slow server cannot slow
the offered load down), and every other call the bench makes, timed."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from array import array

from bench._stack import log
from bench.clients import KeepAliveClient, serve
from bench.soak import SCRIPT, pct

MODEL = "load-titanic"  # the deployed model that serves the prediction traffic
MAX_INFLIGHT = 500  # predictions waiting for an answer; past it the sender counts a request as not sent


# =================================================================================================
# The prediction sender (--role traffic)
# =================================================================================================


async def main():
    import numpy as np

    sched, lat, status = array("d"), array("d"), array("i")
    failures: list[str] = []
    state = {"stop": False, "lag": 0.0, "skipped": 0}
    inflight: set = set()
    generator = clients = None

    async def one(client, path, payload, due_mono, due_wall):
        try:
            code, body = await client.post(path, payload)
            if not 200 <= code < 300 and len(failures) < 10:
                failures.append(f"{code} {body[:200].decode(errors='replace')}")
        except Exception as exc:  # noqa: BLE001
            code = 0
            if len(failures) < 10:
                failures.append(repr(exc)[:200])
        sched.append(due_wall)
        lat.append((time.monotonic() - due_mono) * 1000.0)
        status.append(code)

    async def generate(cmd):
        payloads = [{"instances": [row]} for row in json.load(open(cmd["instances"]))]
        path, rate = cmd["path"], float(cmd["rate"])
        if rate <= 0:
            return
        t0, wall0 = time.monotonic() + 0.05, time.time() + 0.05
        for i in itertools.count():
            due = t0 + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                state["lag"] = max(state["lag"], -wait)
            if state["stop"]:
                return
            if len(inflight) >= MAX_INFLIGHT:  # the servers are far behind: count it, don't pile up more
                state["skipped"] += 1
                continue
            task = asyncio.create_task(one(clients[i % len(clients)], path, payloads[i % len(payloads)], due,
                                           wall0 + (due - t0)))
            inflight.add(task)
            task.add_done_callback(inflight.discard)

    async def handle(cmd: dict) -> dict | None:
        nonlocal clients, generator
        if cmd["cmd"] == "start":
            clients = [KeepAliveClient(u, cmd["token"]) for u in cmd["urls"]]
            generator = asyncio.create_task(generate(cmd))
            return {"ok": True}
        if cmd["cmd"] == "stop":
            state["stop"] = True
            if generator is not None:
                await generator
            if inflight:
                await asyncio.wait(list(inflight), timeout=60)
            for c in clients or ():
                await c.aclose()
            np.savez(cmd["out"], sched=np.frombuffer(sched, np.float64), lat=np.frombuffer(lat, np.float64),
                     status=np.frombuffer(status, np.int32))
            return {"sent": len(status), "skipped": state["skipped"], "unanswered": len(inflight),
                    "max_lag_ms": state["lag"] * 1000, "failures": failures}
        return None

    await serve(handle)


# =================================================================================================
# The orchestrator's side
# =================================================================================================


class ApiPart:
    """LoadBench's prediction traffic and API calls, reported."""

    def start_traffic(self):
        self.instances_path = self.stack.tmp / "instances.json"
        self.instances_path.write_text(json.dumps(self.instances))
        self.traffic = self.stack.helper(SCRIPT, "traffic")
        self.traffic.call({"cmd": "start", "urls": [f"http://127.0.0.1:{s.port}" for s in self.stack.servers],
                           "token": self.token, "path": f"/api/models/by-name/{MODEL}/predict/",
                           "rate": self.args.predict_rate, "instances": str(self.instances_path)})

    def report_api(self, secs: float) -> dict:
        """The API section; returns the errors it counts since setup (predictions, other calls)."""
        import numpy as np

        st, s0, s1 = self.stack, self.start, self.end
        pred = np.load(st.tmp / "predictions.npz")
        in_window = (pred["sched"] >= s0["t"]) & (pred["sched"] <= s1["t"])
        p_status = pred["status"][in_window]
        p_ok = (p_status >= 200) & (p_status < 300)
        p_lat, p_bad = pred["lat"][in_window][p_ok], int((~p_ok).sum())
        tr = self.traffic_result
        log("\nAPI (client-side latency of the 2xx answers; predictions from the moment each was due)")
        log(f"  predictions            {p_status.size:,} in {secs:.0f} s = {p_status.size / secs:.1f}/s, "
            f"p50 {pct(p_lat, 50):.1f} ms, p99 {pct(p_lat, 99):.1f} ms, max {p_lat.max() if p_lat.size else float('nan'):.1f} ms, "
            f"non-2xx {p_bad}, not sent (over {MAX_INFLIGHT} in flight) {tr['skipped']}, unanswered {tr['unanswered']}, "
            f"sender behind by up to {tr['max_lag_ms']:.0f} ms")
        calls = [c for c in self.api.calls if s0["t"] <= c[0] <= s1["t"]]
        ok = [c for c in calls if 200 <= c[3] < 300]
        log(f"  other calls            {len(calls):,}, p50 {pct([c[2] for c in ok], 50):.1f} ms, "
            f"p99 {pct([c[2] for c in ok], 99):.1f} ms, non-2xx {len(calls) - len(ok)}")
        for label in sorted({c[1] for c in calls}):
            ms = [c[2] for c in ok if c[1] == label] or [float("nan")]
            n = sum(c[1] == label for c in calls)
            log(f"    {label:20} {n:>6,}  p50 {pct(ms, 50):7.1f} ms  p99 {pct(ms, 99):7.1f} ms  "
                f"max {max(ms):7.1f} ms  non-2xx {n - sum(c[1] == label for c in ok)}")
        return {"pred_bad": int(((pred["status"] < 200) | (pred["status"] >= 300)).sum()), "skipped": tr["skipped"],
                "unanswered": tr["unanswered"], "calls": len(self.api.errors), "failures": tr["failures"]}
