"""Template helpers of the monitoring pages: a metric's level colour, rates and percentages."""

from django import template
from django.conf import settings

register = template.Library()


@register.filter
def metric_level(value, metric: str) -> str:
    """healthy / warning / critical for a value against MONITORING_THRESHOLDS (no hysteresis: a colour)."""
    limits = settings.MONITORING_THRESHOLDS.get(metric)
    if value is None or value == "" or limits is None:
        return "healthy"
    value = float(value)
    if value >= limits[1]:
        return "critical"
    if value >= limits[0]:
        return "warning"
    return "healthy"


@register.filter
def byte_rate(value) -> str:
    if value is None or value == "":
        return "—"
    value = float(value)
    for unit in ("B/s", "KB/s", "MB/s", "GB/s"):
        if abs(value) < 1024 or unit == "GB/s":
            return f"{value:.0f} {unit}" if unit == "B/s" else f"{value:.1f} {unit}"
        value /= 1024
    return "—"


@register.filter
def percent(value, digits: int = 0) -> str:
    """A share (0-1) or a percentage (1-100) as text; — for nothing."""
    if value is None or value == "":
        return "—"
    value = float(value)
    if value <= 1:
        value *= 100
    return f"{value:.{int(digits)}f}%"


@register.filter
def clamp100(value) -> float:
    try:
        return max(0.0, min(100.0, float(value)))
    except (TypeError, ValueError):
        return 0.0


@register.filter
def ms(value) -> str:
    if value is None or value == "":
        return "—"
    return f"{float(value):,.0f} ms"


@register.filter
def get_value(mapping, key):
    """mapping[key] in a template (a row's values by column name)."""
    if isinstance(mapping, dict):
        return mapping.get(key)
    return None
