"""Streaming anomaly scores: a robust z-score of each new value against its series' recent window.
No Django imports.

score = |x - median(window)| / (1.4826 × max(MAD, floor)). The median and the MAD (median absolute
deviation) are barely moved by the outliers themselves, unlike a mean and standard deviation, and
the floor keeps a flat series (MAD 0) from calling every small wiggle an anomaly.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution times this is its standard deviation

# Per metric: (absolute floor, floor relative to |median|) of the MAD.
FLOORS = {
    "cpu_percent": (2.0, 0.0),
    "memory_percent": (1.0, 0.0),
    "disk_percent": (0.5, 0.0),
    "load_1": (0.25, 0.1),
    "net_sent_rate": (10_000.0, 0.2),
    "net_recv_rate": (10_000.0, 0.2),
    "api_response_time_ms": (5.0, 0.1),
    "ws_response_time_ms": (5.0, 0.1),
    "predictions_per_minute": (5.0, 0.1),
}
DEFAULT_FLOOR = (1e-6, 0.05)
STREAMED = tuple(FLOORS)


@dataclass(frozen=True)
class Score:
    value: float
    median: float
    scale: float
    score: float


def robust_score(window, value: float, *, metric: str = "", min_samples: int = 20) -> Score | None:
    """Score `value` against the window of earlier values; None until the window has min_samples."""
    values = [float(v) for v in window if v is not None]
    if len(values) < max(3, min_samples):
        return None
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    absolute, relative = FLOORS.get(metric, DEFAULT_FLOOR)
    scale = MAD_TO_SIGMA * max(mad, absolute, relative * abs(median))
    return Score(value=float(value), median=median, scale=scale, score=abs(float(value) - median) / scale)


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


def share_severity(share: float) -> str:
    """Severity of a dataset by the share of its rows flagged."""
    if share >= 0.10:
        return "critical"
    if share >= 0.05:
        return "high"
    if share >= 0.01:
        return "medium"
    return "low"
