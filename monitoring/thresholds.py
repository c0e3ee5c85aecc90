"""Health levels from thresholds, with hysteresis. No Django imports.

A level is entered when the value reaches its threshold, and left only once the value falls below
threshold × (1 - hysteresis): a value that hovers at the line changes the level once, not on every
sample.
"""

from __future__ import annotations

HEALTHY, WARNING, CRITICAL = "healthy", "warning", "critical"
RANK = {HEALTHY: 0, WARNING: 1, CRITICAL: 2}
LEVELS = (HEALTHY, WARNING, CRITICAL)


def worst(levels) -> str:
    return max(levels, key=lambda level: RANK.get(level, 0), default=HEALTHY)


def next_level(value: float | None, thresholds: tuple[float, float], previous: str | None, hysteresis: float) -> str:
    """The level of one metric now, given its (warning, critical) thresholds and its previous level."""
    if value is None:
        return previous if previous in RANK else HEALTHY
    warning, critical = thresholds
    previous_rank = RANK.get(previous, 0)
    if value >= critical or (previous_rank >= 2 and value >= critical * (1 - hysteresis)):
        return CRITICAL
    if value >= warning or (previous_rank >= 1 and value >= warning * (1 - hysteresis)):
        return WARNING
    return HEALTHY


def evaluate(values: dict, thresholds: dict, previous: dict | None, hysteresis: float) -> dict[str, str]:
    """Levels of every thresholded metric: {metric: level}."""
    previous = previous or {}
    return {
        metric: next_level(values.get(metric), limits, previous.get(metric), hysteresis)
        for metric, limits in thresholds.items()
    }


LABELS = {
    "cpu_percent": ("CPU", "%"),
    "memory_percent": ("Memory", "%"),
    "disk_percent": ("Disk", "%"),
    "api_response_time_ms": ("API p95", " ms"),
}
ACTIONS = {
    "cpu_percent": "Add a worker machine or lower worker concurrency; the System page shows the busiest tasks.",
    "memory_percent": "Run fewer worker processes per host or train on smaller datasets; add memory.",
    "disk_percent": "Delete unused datasets and model versions, or grow the volume holding MEDIA_ROOT.",
    "api_response_time_ms": "Check the database and Redis latencies on the System page; add ASGI server processes.",
}


def describe(host: str, metric: str, value: float | None, level: str, thresholds: tuple[float, float]) -> str:
    label, unit = LABELS.get(metric, (metric, ""))
    limit = thresholds[1] if level == CRITICAL else thresholds[0]
    shown = "—" if value is None else f"{value:.1f}{unit}"
    return f"{host}: {label} {shown} (≥ {limit:g}{unit} is {level})"
