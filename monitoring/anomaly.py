"""Streaming anomaly scores and decisions: a robust z-score of each new value against its series'
recent window, and whether it is an anomaly worth recording (and alerting on). No Django imports:
the service (monitoring.services.anomalies) and the labelled evaluation (bench/anomaly_eval.py)
both call `evaluate`, so the bench measures the detector the product runs.

score = |x - median(window)| / (1.4826 × max(MAD, floor)). The median and the MAD (median absolute
deviation) are barely moved by the outliers themselves, unlike a mean and standard deviation, and
the floor keeps a flat series (MAD 0) from calling every small wiggle an anomaly.

A score alone is not an anomaly. Each metric's `MetricSpec` (METRICS below, overridable with the
MONITORING_ANOMALY_METRICS setting) also says:
- `direction`: which way is bad: "up" (CPU, memory, disk, load, latency, network), "down"
  (prediction traffic that was flowing) or "both". A move the other way is never an anomaly, so
  traffic rising from zero, or CPU dropping when a job ends, is not one.
- `min_change`, `relative_change`: the smallest change from the baseline (the median) that counts,
  in the metric's unit, and as a share of the baseline; the larger applies. A few MB/s more on a
  quiet loopback interface is a 1000× score and still nothing.
- `agree` of `of`: how many of the last `of` samples (this one included, and it must be one of
  them) must be out of range the same way before an anomaly opens: a single spike is not one. The
  baseline is the window before those `of` samples, so an incident's first samples do not move it.
- `score`: the robust score a sample must reach (None: MONITORING_ANOMALY_THRESHOLD).
- `alerts`: whether a confirmed anomaly of the metric opens an alert (under the anomaly rule) or is
  only recorded (Monitoring page, `anomaly_detected`). CPU, memory and load rise by design when a
  training wave runs, network bytes with every upload: their anomalies are recorded, and the
  threshold rules (cpu-high, memory-high, disk-high) alert when a level is too high for a minute.
  Alerting by default: disk, API and socket latency, a project's prediction traffic.
- `floor`, `relative_floor`: the MAD floor, absolute and relative to |median|.
An open anomaly clears once the last two samples are back within the smallest counted change of
the baseline it opened against (not of a window that has since absorbed the incident).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution times this is its standard deviation

UP, DOWN, BOTH = "up", "down", "both"
DIRECTIONS = (UP, DOWN, BOTH)


@dataclass(frozen=True)
class MetricSpec:
    direction: str = BOTH
    min_change: float = 0.0
    relative_change: float = 0.0
    agree: int = 1
    of: int = 1
    score: float | None = None
    alerts: bool = True
    floor: float = 1e-6
    relative_floor: float = 0.05


MB = 1_000_000.0

# The defaults, per metric (units: percent points, load, bytes/s, ms, predictions per minute).
METRICS: dict[str, MetricSpec] = {
    # Training waves take CPU, memory and load up for minutes: recorded, not alerted (cpu-high,
    # memory-high and disk-high are the threshold rules that alert on levels).
    "cpu_percent": MetricSpec(UP, min_change=15.0, agree=6, of=8, alerts=False, floor=2.0, relative_floor=0.0),
    "memory_percent": MetricSpec(UP, min_change=10.0, agree=6, of=8, alerts=False, floor=1.0, relative_floor=0.0),
    "load_1": MetricSpec(UP, min_change=2.0, agree=6, of=8, alerts=False, floor=0.25, relative_floor=0.1),
    # 5 points of the disk within a few minutes (2.5 GB on a 50 GB disk): more than an upload wave.
    "disk_percent": MetricSpec(UP, min_change=5.0, agree=3, of=4, floor=0.5, relative_floor=0.0),
    # Network bytes are workload (uploads, downloads; on loopback both counters count them): an
    # anomaly is 25 MB/s above the usual rate for 30 s of 40 (750 MB, more than any single upload),
    # recorded, not alerted.
    "net_sent_rate": MetricSpec(UP, min_change=25 * MB, agree=6, of=8, alerts=False, floor=10_000.0,
                                relative_floor=0.2),
    "net_recv_rate": MetricSpec(UP, min_change=25 * MB, agree=6, of=8, alerts=False, floor=10_000.0,
                                relative_floor=0.2),
    # The p95 of the last minute: on a quiet stack one slow request (a cold start after a deploy)
    # holds it for 60 s, so 90 s of 100 must agree; and it must at least double and grow by 150 ms.
    "api_response_time_ms": MetricSpec(UP, min_change=150.0, relative_change=1.0, agree=18, of=20,
                                       floor=5.0, relative_floor=0.1),
    "ws_response_time_ms": MetricSpec(UP, min_change=150.0, relative_change=1.0, agree=18, of=20,
                                      floor=5.0, relative_floor=0.1),
    # A project's prediction rate (over the last minute): an anomaly when traffic that was flowing
    # (a baseline of 5/min or more) loses 80% of it; rising, from zero or not, never is.
    "predictions_per_minute": MetricSpec(DOWN, min_change=5.0, relative_change=0.8, agree=6, of=8, score=3.0,
                                         floor=1.0, relative_floor=0.05),
}
DEFAULT_SPEC = MetricSpec()
HOST_METRICS = tuple(m for m in METRICS if m != "predictions_per_minute")
PROJECT_METRICS = ("predictions_per_minute",)
STREAMED = tuple(METRICS)
# Kept for the callers of robust_score: the MAD floors per metric.
FLOORS = {m: (s.floor, s.relative_floor) for m, s in METRICS.items()}
DEFAULT_FLOOR = (DEFAULT_SPEC.floor, DEFAULT_SPEC.relative_floor)


def specs(overrides: dict | None = None, base: dict[str, MetricSpec] | None = None) -> dict[str, MetricSpec]:
    """The metric table with `overrides` ({metric: {field: value}}, e.g. from MONITORING_ANOMALY_METRICS)
    applied; ValueError naming the metric and field for anything invalid."""
    table = dict(METRICS if base is None else base)
    if not overrides:
        return table
    if not isinstance(overrides, dict):
        raise ValueError("MONITORING_ANOMALY_METRICS is a JSON object: {metric: {field: value}}.")
    names = {f.name for f in fields(MetricSpec)}
    for metric, changes in overrides.items():
        if not isinstance(changes, dict):
            raise ValueError(f"MONITORING_ANOMALY_METRICS[{metric!r}] is an object of fields.")
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"MONITORING_ANOMALY_METRICS[{metric!r}]: unknown field(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(names))}.")
        table[metric] = validate(replace(table.get(metric, DEFAULT_SPEC), **changes), metric)
    return table


def validate(spec: MetricSpec, metric: str = "") -> MetricSpec:
    def bad(field, text):
        return ValueError(f"MONITORING_ANOMALY_METRICS[{metric!r}].{field}: {text}")

    if spec.direction not in DIRECTIONS:
        raise bad("direction", f"one of {', '.join(DIRECTIONS)}")
    for name in ("min_change", "relative_change", "floor", "relative_floor"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise bad(name, "a number, 0 or more")
    for name in ("agree", "of"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 60:
            raise bad(name, "a whole number from 1 to 60")
    if spec.agree > spec.of:
        raise bad("agree", f"at most `of` ({spec.of})")
    if spec.score is not None and (isinstance(spec.score, bool) or not isinstance(spec.score, (int, float))
                                   or not spec.score > 0):
        raise bad("score", "a positive number, or null for MONITORING_ANOMALY_THRESHOLD")
    if not isinstance(spec.alerts, bool):
        raise bad("alerts", "true or false")
    if spec.floor <= 0 and spec.relative_floor <= 0:
        raise bad("floor", "a positive floor or relative_floor")
    return spec


@dataclass(frozen=True)
class Score:
    value: float
    median: float
    scale: float
    score: float


def robust_score(window, value: float, *, metric: str = "", min_samples: int = 20,
                 spec: MetricSpec | None = None) -> Score | None:
    """Score `value` against the window of earlier values; None until the window has min_samples."""
    values = [float(v) for v in window if v is not None]
    if len(values) < max(3, min_samples):
        return None
    spec = spec or METRICS.get(metric, DEFAULT_SPEC)
    median = _median(sorted(values))
    mad = _median(sorted([abs(v - median) for v in values]))
    scale = MAD_TO_SIGMA * max(mad, spec.floor, spec.relative_floor * abs(median))
    return Score(value=float(value), median=median, scale=scale, score=abs(float(value) - median) / scale)


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    middle = n // 2
    return ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


@dataclass(frozen=True)
class Verdict:
    """What `evaluate` found about one new sample.
    - `score`: the sample's Score against the baseline (None while the window is too short);
    - `confirmed`: an anomaly (direction, minimum change, score and agreement all hold);
    - `severity`: low..critical when confirmed (by the score over its threshold), else None;
    - `cleared`: (when an anomaly was open) the series is back within range of its `opened` baseline;
    - `agreeing`: how many of the last `of` samples were out of range."""
    score: Score | None
    confirmed: bool = False
    severity: str | None = None
    cleared: bool = False
    agreeing: int = 0


def required_change(spec: MetricSpec, baseline: float) -> float:
    return max(spec.min_change, spec.relative_change * abs(baseline))


def deviation(spec: MetricSpec, value: float, baseline: float) -> float:
    """How far `value` moved from `baseline` in the metric's bad direction (negative: the good way)."""
    if spec.direction == UP:
        return value - baseline
    if spec.direction == DOWN:
        return baseline - value
    return abs(value - baseline)


def evaluate(metric: str, window, value: float, *, threshold: float = 6.0, min_samples: int = 20,
             opened: float | None = None, table: dict[str, MetricSpec] | None = None) -> Verdict:
    """Decide about a new `value` of `metric` given `window`, the series' earlier values (oldest
    first, None for gaps), and `opened`: the baseline of the anomaly open on the series, if any."""
    spec = (table or METRICS).get(metric, DEFAULT_SPEC)
    earlier = [float(v) for v in window if v is not None]
    recent = earlier[len(earlier) - (spec.of - 1):] if spec.of > 1 else []
    recent.append(float(value))
    baseline = earlier[:len(earlier) - (spec.of - 1)] if spec.of > 1 else earlier
    cleared = False
    if opened is not None:
        need = required_change(spec, opened)
        cleared = all(deviation(spec, v, opened) < need for v in recent[-2:])
    result = robust_score(baseline, value, min_samples=min_samples, spec=spec)
    if result is None:
        return Verdict(score=None, cleared=cleared)
    limit = spec.score if spec.score is not None else threshold
    need = required_change(spec, result.median)

    def out(v: float) -> bool:
        moved = deviation(spec, v, result.median)
        return moved >= need and moved / result.scale >= limit

    agreeing = sum(out(v) for v in recent)
    confirmed = out(float(value)) and agreeing >= spec.agree
    return Verdict(score=result, confirmed=confirmed, cleared=cleared and not confirmed, agreeing=agreeing,
                   severity=severity(result.score, limit) if confirmed else None)


def severity(score: float, threshold: float) -> str | None:
    """None below the threshold; then low, medium, high, critical at 1×, 1.5×, 2× and 3× it."""
    if score < threshold:
        return None
    ratio = score / threshold
    if ratio >= 3:
        return "critical"
    if ratio >= 2:
        return "high"
    if ratio >= 1.5:
        return "medium"
    return "low"


def alert_priority(severity: str, rule_priority: str | None = "medium") -> str:
    """The priority of a metric anomaly's alert: low for a low anomaly, medium for a stronger one;
    a rule whose priority staff set to something other than medium imposes it."""
    if rule_priority and rule_priority != "medium":
        return rule_priority
    return "low" if severity == "low" else "medium"


def share_severity(share: float) -> str:
    """Severity of a dataset by the share of its rows flagged."""
    if share >= 0.10:
        return "critical"
    if share >= 0.05:
        return "high"
    if share >= 0.01:
        return "medium"
    return "low"
