"""Filters for the page widgets (progress bars, meters, gauges)."""

from django import template

register = template.Library()


@register.filter
def pct_class(value) -> str:
    """`pct-N`, N the value clamped to 0-100 and rounded: the class that sets a bar's width.

    The Content-Security-Policy allows no style= attribute, so a width is one of 101 classes
    (static/css/app.css), never inline.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0.0
    if number != number:  # NaN
        number = 0.0
    return f"pct-{round(max(0.0, min(100.0, number)))}"
