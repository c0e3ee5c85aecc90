"""The audit log: every write, who, when, in which project, on what, with a short before→after.

Services call `audit_record` inside the transaction of their write, so an entry exists exactly when
the write does. Entries are never changed; `audit_prune` drops those past AUDIT_RETENTION_DAYS.
"""

from __future__ import annotations

from .models import AuditEntry

SUMMARY_MAX = 500


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def changes_summary(before: dict, after: dict) -> str:
    """`name: old → new; enabled: True → False` for the keys whose value changed."""
    parts = [f"{key}: {_short(before.get(key))} → {_short(value)}"
             for key, value in after.items() if before.get(key) != value]
    return "; ".join(parts)


def audit_record(*, user, action: str, obj=None, project=None, summary: str = "",
                 object_type: str | None = None, object_repr: str | None = None) -> AuditEntry:
    """Append one entry. `project` defaults to the object's; `user` None is the system."""
    if project is None and obj is not None:
        project_id = getattr(obj, "project_id", None)
    else:
        project_id = getattr(project, "pk", project)
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    entry = AuditEntry(
        user=user if authenticated else None,
        username=user.get_username() if authenticated else "",
        project_id=project_id,
        action=action[:40],
        object_type=(object_type or (obj._meta.label_lower if obj is not None else ""))[:60],
        object_id=str(getattr(obj, "pk", "") or "")[:40],
        object_repr=(object_repr if object_repr is not None else str(obj) if obj is not None else "")[:200],
        summary=summary[:SUMMARY_MAX],
    )
    entry.save()
    return entry


def audit_prune(cutoff) -> int:
    from .retention import delete_in_batches

    return delete_in_batches(AuditEntry.objects.filter(created_at__lt=cutoff))
