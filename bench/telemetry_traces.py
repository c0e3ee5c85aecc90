"""Labelled telemetry traces for the anomaly evaluation (bench/anomaly_eval.py): one source, a
machine of a plant, reporting temperature, vibration and power at a fixed interval, with a daily
cycle, sensor noise, the sensor's resolution and the odd one-reading glitch; then, on one metric, a
fault of one kind, or nothing at all.

No Django, no database: plain numpy, seeded. Shared by the streaming detector's evaluation
(monitoring.anomaly through monitoring.services.telemetry_anomalies' replay) and the range
detector's (IsolationForest over aligned rows): both read the same `TelemetryTrace`.

Kinds:
- faults (`FAULTS`), each on one metric chosen at random, labelled from its onset to its end:
  - `step`: the level moves by 8–20 noise widths (standard deviations of the sensor's noise), up
    or down (a power loss, a heater stuck on), for 20 min – 2 h, then comes back;
  - `drift`: a slow, steady move, up or down, reaching 10–25 noise widths in 30 min – 3 h, and
    held there to the end of the trace (a sensor losing calibration, a bearing wearing);
  - `spike`: a burst of 3–10 readings 10–30 noise widths out (a knock, a surge), then normal
    again: longer than one reading, so not a glitch;
  - `stuck`: the sensor repeats its last reading, exactly, for 30 min – 3 h (a frozen driver, a
    cached value), while the real series keeps varying;
- normal (`NORMALS`), which must not raise anything:
  - `daily_cycle`: the cycle, noise, resolution and glitches alone (single readings 4–8 noise
    widths out now and then, a transmission's garbage: one reading is not a fault);
  - `gap`: the source goes quiet for 10–90 min (a network cut, a restart) and comes back at the
    level the cycle has reached by then.

Every trace has `clean_hours` of normal readings first (a history for the detectors), and the
fault starts at a random time of the day after that, so faults meet every phase of the cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FAULTS = ("step", "drift", "spike", "stuck")
NORMALS = ("daily_cycle", "gap")
KINDS = FAULTS + NORMALS
DAY = 86_400.0


@dataclass(frozen=True)
class MetricShape:
    """A metric of the simulated machine: its level, daily swing (amplitude, the hour of the
    peak), noise (standard deviation) and sensor resolution, in the metric's unit."""

    name: str
    unit: str
    level: float
    swing: float
    peak_hour: float
    noise: float
    resolution: float
    low: float = 0.0


# A press: warmer and busier in the afternoon shift, quieter at night.
SHAPES = (
    MetricShape("temperature", "°C", level=62.0, swing=6.0, peak_hour=15.0, noise=0.4, resolution=0.1),
    MetricShape("vibration", "mm/s", level=2.2, swing=0.4, peak_hour=14.0, noise=0.12, resolution=0.01),
    MetricShape("power", "kW", level=40.0, swing=9.0, peak_hour=14.5, noise=1.5, resolution=0.1),
)
METRICS = tuple(s.name for s in SHAPES)


@dataclass
class TelemetryTrace:
    """One source's readings. `values[metric][i]` is the reading at `times[i]` seconds after
    `start` (an epoch second), None where the source sent nothing. `faulty[metric][i]` labels the
    readings inside the fault; `fault` is (onset, end) in seconds after `start`, `fault_metric` the
    metric it hit (both None for a normal trace)."""

    kind: str
    label: str  # "fault" or "normal"
    step: float  # seconds between readings: the source's expected interval
    start: float
    times: np.ndarray
    values: dict = field(default_factory=dict)
    faulty: dict = field(default_factory=dict)
    fault: tuple[float, float] | None = None
    fault_metric: str | None = None
    params: dict = field(default_factory=dict)  # what was drawn: magnitude, duration, direction

    @property
    def n(self) -> int:
        return len(self.times)

    def epoch_ms(self, i: int) -> int:
        return int(round((self.start + float(self.times[i])) * 1000))

    def in_fault(self, seconds: float, *, grace: float = 0.0) -> bool:
        """Whether `seconds` (after start) falls in the fault, or within `grace` seconds after it."""
        return self.fault is not None and self.fault[0] <= seconds <= self.fault[1] + grace

    def readings(self, source: str = "press-07", metrics=None):
        """(source, metric, epoch_ms, value) for every reading, in time order: what an ingest sends."""
        names = tuple(metrics or self.values)
        for i in range(self.n):
            ms = self.epoch_ms(i)
            for name in names:
                value = self.values[name][i]
                if value is not None:
                    yield source, name, ms, value

    def series(self, metric: str) -> list[tuple[float, float]]:
        """(seconds after start, value) of one metric, gaps left out."""
        return [(float(t), v) for t, v in zip(self.times, self.values[metric]) if v is not None]


def cycle(shape: MetricShape, seconds: np.ndarray, phase: float) -> np.ndarray:
    """The metric's daily cycle at `seconds` (after a start `phase` seconds into the day)."""
    hours = ((seconds + phase) % DAY) / 3600.0
    return shape.level + shape.swing * np.cos(2 * math.pi * (hours - shape.peak_hour) / 24.0)


def make_trace(kind: str, rng: np.random.Generator, *, step: float = 60.0, hours: float = 30.0,
               clean_hours: float = 3.0, start: float = 1_796_083_200.0) -> TelemetryTrace:
    """One trace of `kind` (see KINDS), `hours` long at a reading every `step` seconds. `start`
    (epoch seconds, default 2026-12-01 UTC) sets the time of day of the first reading."""
    if kind not in KINDS:
        raise ValueError(f"unknown trace kind {kind!r}; known: {', '.join(KINDS)}")
    n = int(hours * 3600 / step)
    times = np.arange(n) * step
    phase = start % DAY
    trace = TelemetryTrace(kind=kind, label="fault" if kind in FAULTS else "normal", step=step, start=start,
                           times=times)
    clean = np.zeros(n, dtype=bool)
    raw: dict[str, np.ndarray] = {}
    for shape in SHAPES:
        # A slow wander of the level (hours), the cycle, and the sensor's noise.
        wander = np.cumsum(rng.normal(0, shape.noise * 0.02, n))
        raw[shape.name] = cycle(shape, times, phase) + wander + rng.normal(0, shape.noise, n)
        glitches = rng.random(n) < 0.002
        raw[shape.name][glitches] += rng.choice((-1, 1), glitches.sum()) * rng.uniform(4, 8, glitches.sum()) * shape.noise
    present = np.ones(n, dtype=bool)
    faulty = {name: clean.copy() for name in raw}
    frozen: dict[str, tuple[int, int]] = {}

    def onset_for(length: float) -> int:
        earliest = clean_hours * 3600
        latest = max(earliest, hours * 3600 - length - 1800)
        return int(rng.uniform(earliest, latest) / step)

    if kind in FAULTS:
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        values = raw[shape.name]
        sign = float(rng.choice((-1.0, 1.0)))
        if kind == "step":
            length = rng.uniform(20, 120) * 60
            share = rng.uniform(8, 20)
            a = onset_for(length)
            b = min(n, a + int(length / step))
            values[a:b] += sign * share * shape.noise
        elif kind == "drift":
            ramp = rng.uniform(30, 180) * 60
            share = rng.uniform(10, 25)
            a = onset_for(ramp)
            b = n
            k = np.arange(b - a) * step
            values[a:b] += sign * share * shape.noise * np.minimum(1.0, k / ramp)
            length = (b - a) * step
        elif kind == "spike":
            burst = int(rng.integers(3, 11))
            length = burst * step
            share = rng.uniform(10, 30)
            if sign < 0:  # not below the floor: a reading below zero is a different fault
                share = min(share, 0.8 * shape.level / shape.noise)
            a = onset_for(length)
            b = min(n, a + burst)
            values[a:b] += sign * share * shape.noise * rng.uniform(0.8, 1.2, b - a)
        else:  # stuck
            length = rng.uniform(30, 180) * 60
            a = onset_for(length)
            b = min(n, a + int(length / step))
            frozen[shape.name] = (a, b)
            share = 0.0
        faulty[shape.name][a:b] = True
        trace.fault = (float(times[a]), float(times[b - 1]))
        trace.fault_metric = shape.name
        trace.params = {"metric": shape.name, "direction": "up" if sign > 0 else "down", "sigmas": round(share, 2),
                        "minutes": round(length / 60, 1), "readings": b - a}
    elif kind == "gap":
        length = rng.uniform(10, 90) * 60
        a = onset_for(length)
        present[a:min(n, a + int(length / step))] = False
        trace.params = {"minutes": round(length / 60, 1)}
    for shape in SHAPES:
        # The sensor's resolution, then the floor (no negative vibration or power).
        values = np.maximum(np.round(raw[shape.name] / shape.resolution) * shape.resolution, shape.low)
        values = np.round(values, 6)
        if shape.name in frozen:
            a, b = frozen[shape.name]
            values[a:b] = values[a - 1] if a > 0 else values[a]
        trace.values[shape.name] = [float(v) if ok else None for v, ok in zip(values, present)]
        trace.faulty[shape.name] = [bool(f) for f in faulty[shape.name]]
    return trace


def make_traces(rng: np.random.Generator, runs: int = 8, kinds=KINDS, **options) -> list[TelemetryTrace]:
    """`runs` traces of each kind, in kind order (seeded by `rng`)."""
    return [make_trace(kind, rng, **options) for kind in kinds for _ in range(runs)]
