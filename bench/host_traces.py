"""Labelled traces of a host for the anomaly evaluation (bench/anomaly_eval.py), seeded and deterministic.

Traces (5 s samples, MONITORING_INTERVAL), 20 minutes of a quiet host first (the windows fill):
CPU a few % with cron blips, memory ~40 %, a 50 GB disk, loopback chatter of ~15 KB/s, the API p95
of the last minute's requests (computed from simulated requests as mlops_dashboard.runtime does),
socket ping p95, and a project's prediction rate computed as monitoring.state.predictions_rate does
(the totals over the last ~75 s).
- Incidents: CPU runaway (pinned at ~98 %), a memory leak (1–3 points/min), the disk filling
  (1–6 points/min), a latency spike (requests 15–80× slower for 3–10 min), prediction traffic
  (20–300/min for 20 min) dropping to zero, a worker killed.
- Normal shifts: an upload wave (1–4 uploads of 10–500 MB at 40–150 MB/s on loopback, each then
  profiled: CPU and memory up, the disk grows), a training wave (1–4 jobs over 5–20 min: CPU to
  45–80 %, memory +5–20 points, requests 1.3–2× slower), prediction traffic starting and stopping
  (sessions of 30 s–2 min, then traffic that starts and keeps flowing), a deploy (a build's CPU burst,
  a 10–30 s gap, a cold start: the first request of each server process 0.3–1.5 s, sockets
  reconnecting), a restart (a 20–120 s gap, network counters reset, a boot CPU burst, memory back
  lower, a cold start; half of the runs lose Redis: the windows start over). In half of the deploys
  and restarts a model serves steady traffic through them (failing during the gap).
"""

from __future__ import annotations

import math
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from mlops_dashboard.runtime import percentile  # noqa: E402

STEP = 5.0  # s between samples (MONITORING_INTERVAL)
WARMUP = 20 * 60  # s of quiet host before the event
CHECK_EVERY = 15.0  # MONITORING_CHECK_INTERVAL: worker pings
DISK_GB, MEMORY_GB = 50.0, 8.0
INCIDENTS = ("cpu_runaway", "memory_leak", "disk_filling", "latency_spike", "prediction_drop", "worker_missing")


@dataclass
class Trace:
    kind: str
    label: str  # incident or normal
    n: int
    values: dict = field(default_factory=dict)  # metric -> list of float | None (None: no sample / no figure)
    incident: tuple[float, float] | None = None  # (onset, end) in s
    worker_dies_at: float | None = None
    check_phase: float = 0.0


class Host:
    """A quiet host's series, with hooks to add workload; rendered into a Trace at the end."""

    def __init__(self, rng: np.random.Generator, minutes: float):
        self.rng = rng
        self.n = int(minutes * 60 / STEP)
        n = self.n
        self.t = np.arange(n) * STEP
        self.cpu = 2.0 + rng.gamma(2.0, 1.2, n)
        blips = rng.random(n) < 0.01
        self.cpu[blips] += rng.uniform(10, 35, blips.sum())
        self.memory = 38.0 + rng.uniform(-6, 6) + np.cumsum(rng.normal(0, 0.02, n)) + rng.normal(0, 0.15, n)
        self.disk = rng.uniform(35, 65) + self.t * 2e-5 + rng.normal(0, 0.005, n)
        self.load = 0.15 + rng.gamma(2.0, 0.12, n)
        self.net = np.exp(rng.normal(math.log(15_000), 0.5, n))
        self.api_rate = rng.uniform(4, 12)  # requests per minute on a quiet stack (pages, polling)
        self.api_factor = np.ones(n)
        self.slow_requests: list[tuple[float, float]] = []  # (t, ms): cold starts
        self.upload_requests: list[tuple[float, float]] = []  # (t, ms): file uploads (multipart)
        self.ws = np.exp(rng.normal(math.log(4.0), 0.35, n))
        self.ws_spikes: list[tuple[float, float]] = []
        self.pred_rate = np.zeros(n)  # offered predictions per minute
        self.gaps: list[tuple[float, float, bool]] = []  # (start, end, redis lost): no samples
        self.net_reset_at: set[int] = set()

    def idx(self, seconds: float) -> int:
        return max(0, min(self.n, int(round(seconds / STEP))))

    def gap(self, start: float, length: float, *, redis_lost: bool = False) -> None:
        self.gaps.append((start, start + length, redis_lost))
        self.net_reset_at.add(self.idx(start + length) + 1)

    def in_gap(self, t: float) -> bool:
        return any(a <= t < b for a, b, _ in self.gaps)

    def render(self, kind: str, label: str, *, timed_uploads: bool) -> Trace:
        rng, n = self.rng, self.n
        trace = Trace(kind=kind, label=label, n=n, check_phase=float(rng.uniform(0, CHECK_EVERY)))
        sampled = np.array([not self.in_gap(t) for t in self.t])
        trace.values["sampled"] = sampled.tolist()
        trace.values["redis_lost"] = [any(lost and b <= t < b + STEP for _, b, lost in self.gaps) for t in self.t]

        def series(values, low=0.0, high=None):
            out = np.clip(values, low, high)
            return [float(round(v, 3)) if ok else None for v, ok in zip(out, sampled)]

        trace.values["cpu_percent"] = series(self.cpu, 0, 100)
        trace.values["memory_percent"] = series(self.memory, 0, 100)
        trace.values["disk_percent"] = series(self.disk, 0, 100)
        trace.values["load_1"] = series(self.load)
        sent = series(self.net)
        recv = series(self.net * rng.uniform(0.9, 1.1, n))
        for i in self.net_reset_at:  # counters reset: no rate at the first sample after the restart
            if i < n:
                sent[i] = recv[i] = None
        trace.values["net_sent_rate"], trace.values["net_recv_rate"] = sent, recv
        # API p95 of the last minute's durations, across processes (runtime.percentile).
        requests: list[tuple[float, float]] = []
        for i, t in enumerate(self.t):
            if self.in_gap(t):
                continue
            count = rng.poisson((self.api_rate + self.pred_rate[i]) * STEP / 60.0)
            for _ in range(count):
                base = 25.0 if rng.random() < self.api_rate / (self.api_rate + self.pred_rate[i] + 1e-9) else 15.0
                requests.append((t + rng.uniform(0, STEP), base * math.exp(rng.normal(0, 0.45)) * self.api_factor[i]))
        requests += self.slow_requests
        if timed_uploads:
            requests += self.upload_requests
        requests.sort()
        trace.values["api_response_time_ms"] = _p95_series(self.t, requests, sampled)
        ws = sorted([(t, float(v)) for t, v in zip(self.t, self.ws)] + self.ws_spikes)
        trace.values["ws_response_time_ms"] = _p95_series(self.t, ws, sampled, per_socket=True)
        trace.values["predictions_per_minute"] = _prediction_rates(self, rng, sampled)
        return trace


def _p95_series(times, items, sampled, per_socket=False):
    """p95 of the items of the last 60 s at each sample (None when there is none)."""
    out, j = [], 0
    window: deque = deque()
    for t, ok in zip(times, sampled):
        while j < len(items) and items[j][0] <= t:
            window.append(items[j])
            j += 1
        while window and t - window[0][0] > 60.0:
            window.popleft()
        if not ok or not window:
            out.append(None)
            continue
        values = [v for _, v in window]
        if per_socket:  # one figure per socket: the last few pings of the tab's socket and the spikes
            values = values[-2:] + [v for _, v in window if v > 40]
        out.append(round(percentile(values, 95), 2))
    return out


def _prediction_rates(host: Host, rng, sampled) -> list[float | None]:
    """Predictions served (none while the server is down), and the rate as state.predictions_rate
    computes it at each sample from the running total (points kept in Redis for 90 s)."""
    total, points, out = 0, [], []
    for i, t in enumerate(host.t):
        if not host.in_gap(t):
            total += int(rng.poisson(host.pred_rate[i] * STEP / 60.0))
        if not sampled[i]:
            out.append(None)
            continue
        if any(lost and b <= t < b + STEP for _, b, lost in host.gaps):
            points = []
        points.append((t, total))
        points = [p for p in points if p[0] >= t - 90]
        oldest = next((p for p in points if p[0] >= t - 75), None)
        elapsed = t - oldest[0]
        out.append(0.0 if elapsed < 1 or total < oldest[1] else round((total - oldest[1]) * 60.0 / elapsed, 2))
    return out


def _ramp(length: int, rng, up: float = 6.0) -> np.ndarray:
    """0 → 1 over the first `up` samples (a job warming up), flat after."""
    return np.minimum(1.0, np.arange(length) / max(1.0, up))


def _upload(host: Host, rng, start: float) -> float:
    """One upload of 10–500 MB on loopback, then its profiling; returns when it ends."""
    size = math.exp(rng.uniform(math.log(10), math.log(500)))  # MB
    speed = rng.uniform(40, 150)  # MB/s
    seconds = size / speed
    t = start
    while t < start + seconds:  # bytes per 5 s bin, on both counters (loopback)
        chunk = min(STEP - (t % STEP), start + seconds - t)
        i = host.idx(t - (t % STEP))
        if i < host.n:
            host.net[i] += speed * 1e6 * chunk / STEP
            host.cpu[i] += 25 * chunk / STEP
        t += chunk
    host.upload_requests.append((start + seconds, seconds * 1000 + 50))
    a = host.idx(start + seconds)
    host.disk[a:] += size / 1000 / DISK_GB * 100
    profile = host.idx(size / rng.uniform(30, 80)) + 1  # profiling job: samples
    host.cpu[a:a + profile] += rng.uniform(35, 60)
    host.memory[a:a + profile] += size / 1000 / MEMORY_GB * 100 * 1.5
    return start + seconds + profile * STEP


def _serve(host: Host, rng, start: float = 0.0, end: float | None = None, rate: float | None = None) -> float:
    rate = rate if rate is not None else rng.uniform(20, 300)
    host.pred_rate[host.idx(start):host.idx(end) if end is not None else host.n] = rate
    return rate


def _cold_start(host: Host, rng, at: float) -> None:
    for _ in range(2):  # each server process's first request
        host.slow_requests.append((at + rng.uniform(0, 20), rng.uniform(300, 1500)))
    host.ws_spikes.append((at + rng.uniform(2, 10), rng.uniform(50, 300)))


def make_trace(kind: str, rng: np.random.Generator, *, timed_uploads: bool) -> Trace:
    onset = WARMUP
    label = "incident" if kind in INCIDENTS else "normal"
    minutes, end = 40, None
    if kind == "memory_leak":
        rate = rng.uniform(1, 3)
        minutes = WARMUP / 60 + 62 / rate + 5
    elif kind == "disk_filling":
        rate = rng.uniform(1, 6)
        minutes = WARMUP / 60 + 70 / rate + 5
    host = Host(rng, minutes)
    i0 = host.idx(onset)
    worker_dies_at = None
    if kind == "cpu_runaway":
        length = int(rng.uniform(10, 20) * 12)
        host.cpu[i0:i0 + length] = rng.normal(98, 1.2, len(host.cpu[i0:i0 + length]))
        host.load[i0:i0 + length] += rng.uniform(2, 4)
        end = onset + length * STEP
    elif kind == "memory_leak":
        grow = np.minimum(99 - host.memory[i0], (host.t[i0:] - onset) / 60 * rate)
        host.memory[i0:] += np.maximum(grow, 0)
        end = host.t[-1]
    elif kind == "disk_filling":
        host.disk[i0:] = np.minimum(100, host.disk[i0:] + (host.t[i0:] - onset) / 60 * rate)
        end = host.t[-1]
    elif kind == "latency_spike":
        length = int(rng.uniform(3, 10) * 12)
        host.api_factor[i0:i0 + length] = rng.uniform(15, 80)
        end = onset + length * STEP
    elif kind == "prediction_drop":
        _serve(host, rng, 0, onset)
        end = host.t[-1]
    elif kind == "worker_missing":
        worker_dies_at = onset + rng.uniform(0, STEP)
        host.cpu[i0:] = np.maximum(0.5, host.cpu[i0:] - 1.0)
        end = host.t[-1]
    elif kind == "upload_wave":
        t = onset
        for _ in range(int(rng.integers(1, 5))):
            t = _upload(host, rng, t) + rng.uniform(5, 60)
    elif kind == "training_wave":
        t = onset
        for _ in range(int(rng.integers(1, 5))):
            length = int(rng.uniform(5, 20) * 12 / 2)
            a = host.idx(t)
            shape = _ramp(len(host.cpu[a:a + length]), rng)
            level = rng.uniform(45, 80)
            host.cpu[a:a + length] = shape * level + (1 - shape) * host.cpu[a:a + length] + rng.normal(0, 4, len(shape))
            host.memory[a:a + length] += shape * rng.uniform(5, 20)
            host.load[a:a + length] += shape * rng.uniform(1, 3)
            host.api_factor[a:a + length] *= rng.uniform(1.3, 2.0)
            host.disk[a + length:] += rng.uniform(1, 50) / 1000 / DISK_GB * 100  # the model file
            t += length * STEP * rng.uniform(0.5, 1.2)
    elif kind == "predictions_start_stop":
        t = onset
        for _ in range(3):
            session = rng.uniform(30, 120)
            _serve(host, rng, t, t + session)
            t += session + rng.uniform(180, 480)
        _serve(host, rng, t)  # starts and keeps flowing
    elif kind == "deploy":
        if rng.random() < 0.5:  # half the runs with a model serving through it, half on a quiet stack
            _serve(host, rng)
        build = int(rng.uniform(20, 60) / STEP)
        host.cpu[i0:i0 + build] = rng.uniform(60, 90) + rng.normal(0, 5, build)
        down = onset + build * STEP
        length = rng.uniform(10, 30)
        host.gap(down, length)
        back = host.idx(down + length)
        host.memory[back:] -= rng.uniform(3, 8) * np.exp(-np.arange(host.n - back) / 24)
        _cold_start(host, rng, down + length)
    elif kind == "restart":
        if rng.random() < 0.5:
            _serve(host, rng)
        length = rng.uniform(20, 120)
        host.gap(onset, length, redis_lost=bool(rng.random() < 0.5))
        back = host.idx(onset + length)
        host.cpu[back:back + 3] += rng.uniform(40, 70)
        host.memory[back:] -= rng.uniform(5, 15) * np.exp(-np.arange(host.n - back) / 36)
        _cold_start(host, rng, onset + length)
    trace = host.render(kind, label, timed_uploads=timed_uploads)
    trace.worker_dies_at = worker_dies_at
    if label == "incident":
        trace.incident = (onset, float(end))
    return trace
