"""The alert's page (what every notification links to): the alert and its deliveries, live."""

from django.shortcuts import render
from django.views.decorators.http import require_GET

from mlops_dashboard import permissions

from . import services
from .models import Alert

_RELATED = ("project", "rule", "acknowledged_by", "resolved_by", "silence")


def _alert(request, pk: int) -> Alert:
    # Another project's alert is as unknown as a missing one (404).
    return permissions.get_visible(Alert.objects.select_related(*_RELATED), request.user, pk=pk)


def _context(alert: Alert) -> dict:
    return {"alert": alert, "deliveries": services.alert_deliveries(alert), "nav": "monitoring"}


@require_GET
def alert_detail(request, pk: int):
    """GET /monitoring/alerts/<id>/: title, message, status, priority, subject, project, since,
    suggested actions, silenced state, and every delivery of every notification about it."""
    return render(request, "monitoring/alert_detail.html", _context(_alert(request, pk)))


@require_GET
def alert_detail_body(request, pk: int):
    """The page's live part (a fragment for static/js/pages/alert_detail.js)."""
    return render(request, "monitoring/includes/alert_detail_body.html", _context(_alert(request, pk)))
