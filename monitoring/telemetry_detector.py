"""Streaming anomaly detection on telemetry series: each new reading against its series' recent
history. No Django imports: monitoring.services.telemetry_anomalies runs it on ingested points and
bench/anomaly_eval.py replays it on labelled traces, so the bench measures what the product runs.

The level check is monitoring.anomaly.evaluate (robust z-score against the median/MAD of the
window before the last `of` readings, with direction, minimum change and `agree` of `of`
persistence). A telemetry series adds:
- a stuck check: a sensor that repeats one reading exactly, `stuck` times in a row or more (and
  more than twice the longest run of identical readings in its history), while its history varies,
  is stuck (a frozen driver, a cached value): a flat line has a MAD of 0 and scores nothing;
- episodes: a confirmed anomaly opens an episode of the series, which records one anomaly (and one
  alert), and nothing more while it lasts. It closes when `clear` readings in a row are back
  within the minimum change of the baseline it opened against (a stuck one: when readings vary
  again), or, for a level change, once a whole window has passed and the new level is no longer
  out of range (the series settled at a new normal). After closing, no new episode opens before
  `cooldown` seconds of reading time have passed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from . import anomaly
from .anomaly import BOTH, MetricSpec

LEVEL, STUCK = "level", "stuck"


@dataclass(frozen=True)
class SeriesSpec:
    """How one telemetry series is watched: monitoring.anomaly.MetricSpec's fields, and
    `enabled`, `window` (readings of history), `min_samples` (readings before scoring), `threshold`
    (the robust score, unless `score` is set), `stuck` (identical readings in a row, 0: off), `clear`
    (readings back in range that close an episode) and `cooldown` (s between episodes)."""

    enabled: bool = True
    direction: str = BOTH
    min_change: float = 0.0
    relative_change: float = 0.05
    agree: int = 3
    of: int = 5
    score: float | None = None
    alerts: bool = True
    floor: float = 1e-6
    relative_floor: float = 0.005
    window: int = 120
    min_samples: int = 30
    threshold: float = 6.0
    stuck: int = 10
    clear: int = 5
    cooldown: int = 300

    @property
    def metric_spec(self) -> MetricSpec:
        return MetricSpec(direction=self.direction, min_change=self.min_change, relative_change=self.relative_change,
                          agree=self.agree, of=self.of, score=self.score, alerts=self.alerts, floor=self.floor,
                          relative_floor=self.relative_floor)

    def as_dict(self) -> dict:
        return asdict(self)


DEFAULT = SeriesSpec()
FIELDS = tuple(f.name for f in fields(SeriesSpec))


def spec_from(overrides: dict | None, base: SeriesSpec = DEFAULT, *, where: str = "anomaly") -> SeriesSpec:
    """`base` with `overrides` ({field: value}) applied; ValueError naming `where`.field for
    anything invalid (an unknown field, a wrong type or range)."""
    if not overrides:
        return base
    if not isinstance(overrides, dict):
        raise ValueError(f"{where}: an object of fields ({', '.join(FIELDS)}).")
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}.")
    spec = replace(base, **overrides)

    def bad(name, text):
        return ValueError(f"{where}.{name}: {text}")

    if not isinstance(spec.enabled, bool):
        raise bad("enabled", "true or false")
    for name, low, high in (("window", 10, 1000), ("min_samples", 3, 1000), ("stuck", 0, 1000), ("clear", 1, 1000),
                            ("cooldown", 0, 86_400)):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise bad(name, f"a whole number from {low} to {high}")
    if spec.stuck == 1:
        raise bad("stuck", "0 (off) or 2 or more")
    if isinstance(spec.threshold, bool) or not isinstance(spec.threshold, (int, float)) or not (
            math.isfinite(spec.threshold) and spec.threshold > 0):
        raise bad("threshold", "a positive number")
    if spec.min_samples > spec.window:
        raise bad("min_samples", f"at most `window` ({spec.window})")
    try:
        anomaly.validate(spec.metric_spec)
    except ValueError as error:
        # anomaly.validate names the host setting: say the field of this spec instead.
        text = str(error).split("].", 1)[-1]
        name, _, rest = text.partition(":")
        raise bad(name, rest.strip()) from None
    return spec


@dataclass
class Episode:
    """An anomaly open on a series."""

    kind: str  # level | stuck
    baseline: float
    opened_ms: int
    readings: int = 0
    normal: int = 0
    anomaly_id: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Episode | None:
        if not data:
            return None
        return cls(**{k: data[k] for k in ("kind", "baseline", "opened_ms", "readings", "normal", "anomaly_id")
                      if k in data})


@dataclass
class SeriesState:
    """What a series' detection carries from one reading to the next (Redis keeps it between tasks)."""

    last_ms: int | None = None
    episode: Episode | None = None
    quiet_until_ms: int = 0
    # After a level episode: its baseline, and for how many more readings the history still holds
    # the episode's readings (a return to that baseline meanwhile is the recovery, not an anomaly).
    recovery: float | None = None
    recovery_left: int = 0

    def as_dict(self) -> dict:
        return {"last_ms": self.last_ms, "episode": self.episode.as_dict() if self.episode else None,
                "quiet_until_ms": self.quiet_until_ms, "recovery": self.recovery, "recovery_left": self.recovery_left}

    @classmethod
    def from_dict(cls, data: dict | None) -> SeriesState:
        data = data or {}
        return cls(last_ms=data.get("last_ms"), episode=Episode.from_dict(data.get("episode")),
                   quiet_until_ms=int(data.get("quiet_until_ms") or 0), recovery=data.get("recovery"),
                   recovery_left=int(data.get("recovery_left") or 0))


@dataclass(frozen=True)
class Decision:
    """What one reading did: `opened` an episode (record an anomaly: `kind`, `score`, `severity`,
    `baseline`, `details`), `closed` one (`reason`: back | settled | varying), or nothing."""

    opened: bool = False
    closed: bool = False
    kind: str | None = None
    score: float | None = None
    severity: str | None = None
    baseline: float | None = None
    reason: str | None = None
    details: dict | None = None


NOTHING = Decision()


def _run_at_end(values: list[float]) -> int:
    if not values:
        return 0
    last, run = values[-1], 0
    for v in reversed(values):
        if v != last:
            break
        run += 1
    return run


def _longest_run(values: list[float]) -> int:
    longest = run = 0
    previous = None
    for v in values:
        run = run + 1 if v == previous else 1
        previous = v
        longest = max(longest, run)
    return longest


def without_stuck_runs(spec: SeriesSpec, history: list[float]) -> list[float]:
    """The history with every run of `stuck` or more identical readings cut to its first reading: a
    stretch where the sensor was stuck is not the series' usual spread (its MAD would be 0)."""
    if not spec.stuck or _longest_run(history) < spec.stuck:
        return history
    kept, i = [], 0
    while i < len(history):
        j = i
        while j + 1 < len(history) and history[j + 1] == history[i]:
            j += 1
        kept.extend(history[i:j + 1] if j - i + 1 < spec.stuck else [history[i]])
        i = j + 1
    return kept


def stuck_run(spec: SeriesSpec, history: list[float], value: float) -> int:
    """The length of the run of readings identical to `value` ending with it, when that makes the
    sensor stuck (0 otherwise): at least `stuck` long, longer than twice the longest run in the
    history before it, and that history varies (its MAD is not 0)."""
    if not spec.stuck or len(history) < spec.min_samples:
        return 0
    run = _run_at_end([*history[-spec.stuck * 4:], value])
    if run < spec.stuck:
        return 0
    before = history[:len(history) - (run - 1)]
    if len(before) < spec.min_samples:
        return 0
    if run <= 2 * _longest_run(before):
        return 0
    ordered = sorted(before)
    median = anomaly._median(ordered)
    if anomaly._median(sorted(abs(v - median) for v in before)) <= 0:
        return 0
    return run


def step(spec: SeriesSpec, state: SeriesState, history: list[float], value: float, at_ms: int) -> Decision:
    """Decide about one new reading (`value` at `at_ms`) of a series whose earlier readings are
    `history` (oldest first, at most spec.window); updates `state` in place."""
    state.last_ms = at_ms if state.last_ms is None else max(state.last_ms, at_ms)
    table = {"series": spec.metric_spec}
    episode = state.episode
    if episode is not None:
        episode.readings += 1
        if episode.kind == STUCK:
            varying = bool(history) and value != history[-1]
            episode.normal = episode.normal + 1 if varying else 0
            done = "varying" if episode.normal >= 1 else None
        else:
            need = anomaly.required_change(spec.metric_spec, episode.baseline)
            back = anomaly.deviation(spec.metric_spec, value, episode.baseline) < need
            episode.normal = episode.normal + 1 if back else 0
            done = "back" if episode.normal >= spec.clear else None
            if done is None and episode.readings >= spec.window:
                verdict = anomaly.evaluate("series", without_stuck_runs(spec, history), value, threshold=spec.threshold,
                                           min_samples=spec.min_samples, table=table)
                if verdict.score is not None and not verdict.agreeing:
                    done = "settled"
        if done is None:
            return NOTHING
        state.episode = None
        state.quiet_until_ms = at_ms + spec.cooldown * 1000
        if episode.kind == LEVEL:
            state.recovery, state.recovery_left = episode.baseline, spec.window
        return Decision(closed=True, kind=episode.kind, baseline=episode.baseline, reason=done)
    recovering = state.recovery is not None and state.recovery_left > 0
    if recovering:
        state.recovery_left -= 1
    else:
        state.recovery = None
    if at_ms < state.quiet_until_ms:
        return NOTHING
    run = stuck_run(spec, history, value)
    if run:
        limit = spec.score if spec.score is not None else spec.threshold
        state.episode = Episode(kind=STUCK, baseline=value, opened_ms=at_ms)
        return Decision(opened=True, kind=STUCK, score=float(limit), severity="medium", baseline=value,
                        details={"kind": STUCK, "identical_readings": run})
    verdict = anomaly.evaluate("series", without_stuck_runs(spec, history), value, threshold=spec.threshold,
                               min_samples=spec.min_samples, table=table)
    if not verdict.confirmed:
        return NOTHING
    if recovering and anomaly.deviation(spec.metric_spec, value, state.recovery) < anomaly.required_change(
            spec.metric_spec, state.recovery) + 3 * verdict.score.scale:
        return NOTHING  # back near the baseline of the episode that just closed
    result = verdict.score
    baseline = round(result.median, 6)
    state.episode = Episode(kind=LEVEL, baseline=baseline, opened_ms=at_ms)
    return Decision(opened=True, kind=LEVEL, score=result.score, severity=verdict.severity, baseline=baseline,
                    details={"kind": LEVEL, "scale": round(result.scale, 6), "window": len(history),
                             "agreeing": verdict.agreeing, "of": spec.of, "direction": spec.direction})
