#!/usr/bin/env python
"""Anomaly alerts, labelled: the alert rules that watch host metrics, against synthetic traces of a
quiet host with incidents injected and normal workload shifts that must not alert.

    .venv/bin/python bench/anomaly_eval.py [--seed 15] [--runs 8]

No server, no database, no Redis: each trace is fed sample by sample to the detector's pure code,
`monitoring.anomaly.evaluate` (what monitoring.services.anomalies calls), with the service's own
bookkeeping replayed here (a 60-sample window per series, the 60 s gate between anomalies of a
series, one open alert per series that clears when the series is back near the baseline it opened
against). Beside it, the other rules of monitoring/defaults.py that see these incidents, replayed the
way monitoring.services.alerts and .watch run them: cpu-high, memory-high, disk-high (above the
threshold for 60 s straight) and worker-missing (the service check every 15 s; missing once unseen
for the rule's 30 s; a worker that shuts down cleanly says goodbye and is forgotten).
"Before" is the detector as it was (score against the whole window, both directions, no minimum
change, one sample enough, alert at a score of 12, priority high or critical) with the API timing
of file uploads still in the p95; "after" is the detector of monitoring/anomaly.py with its defaults.

Traces: bench/host_traces.py (a quiet host, incidents injected, normal workload shifts).

Printed: per incident type, the rules that alerted, recall and time to detect; per rule, precision
(alerts opened during an incident / all its alerts) and recall per incident type; the alerts each
normal shift raised; all before and after. Seeded and deterministic; a few seconds.

Then telemetry (--telemetry-runs, default 8; 0 skips it): the streaming detector of telemetry series
(monitoring/telemetry_detector.py, what monitoring.services.telemetry_anomalies runs on every ingested
reading) on the traces of bench/telemetry_traces.py (a machine's temperature, vibration and power with a
daily cycle, noise and glitches; step, drift, spike and stuck-sensor faults; normal days and gaps):
recall, precision and time to detect per trace kind, and overall. About a minute.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np  # noqa: E402

from monitoring import anomaly  # noqa: E402
from monitoring.defaults import DEFAULT_RULES  # noqa: E402

from host_traces import CHECK_EVERY, INCIDENTS, STEP, Trace, make_trace  # noqa: E402

WINDOW, MIN_SAMPLES, THRESHOLD, COOLDOWN = 60, 20, 6.0, 60  # the MONITORING_ANOMALY_* defaults
HOST_METRICS = ("cpu_percent", "memory_percent", "disk_percent", "load_1", "net_sent_rate", "net_recv_rate",
                "api_response_time_ms", "ws_response_time_ms")
NORMALS = ("upload_wave", "training_wave", "predictions_start_stop", "deploy", "restart")
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
RULES = {r["slug"]: r for r in DEFAULT_RULES}
THRESHOLD_RULES = [(r["slug"], r["metric"], r["threshold"], r["duration_seconds"]) for r in DEFAULT_RULES
                   if r["kind"] == "metric"]
# The detector before this change: MAD floors per metric, predictions streamed like a host metric.
OLD_FLOORS = {"cpu_percent": (2.0, 0.0), "memory_percent": (1.0, 0.0), "disk_percent": (0.5, 0.0),
              "load_1": (0.25, 0.1), "net_sent_rate": (10_000.0, 0.2), "net_recv_rate": (10_000.0, 0.2),
              "api_response_time_ms": (5.0, 0.1), "ws_response_time_ms": (5.0, 0.1),
              "predictions_per_minute": (5.0, 0.1)}


# --- the detectors -------------------------------------------------------------------------------------


@dataclass
class Alert:
    t: float
    rule: str
    subject: str
    priority: str


class NewSeries:
    """One series as monitoring.services.anomalies handles it: evaluate, gate, open, clear."""

    def __init__(self, metric: str, table):
        self.metric, self.table, self.spec = metric, table, table.get(metric, anomaly.DEFAULT_SPEC)
        self.window: deque = deque(maxlen=WINDOW)
        self.opened: float | None = None
        self.gate = (-1, -math.inf)  # (rank, until)
        self.rule = RULES["severe-anomaly"]

    def reset(self):
        self.window.clear()
        self.gate = (-1, -math.inf)

    def step(self, t: float, value: float) -> Alert | None:
        verdict = anomaly.evaluate(self.metric, self.window, value, threshold=THRESHOLD, min_samples=MIN_SAMPLES,
                                   opened=self.opened, table=self.table)
        self.window.append(value)
        if self.opened is not None and verdict.cleared:
            self.opened = None
            return None
        if not verdict.confirmed:
            return None
        rank = SEVERITY_RANK[verdict.severity]
        if self.gate[1] > t and self.gate[0] >= rank:
            return None
        self.gate = (rank, t + COOLDOWN)
        threshold = self.rule.get("threshold")
        if not self.spec.alerts or (threshold is not None and verdict.score.score < threshold):
            return None
        if self.opened is None:
            self.opened = round(verdict.score.median, 4)
            return Alert(t, "severe-anomaly", self.metric, anomaly.alert_priority(verdict.severity,
                                                                                    self.rule["priority"]))
        return None


class OldSeries:
    """The detector before: the whole window's median/MAD, both ways, alert at a score of 12."""

    def __init__(self, metric: str):
        self.metric = metric
        floor, relative = OLD_FLOORS[metric]
        self.spec = anomaly.MetricSpec(floor=floor, relative_floor=relative)
        self.window: deque = deque(maxlen=WINDOW)
        self.open = False
        self.gate = (-1, -math.inf)

    def reset(self):
        self.window.clear()
        self.gate = (-1, -math.inf)

    def step(self, t: float, value: float) -> Alert | None:
        result = anomaly.robust_score(self.window, value, min_samples=MIN_SAMPLES, spec=self.spec)
        self.window.append(value)
        if result is None:
            return None
        severity = anomaly.severity(result.score, THRESHOLD)
        if severity is None:
            self.open = False
            return None
        rank = SEVERITY_RANK[severity]
        if self.gate[1] > t and self.gate[0] >= rank:
            return None
        self.gate = (rank, t + COOLDOWN)
        if result.score >= 12 and not self.open:
            self.open = True
            return Alert(t, "severe-anomaly", self.metric, "critical" if severity == "critical" else "high")
        return None


def run_rules(trace: Trace, *, new: bool, table=None) -> list[Alert]:
    """Every alert the rules open on one trace."""
    alerts: list[Alert] = []
    metrics = HOST_METRICS + ("predictions_per_minute",)
    series = {m: NewSeries(m, table) if new else OldSeries(m) for m in metrics}
    held = {slug: None for slug, *_ in THRESHOLD_RULES}
    opened = {slug: False for slug, *_ in THRESHOLD_RULES}
    for i in range(trace.n):
        t = i * STEP
        if not trace.values["sampled"][i]:
            continue
        if trace.values["redis_lost"][i]:  # windows, gates and condition starts were in Redis
            for s in series.values():
                s.reset()
            held = dict.fromkeys(held)
        for metric, s in series.items():
            value = trace.values[metric][i]
            if value is not None:
                alert = s.step(t, value)
                if alert is not None:
                    alerts.append(alert)
        for slug, metric, limit, duration in THRESHOLD_RULES:
            value = trace.values[metric][i]
            if value is not None and value > limit:
                held[slug] = t if held[slug] is None else held[slug]
                if t - held[slug] >= duration and not opened[slug]:
                    opened[slug] = True
                    alerts.append(Alert(t, slug, metric, RULES[slug]["priority"]))
            else:
                held[slug], opened[slug] = None, False
    if trace.worker_dies_at is not None:  # worker-missing: pinged every 15 s, missing after 30 s unseen
        hold = RULES["worker-missing"]["duration_seconds"]
        check, last_seen = trace.check_phase, None
        while check < trace.n * STEP:
            if check < trace.worker_dies_at:
                last_seen = check
            elif last_seen is not None and check - last_seen >= hold:
                alerts.append(Alert(check, "worker-missing", "worker", RULES["worker-missing"]["priority"]))
                break
            check += CHECK_EVERY
    return alerts


# --- the evaluation -----------------------------------------------------------------------------------


def rule_name(alert: Alert) -> str:
    return f"anomaly:{alert.subject}" if alert.rule == "severe-anomaly" else alert.rule


def evaluate(seed: int = 15, runs: int = 8) -> dict:
    """Both detectors on `runs` traces of every incident and normal shift. Returns
    {"before"|"after": {"incidents": {kind: {...}}, "rules": {rule: {...}}, "normals": {kind: Counter},
    "anomaly_priorities": Counter, "precision", "recall", "normal_alerts", "runs"}}."""
    table = anomaly.specs()
    out = {}
    for name, new in (("before", False), ("after", True)):
        rng = np.random.default_rng(seed)
        incidents = {k: {"detected": 0, "runs": 0, "ttd": [], "by": Counter()} for k in INCIDENTS}
        rules: dict = defaultdict(lambda: {"tp": 0, "fp": 0, "hits": Counter(), "ttd": defaultdict(list)})
        normals = {k: Counter() for k in NORMALS}
        priorities = Counter()
        for kind in INCIDENTS + NORMALS:
            for _ in range(runs):
                trace = make_trace(kind, rng, timed_uploads=not new)
                alerts = run_rules(trace, new=new, table=table)
                first: dict = {}
                for alert in alerts:
                    rule = rule_name(alert)
                    if alert.rule == "severe-anomaly":
                        priorities[alert.priority] += 1
                    during = trace.incident is not None and trace.incident[0] <= alert.t <= trace.incident[1] + 60
                    rules[rule]["tp" if during else "fp"] += 1
                    if during:
                        first.setdefault(rule, alert.t - trace.incident[0])
                    elif trace.label == "normal":
                        normals[kind][f"{rule} ({alert.priority})"] += 1
                if trace.label == "incident":
                    item = incidents[kind]
                    item["runs"] += 1
                    if first:
                        item["detected"] += 1
                        item["ttd"].append(min(first.values()))
                    for rule, ttd in first.items():
                        item["by"][rule] += 1
                        rules[rule]["hits"][kind] += 1
                        rules[rule]["ttd"][kind].append(ttd)
        tp = sum(r["tp"] for r in rules.values())
        fp = sum(r["fp"] for r in rules.values())
        detected = sum(i["detected"] for i in incidents.values())
        total = sum(i["runs"] for i in incidents.values())
        out[name] = {"incidents": incidents, "rules": dict(rules), "normals": normals, "anomaly_priorities": priorities,
                     "precision": tp / (tp + fp) if tp + fp else 1.0, "recall": detected / total if total else 1.0,
                     "normal_alerts": sum(sum(c.values()) for c in normals.values()), "runs": runs}
    return out


def _ttd(values) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values):.0f} s (max {max(values):.0f})"


def report(result: dict) -> str:
    lines = []
    before, after = result["before"], result["after"]
    runs = after["runs"]
    lines.append(f"Incidents ({runs} runs each; an incident is caught by an alert opened between its onset and "
                 "a minute after its end):\n")
    lines.append("| incident | after: caught by | recall | time to detect (median, max) | before: recall | "
                 "before: time to detect |")
    lines.append("|---|---|---|---|---|---|")
    for kind in INCIDENTS:
        a, b = after["incidents"][kind], before["incidents"][kind]
        by = ", ".join(f"{r} {n}/{a['runs']}" for r, n in a["by"].most_common()) or "—"
        lines.append(f"| {kind.replace('_', ' ')} | {by} | {a['detected']}/{a['runs']} | {_ttd(a['ttd'])} | "
                     f"{b['detected']}/{b['runs']} | {_ttd(b['ttd'])} |")
    lines.append("\nPer rule (precision: its alerts opened during an incident / all its alerts):\n")
    lines.append("| rule | after: precision | alerts (during incidents + false) | recall per incident type | "
                 "before: precision | before: alerts |")
    lines.append("|---|---|---|---|---|---|")
    for rule in sorted(set(after["rules"]) | set(before["rules"])):
        a = after["rules"].get(rule, {"tp": 0, "fp": 0, "hits": Counter(), "ttd": {}})
        b = before["rules"].get(rule, {"tp": 0, "fp": 0, "hits": Counter(), "ttd": {}})

        def precision(r):
            total = r["tp"] + r["fp"]
            return f"{r['tp'] / total:.2f}" if total else "—"

        hits = ", ".join(f"{k.replace('_', ' ')} {n}/{runs} ({_ttd(a['ttd'][k])})" for k, n in a["hits"].items()) or "—"
        lines.append(f"| {rule} | {precision(a)} | {a['tp']} + {a['fp']} | {hits} | {precision(b)} | "
                     f"{b['tp']} + {b['fp']} |")
    lines.append("\nNormal workload shifts (alerts raised over all runs):\n")
    lines.append("| normal shift | after | before |")
    lines.append("|---|---|---|")
    for kind in NORMALS:
        a = ", ".join(f"{r} ×{n}" for r, n in after["normals"][kind].most_common()) or "none"
        b = ", ".join(f"{r} ×{n}" for r, n in before["normals"][kind].most_common()) or "none"
        lines.append(f"| {kind.replace('_', ' ')} | {a} | {b} |")
    lines.append("\nOverall (every rule above):\n")
    lines.append("| detector | precision | recall | alerts on normal shifts | anomaly alerts by priority |")
    lines.append("|---|---|---|---|---|")
    for name, r in (("after", after), ("before", before)):
        prios = ", ".join(f"{p} {n}" for p, n in sorted(r["anomaly_priorities"].items(),
                                                        key=lambda kv: -SEVERITY_RANK[kv[0]]))
        lines.append(f"| {name} | {r['precision']:.2f} | {r['recall']:.2f} | {r['normal_alerts']} | {prios} |")
    return "\n".join(lines)


def targets_met(result: dict) -> bool:
    after = result["after"]
    return after["precision"] >= 0.95 and after["recall"] >= 0.9 and after["normal_alerts"] == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--runs", type=int, default=8, help="traces per incident and per normal shift")
    parser.add_argument("--telemetry-runs", type=int, default=8, help="telemetry traces per kind (0: skip)")
    parser.add_argument("--range-only", action="store_true", help="only the telemetry range detector's section")
    args = parser.parse_args()
    ok = True
    if not args.range_only:
        result = evaluate(seed=args.seed, runs=args.runs)
        print(report(result))
        ok = targets_met(result)
        print(f"\nTargets (precision ≥ 0.95, recall ≥ 0.9, no alert from normal shifts): {'met' if ok else 'NOT met'}")
    if args.telemetry_runs:
        from telemetry_eval import range_evaluate, range_report, stream_evaluate, stream_overall, stream_report

        if not args.range_only:
            stream = stream_evaluate(seed=args.seed + 1, runs=args.telemetry_runs)
            print(stream_report(stream))
            overall = stream_overall(stream)
            print(f"\n| telemetry, streaming | precision {overall['precision']:.2f} | recall {overall['recall']:.2f} | "
                  f"false anomalies per series-day on normal traces {overall['false_per_day']:.3f} |")
        print(range_report(range_evaluate(seed=args.seed + 1, runs=args.telemetry_runs)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
