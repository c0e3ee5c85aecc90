"""The Monitoring page's silences and maintenance windows: its sections' context and the fragments
static/js/pages/monitoring.js morphs in after a change. Writes go through the API
(monitoring/api_silences.py), so the page holds no form handler of its own."""

from __future__ import annotations

from datetime import timedelta

from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from mlops_dashboard import permissions
from mlops_dashboard.models import Role
from mlops_dashboard.projects import current_project

from . import silencing
from .models import MaintenanceWindow
from .services import silences as silence_services

RECENTLY_EXPIRED = timedelta(hours=24)


def _create_denied(user, project) -> str:
    """Why the user may not make a silence here ("" when they may): staff anywhere, a maintainer
    of the current project for it."""
    if permissions.is_admin(user):
        return ""
    if project is None:
        return "Silences are made by a project's maintainers (for their project), or by an admin (staff)."
    if permissions.has_role(user, project, Role.MAINTAINER):
        return ""
    return permissions.denial(user, "manage", project)


def _scoped(rows, project):
    if project is None:
        return rows
    from django.db.models import Q

    return rows.filter(Q(project_id=project.pk) | Q(project__isnull=True))


def silences_context(request) -> dict:
    user, project = request.user, current_project(request)
    now = timezone.now()
    rows = _scoped(silence_services.silences_visible(user=user), project)
    current = list(rows.filter(ends_at__gt=now).order_by("starts_at", "id")[:100])
    expired = list(rows.filter(ends_at__lte=now, ends_at__gt=now - RECENTLY_EXPIRED).order_by("-ends_at")[:20])
    windows = list(_scoped(permissions.visible(MaintenanceWindow.objects.select_related("created_by", "project"), user,
                                               include_global=True), project)[:100])
    for window in windows:
        window.active_until = silencing.window_active(window.cron, window.duration_minutes, now) if window.enabled else None
    return {
        "silences": current,
        "expired_silences": expired,
        "windows": windows,
        "silence_denied": _create_denied(user, project),
        "silence_default_project": project.pk if project and not permissions.is_admin(user) else "",
        "silence_max_days": silence_services.SILENCE_MAX_DAYS,
    }


def silence_page_data() -> dict:
    return {
        "silencesUrl": reverse("silence-list"),
        "silenceUrl": reverse("silence-detail", args=[0]),
        "snoozeUrl": reverse("alert-snooze", args=[0]),
        "windowsUrl": reverse("maintenance-window-list"),
        "windowUrl": reverse("maintenance-window-detail", args=[0]),
        "silencesSectionUrl": reverse("monitoring:silences-section"),
        "windowsSectionUrl": reverse("monitoring:windows-section"),
    }


@require_GET
def silences_section(request):
    """The Monitoring page's silences (a fragment for static/js/pages/monitoring.js)."""
    return render(request, "monitoring/includes/silences.html", silences_context(request))


@require_GET
def windows_section(request):
    """The Monitoring page's maintenance windows (a fragment for static/js/pages/monitoring.js)."""
    return render(request, "monitoring/includes/maintenance_windows.html", silences_context(request))
