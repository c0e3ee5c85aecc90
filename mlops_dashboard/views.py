"""Pages of the backbone: live events, health (the dashboard home is monitoring.views.dashboard)."""

from datetime import UTC, datetime

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .activity import activities_recent
from .health import checks_cached


def live_events(request):
    return render(request, "live_events.html", {"nav": "live"})


@login_not_required
@never_cache
@require_GET
def health(request):
    """Database, Redis, channel layer and Celery workers: 200 when all are ok, else 503.

    Anyone gets each component's ok/down; only staff get latencies, vendor, worker names and error
    text (they name hosts and ports). The checks run at most once a second per process."""
    checks, checked_at, number = checks_cached()
    healthy = all(c["status"] == "ok" for c in checks.values())
    body = {"status": "ok" if healthy else "down"}
    if request.user.is_authenticated and request.user.is_staff:
        body.update(checks=checks, checked_at=datetime.fromtimestamp(checked_at, UTC).isoformat(), round=number)
    else:
        body["checks"] = {name: {"status": check["status"]} for name, check in checks.items()}
    return JsonResponse(body, status=200 if healthy else 503)


@require_GET
def activity_feed(request):
    """The dashboard's recent activity (a fragment for static/js/pages/dashboard.js)."""
    from .projects import current_project

    activities = activities_recent(user=request.user, project=current_project(request), limit=12)
    return render(request, "includes/activity_list.html", {"activities": activities})
