"""Every write of the monitoring app."""

from django.db import transaction

from mlops_dashboard.events import catalog, publish_on_commit

from .models import Activity


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
        "created_at": activity.created_at.isoformat() if activity.created_at else None,
    }


def activity_record(*, title: str, action_type: str, user=None, description: str = "", status: str = "success",
                    severity_level: str = Activity.Severity.INFO, duration: float | None = None,
                    metadata: dict | None = None) -> Activity:
    """Record what happened and publish `activity_update` once the surrounding transaction commits."""
    activity = Activity(
        title=title[:200], action_type=action_type, description=description, status=status,
        severity_level=severity_level, duration=round(duration, 3) if duration is not None else None,
        metadata=metadata or {}, user=user if getattr(user, "is_authenticated", False) else None,
    )
    activity.full_clean()
    with transaction.atomic():
        activity.save()
        publish_on_commit(catalog.ActivityUpdate(activity=activity_payload(activity)))
    return activity
