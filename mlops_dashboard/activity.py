"""The activity feed: every action worth a line, recorded by any app and announced on commit."""

from __future__ import annotations

import logging

from django.db import transaction

from .events import catalog, publish_on_commit
from .models import Activity

logger = logging.getLogger(__name__)


def activity_payload(activity: Activity) -> dict:
    return {
        "id": activity.pk,
        "title": activity.title,
        "description": activity.description,
        "user": activity.user.get_username() if activity.user_id else None,
        "action_type": activity.action_type,
        "status": activity.status,
        "severity_level": activity.severity_level,
        "duration": activity.duration,
        "metadata": activity.metadata,
        "project_id": activity.project_id,
        "created_at": activity.created_at.isoformat() if activity.created_at else None,
    }


def activity_record(*, title: str, action_type: str, user=None, description: str = "", status: str = "success",
                    severity_level: str = Activity.Severity.INFO, duration: float | None = None,
                    metadata: dict | None = None, project=None) -> Activity:
    """Record what happened and publish `activity_update` once the surrounding transaction commits:
    to the project's members, or (no project: a login, the system) to staff only."""
    activity = Activity(
        title=title[:200], action_type=action_type, description=description, status=status,
        severity_level=severity_level, duration=round(duration, 3) if duration is not None else None,
        metadata=metadata or {}, user=user if getattr(user, "is_authenticated", False) else None,
        project_id=getattr(project, "pk", project),
    )
    activity.full_clean()
    with transaction.atomic():
        activity.save()
        publish_on_commit(catalog.ActivityUpdate(activity=activity_payload(activity), project_id=activity.project_id))
    return activity


def activity_record_quietly(**fields) -> Activity | None:
    """`activity_record` for writes that must stand without their feed line (the feed is a courtesy)."""
    try:
        return activity_record(**fields)
    except Exception:
        logger.warning("activity not recorded: %s", fields.get("title"), exc_info=True)
        return None


def activities_recent(*, user, project=None, limit: int = 12) -> list[Activity]:
    """The latest lines the user may read: of one project, or of all theirs (staff: also the
    system-wide ones)."""
    from .permissions import is_admin, visible

    lines = visible(Activity.objects.select_related("user"), user, include_global=False)
    if project is not None:
        lines = lines.filter(project_id=getattr(project, "pk", project))
    elif is_admin(user):
        lines = Activity.objects.select_related("user")
    return list(lines[:limit])


def record_login(sender, request, user, **kwargs):
    """`user_logged_in` handler: a line per login."""
    activity_record(title=f"{user.get_username()} logged in", action_type="login", user=user)


def activities_prune(cutoff) -> int:
    """Feed lines older than the cutoff (RETENTION_ACTIVITY_DAYS), in batches."""
    from .retention import delete_in_batches

    return delete_in_batches(Activity.objects.filter(created_at__lt=cutoff))
