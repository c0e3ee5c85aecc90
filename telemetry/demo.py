"""The demo plant of `make run`: four presses reporting temperature, vibration and power.

Pure simulation, no Django: `manage.py telemetry_demo` sends what it computes through the ingest API.
Every value is a function of (seed, machine, metric, time), so a restart, a backfill and a live
reading of the same instant agree, and a test can replay any hour.

A value is the machine's base level, a daily cycle (busiest mid-afternoon, quiet at night), noise,
and now and then a fault on one series: a step, a spike, a drift or a stuck sensor. Faults are drawn
per time slot from the seed, so `faults_between()` announces exactly what the values contain.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

MACHINES = ("press-01", "press-02", "press-03", "press-04")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str
    description: str
    base: float  # the level at the day's mean load
    daily: float  # half the swing of the daily cycle
    noise: float  # standard deviation of the noise
    decimals: int


METRICS = (
    MetricSpec("temperature", "°C", "Hydraulic oil temperature.", 62.0, 6.0, 0.35, 2),
    MetricSpec("vibration", "mm/s", "Frame vibration velocity (RMS).", 2.4, 0.6, 0.12, 3),
    MetricSpec("power", "kW", "Main drive power draw.", 38.0, 14.0, 1.2, 2),
)
METRIC_BY_NAME = {m.name: m for m in METRICS}

FAULT_KINDS = ("step", "spike", "drift", "stuck")
# The size of each kind, in noise standard deviations (a drift reaches it at its end).
FAULT_SIGMAS = {"step": 12.0, "spike": 25.0, "drift": 15.0, "stuck": 0.0}
# How long each kind lasts, in seconds (low, high); a spike is one reading.
FAULT_SECONDS = {"step": (240, 600), "spike": (0, 0), "drift": (600, 880), "stuck": (240, 600)}
# The busiest moment of the day, as a fraction of the day (15:00).
PEAK = 15 / 24


@dataclass(frozen=True)
class Fault:
    machine: str
    metric: str
    kind: str  # step | spike | drift | stuck
    start: float  # epoch seconds, on the reading grid
    end: float  # exclusive; a spike covers exactly its one reading
    magnitude: float  # the offset of a step, the peak of a spike, the final offset of a drift; 0 for stuck

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end


class Plant:
    """The plant's readings at any time.

    `interval`: seconds between two readings of a series (the reading grid is aligned to it);
    `day_seconds`: the length of the daily cycle (86,400: the real day, so charts line up with the clock);
    `faults_per_hour`: the mean number of faults over the whole plant per hour;
    `fault_slot`: faults are drawn per slot of this many seconds (at most one per slot)."""

    def __init__(self, *, seed: int = 0, interval: int = 5, day_seconds: int = 86_400,
                 faults_per_hour: float = 3.0, fault_slot: int = 900,
                 machines: tuple[str, ...] = MACHINES, metrics: tuple[MetricSpec, ...] = METRICS):
        if interval < 1 or day_seconds < 1 or fault_slot < interval:
            raise ValueError("interval and day_seconds must be positive, fault_slot at least interval")
        self.seed = seed
        self.interval = interval
        self.day_seconds = day_seconds
        self.fault_slot = fault_slot
        self.fault_probability = min(1.0, faults_per_hour * fault_slot / 3600)
        self.machines = machines
        self.metrics = metrics
        self._fault_cache: dict[int, Fault | None] = {}

    # --- the grid ---------------------------------------------------------------------------------

    def grid(self, start: float, end: float) -> list[int]:
        """The reading times in [start, end] (epoch seconds, multiples of the interval)."""
        first = math.ceil(start / self.interval) * self.interval
        last = math.floor(end / self.interval) * self.interval
        return list(range(int(first), int(last) + 1, self.interval))

    # --- the signal -------------------------------------------------------------------------------

    def load(self, t: float) -> float:
        """The plant's load in [-1, 1]: +1 at the day's peak (PEAK), -1 twelve hours later."""
        phase = (t / self.day_seconds - PEAK) % 1.0
        return math.cos(2 * math.pi * phase)

    def _machine_offset(self, machine: str, spec: MetricSpec) -> float:
        """Each machine runs a little hotter or cooler than the others, the same every run."""
        return (self._unit(f"offset:{machine}:{spec.name}") - 0.5) * 2 * spec.daily * 0.3

    def normal(self, machine: str, spec: MetricSpec, t: float) -> float:
        """The value without faults: base, daily cycle, noise."""
        noise = random.Random(self._key(f"noise:{machine}:{spec.name}:{int(t)}")).gauss(0.0, spec.noise)
        return spec.base + self._machine_offset(machine, spec) + spec.daily * self.load(t) + noise

    def value(self, machine: str, metric: str, t: float) -> float:
        """The reading of `machine`'s `metric` at `t` (epoch seconds), faults included."""
        spec = METRIC_BY_NAME[metric]
        for fault in self.faults_at(t):
            if fault.machine != machine or fault.metric != metric:
                continue
            if fault.kind == "stuck":
                return round(self.normal(machine, spec, fault.start), spec.decimals)
            base = self.normal(machine, spec, t)
            if fault.kind == "drift":
                span = max(fault.end - fault.start, 1)
                base += fault.magnitude * (t - fault.start) / span
            else:  # step, spike
                base += fault.magnitude
            return round(max(base, 0.0), spec.decimals)
        return round(max(self.normal(machine, spec, t), 0.0), spec.decimals)

    def readings(self, t: float) -> list[tuple[str, str, float]]:
        """Every series' reading at `t`: (machine, metric, value)."""
        return [(m, spec.name, self.value(m, spec.name, t)) for m in self.machines for spec in self.metrics]

    # --- faults -----------------------------------------------------------------------------------

    def fault_in_slot(self, slot: int) -> Fault | None:
        """The fault that starts in slot `slot` (epoch seconds // fault_slot), if any."""
        if slot in self._fault_cache:
            return self._fault_cache[slot]
        rng = random.Random(self._key(f"fault:{slot}"))
        fault = None
        if rng.random() < self.fault_probability:
            machine = rng.choice(self.machines)
            spec = rng.choice(self.metrics)
            kind = rng.choice(FAULT_KINDS)
            low, high = FAULT_SECONDS[kind]
            duration = max(self.interval, round(rng.uniform(low, high) / self.interval) * self.interval)
            # Starts and ends inside its slot, on the grid, so faults never overlap.
            duration = min(duration, self.fault_slot - self.interval)
            slot_start = slot * self.fault_slot
            steps = max((self.fault_slot - duration) // self.interval, 1)
            start = math.ceil(slot_start / self.interval) * self.interval + rng.randrange(steps) * self.interval
            sign = 1.0 if kind == "spike" or rng.random() < 0.7 else -1.0
            magnitude = sign * FAULT_SIGMAS[kind] * spec.noise if kind != "stuck" else 0.0
            fault = Fault(machine, spec.name, kind, float(start), float(start + duration), magnitude)
        if len(self._fault_cache) > 10_000:
            self._fault_cache.clear()
        self._fault_cache[slot] = fault
        return fault

    def faults_at(self, t: float) -> list[Fault]:
        fault = self.fault_in_slot(int(t // self.fault_slot))
        return [fault] if fault is not None and fault.covers(t) else []

    def faults_between(self, start: float, end: float) -> list[Fault]:
        """The faults that overlap [start, end), oldest first."""
        out = []
        for slot in range(int(start // self.fault_slot), int(end // self.fault_slot) + 1):
            fault = self.fault_in_slot(slot)
            if fault is not None and fault.start < end and fault.end > start:
                out.append(fault)
        return out

    # --- helpers ----------------------------------------------------------------------------------

    def _key(self, text: str) -> int:
        return int.from_bytes(hashlib.blake2b(f"{self.seed}:{text}".encode(), digest_size=8).digest(), "big")

    def _unit(self, text: str) -> float:
        return self._key(text) / 2**64


def registry(interval: int) -> dict:
    """What the registry says about the demo sources: {source: {description, labels,
    expected_interval_seconds, metrics: {metric: {unit, description}}}}."""
    return {
        machine: {
            "description": f"Demo data: a simulated hydraulic press ({machine}) of `make run`'s demo plant.",
            "labels": {"line": "demo", "kind": "press"},
            "expected_interval_seconds": interval,
            "metrics": {spec.name: {"unit": spec.unit, "description": spec.description} for spec in METRICS},
        }
        for machine in MACHINES
    }
