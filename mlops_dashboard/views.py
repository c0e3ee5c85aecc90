"""Pages of the backbone: live events, health (the dashboard home is monitoring.views.dashboard)."""

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .activity import activities_recent
from .health import run_checks


def live_events(request):
    return render(request, "live_events.html", {"nav": "live"})


@login_not_required
@never_cache
@require_GET
def health(request):
    """Database, Redis, channel layer and Celery workers: 200 when all are ok, else 503."""
    checks = run_checks()
    healthy = all(c["status"] == "ok" for c in checks.values())
    return JsonResponse({"status": "ok" if healthy else "down", "checks": checks}, status=200 if healthy else 503)


@require_GET
def activity_feed(request):
    """The dashboard's recent activity (a fragment for static/js/pages/dashboard.js)."""
    return render(request, "includes/activity_list.html", {"activities": activities_recent(limit=12)})
