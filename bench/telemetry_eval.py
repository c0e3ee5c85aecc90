"""Telemetry sections of bench/anomaly_eval.py: the streaming detector (monitoring/telemetry_detector.py)
and the range detector (monitoring/isolation.py's detect_range) replayed over the labelled traces of
bench/telemetry_traces.py. Run through `bench/anomaly_eval.py` (`--telemetry-runs`, `--range-only`)."""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np  # noqa: E402

from anomaly_eval import _ttd  # noqa: E402

# --- telemetry: the streaming detector (monitoring.telemetry_detector) ------------------------------------
# Traces from bench/telemetry_traces.py (a machine's temperature, vibration and power, a reading a
# minute, 30 h: a daily cycle, noise, glitches; one fault or none). Each series is replayed the way
# monitoring.services.telemetry_anomalies scores it: its last `window` readings (gaps are missing
# rows), then detector.step with the series' state. An anomaly opened on the faulty metric between
# the fault's onset and `of` readings after its end is a true one; any other is false.


def stream_evaluate(seed: int = 16, runs: int = 8, spec=None) -> dict:
    """{kind: {"runs", "detected", "tp", "fp", "ttd": [s], "hours"}} for every telemetry trace kind."""
    import telemetry_traces

    from monitoring import telemetry_detector as detector

    spec = spec or detector.DEFAULT
    rng = np.random.default_rng(seed)
    out = {kind: {"runs": 0, "detected": 0, "tp": 0, "fp": 0, "ttd": [], "hours": 0.0} for kind in telemetry_traces.KINDS}
    for kind in telemetry_traces.KINDS:
        for _ in range(runs):
            trace = telemetry_traces.make_trace(kind, rng)
            item = out[kind]
            item["runs"] += 1
            item["hours"] += trace.n * trace.step / 3600 * len(trace.values)
            first = None
            for metric in trace.values:
                state, history = detector.SeriesState(), deque(maxlen=spec.window)
                for i, value in enumerate(trace.values[metric]):
                    if value is None:
                        continue
                    ms = trace.epoch_ms(i)
                    decision = detector.step(spec, state, [v for v, _ in history], value, ms, [t for _, t in history])
                    history.append((value, ms))
                    if not decision.opened:
                        continue
                    t = float(trace.times[i])
                    if metric == trace.fault_metric and trace.in_fault(t, grace=spec.of * trace.step):
                        item["tp"] += 1
                        first = t - trace.fault[0] if first is None else min(first, t - trace.fault[0])
                    else:
                        item["fp"] += 1
            if first is not None:
                item["detected"] += 1
                item["ttd"].append(first)
    return out


def stream_report(result: dict) -> str:
    import telemetry_traces

    lines = ["\nTelemetry, streaming detector (monitoring/telemetry_detector.py, default spec; traces of "
             "bench/telemetry_traces.py: 3 metrics, a reading a minute, 30 h each):\n",
             "| trace | runs | recall | precision (true / all anomalies) | false anomalies | "
             "time to detect (median, max) |", "|---|---|---|---|---|---|"]
    for kind, r in result.items():
        fault = kind in telemetry_traces.FAULTS
        total = r["tp"] + r["fp"]
        precision = f"{r['tp'] / total:.2f} ({r['tp']}/{total})" if total else "—"
        recall = f"{r['detected']}/{r['runs']}" if fault else "—"
        ttd = _ttd(r["ttd"]) if fault else "—"
        lines.append(f"| {kind.replace('_', ' ')} | {r['runs']} | {recall} | {precision} | {r['fp']} | {ttd} |")
    return "\n".join(lines)


def stream_overall(result: dict) -> dict:
    import telemetry_traces

    tp = sum(r["tp"] for r in result.values())
    fp = sum(r["fp"] for r in result.values())
    faults = [result[k] for k in telemetry_traces.FAULTS]
    normal_hours = sum(result[k]["hours"] for k in telemetry_traces.NORMALS)
    normal_fp = sum(result[k]["fp"] for k in telemetry_traces.NORMALS)
    return {"precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": sum(r["detected"] for r in faults) / max(1, sum(r["runs"] for r in faults)),
            "false_per_day": normal_fp / max(normal_hours, 1e-9) * 24}



# --- telemetry: the range detector (on-demand IsolationForest over a time range) ------------------------
# bench/telemetry_traces.py's traces: a day of normal readings (the baseline the detection is fitted
# on, the API's default being the 7 days before `start`), then the range asked about: 6 hours where
# a fault of one kind starts, or nothing happens. The rows are aligned as telemetry.selectors.
# aligned_rows does (the source's grid, a reading carried for at most two intervals, rows missing a
# metric dropped) and scored by monitoring.isolation.detect_range, the code the worker runs.

RANGE_BASELINE_HOURS, RANGE_HOURS = 24.0, 6.0
RANGE_CONTAMINATIONS = (0.01, 0.02, 0.05)
RANGE_GRACE = 120.0  # s after a fault's last reading still counted inside it (a carried reading)


def range_rows(trace, start: float, end: float):
    """Aligned rows of the trace in [start, end) seconds: (times, values n × metrics, faulty per row)."""
    from bench import telemetry_traces as tt

    names = list(tt.METRICS)
    step = trace.step
    keep, rows, faulty = [], [], []
    last = {name: None for name in names}  # (index, value) of the last reading
    for i, t in enumerate(trace.times):
        for name in names:
            value = trace.values[name][i]
            if value is not None:
                last[name] = (i, value)
        if not start <= t < end:
            continue
        row = []
        for name in names:
            seen = last[name]
            if seen is None or t - trace.times[seen[0]] > 2 * step:
                break
            row.append(seen[1])
        else:
            keep.append(float(t))
            rows.append(row)
            faulty.append(any(trace.faulty[name][i] for name in names))
    return np.array(keep), np.array(rows, dtype=float), np.array(faulty, dtype=bool)


def range_evaluate(seed: int = 15, runs: int = 8, contaminations=RANGE_CONTAMINATIONS) -> dict:
    """The range detector per trace kind and contamination: reading-level precision and recall
    (flagged readings inside a fault / all flagged; fault readings flagged / all fault readings),
    faults caught (at least one flagged reading inside), readings flagged on normal traces, and how
    often the reported metric (largest robust z) is the faulty one."""
    from bench import telemetry_traces as tt
    from monitoring import isolation

    rng = np.random.default_rng(seed)
    out = {c: {k: {"tp": 0, "fp": 0, "fn": 0, "caught": 0, "runs": 0, "normal_flags": 0, "normal_rows": 0,
                   "metric_right": 0} for k in tt.KINDS} for c in contaminations}
    for kind in tt.KINDS:
        for _ in range(runs):
            trace = tt.make_trace(kind, rng, hours=RANGE_BASELINE_HOURS + RANGE_HOURS,
                                  clean_hours=RANGE_BASELINE_HOURS)
            cut = RANGE_BASELINE_HOURS * 3600
            _, baseline, _ = range_rows(trace, 0.0, cut)
            times, rows, faulty = range_rows(trace, cut, float(trace.times[-1]) + 1)
            if trace.fault is not None:  # a carried reading just after the fault counts as inside
                faulty |= (times > trace.fault[1]) & (times <= trace.fault[1] + RANGE_GRACE) & (times >= trace.fault[0])
            for c in contaminations:
                result = isolation.detect_range(rows, contamination=c, baseline=baseline)
                flagged = result.flagged
                item = out[c][kind]
                item["runs"] += 1
                if trace.label == "fault":
                    item["tp"] += int((flagged & faulty).sum())
                    item["fp"] += int((flagged & ~faulty).sum())
                    item["fn"] += int((~flagged & faulty).sum())
                    item["caught"] += int(bool((flagged & faulty).any()))
                    right = tt.METRICS.index(trace.fault_metric)
                    item["metric_right"] += int((result.deviating[flagged & faulty] == right).sum())
                else:
                    item["normal_flags"] += int(flagged.sum())
                    item["normal_rows"] += len(rows)
    return {"runs": runs, "by": out}


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else "—"


def range_report(result: dict) -> str:
    from bench import telemetry_traces as tt

    runs = result["runs"]
    lines = [f"\nTelemetry, the range detector (IsolationForest fitted on {RANGE_BASELINE_HOURS:.0f} h of baseline, "
             f"scoring the next {RANGE_HOURS:.0f} h; {runs} traces per kind; per reading):\n",
             "| contamination | trace | precision | recall | faults caught | metric named right | "
             "flagged on normal traces |",
             "|---|---|---|---|---|---|---|"]
    for c, kinds in result["by"].items():
        total = {"tp": 0, "fp": 0, "fn": 0, "caught": 0, "runs": 0, "right": 0}
        for kind in tt.KINDS:
            r = kinds[kind]
            if kind in tt.FAULTS:
                lines.append(f"| {c:g} | {kind} | {_ratio(r['tp'], r['tp'] + r['fp'])} | "
                             f"{_ratio(r['tp'], r['tp'] + r['fn'])} | {r['caught']}/{r['runs']} | "
                             f"{_ratio(r['metric_right'], r['tp'])} | |")
                for key, value in (("tp", r["tp"]), ("fp", r["fp"]), ("fn", r["fn"]), ("caught", r["caught"]),
                                   ("runs", r["runs"]), ("right", r["metric_right"])):
                    total[key] += value
            else:
                lines.append(f"| {c:g} | {kind.replace('_', ' ')} | | | | | "
                             f"{_ratio(r['normal_flags'], r['normal_rows'])} of readings |")
        lines.append(f"| {c:g} | **all faults** | **{_ratio(total['tp'], total['tp'] + total['fp'])}** | "
                     f"**{_ratio(total['tp'], total['tp'] + total['fn'])}** | {total['caught']}/{total['runs']} | "
                     f"{_ratio(total['right'], total['tp'])} | |")
    return "\n".join(lines)
