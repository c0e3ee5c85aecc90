"""The anomalies of a telemetry source, for its page (templates/telemetry/source.html): a fragment of
table rows the page morphs in, each row carrying what the chart needs to mark it."""

from __future__ import annotations

from datetime import UTC, datetime

from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from telemetry import selectors as telemetry_selectors

from . import selectors

MAX_ROWS = 200


def _moment(text: str | None):
    """Epoch milliseconds (the page's) or None."""
    if not text:
        return None
    try:
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


@require_GET
def telemetry_anomalies(request, source_id: int):
    source = telemetry_selectors.source_get(request.user, source_id)
    if source.pk != source_id:
        raise Http404("No such source.")
    anomalies = selectors.telemetry_source_anomalies(
        source=source, start=_moment(request.GET.get("start")), end=_moment(request.GET.get("end")),
        limit=MAX_ROWS, user=request.user)
    return render(request, "monitoring/includes/telemetry_anomalies.html",
                  {"source": source, "anomalies": anomalies, "limit": MAX_ROWS})
