"""The audit log: every write, who, when, in which project, on what, with a short before→after.

Services call `audit_record` inside the transaction of their write, so an entry exists exactly when
the write does. Entries are never changed; `audit_prune` drops those past AUDIT_RETENTION_DAYS.
"""

from __future__ import annotations

import csv
import threading
from datetime import datetime

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from .models import AuditEntry, Project, Role

SUMMARY_MAX = 500


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def changes_summary(before: dict, after: dict) -> str:
    """`name: old → new; enabled: True → False` for the keys whose value changed."""
    parts = [f"{key}: {_short(before.get(key))} → {_short(value)}"
             for key, value in after.items() if before.get(key) != value]
    return "; ".join(parts)


NO_PROJECT = object()  # audit_record(project=NO_PROJECT): system-wide even when the object has one


def audit_record(*, user, action: str, obj=None, project=None, summary: str = "",
                 object_type: str | None = None, object_repr: str | None = None) -> AuditEntry:
    """Append one entry. `project` defaults to the object's; `user` None is the system."""
    if project is NO_PROJECT:
        project_id = None
    elif project is None and obj is not None:
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
    """Entries older than the cutoff (AUDIT_RETENTION_DAYS), in batches: the only way one goes
    (through the base manager; the default one refuses deletes)."""
    from .retention import delete_in_batches

    return delete_in_batches(AuditEntry._base_manager.filter(created_at__lt=cutoff))


# --- who reads it ----------------------------------------------------------------------------------


def audit_denial(project: Project) -> str:
    return f"Reading the audit log needs the maintainer role in project “{project.name}”."


def audit_project_check(user, project: Project) -> None:
    """Maintainers of the project and staff read its log; other members get 403, outsiders 404."""
    from . import permissions

    if not permissions.can_see(user, project):
        raise Http404("No such project.")
    if not permissions.has_role(user, project, Role.MAINTAINER):
        raise PermissionDenied(audit_denial(project))


def audit_readable(user) -> QuerySet[AuditEntry]:
    """Every entry the user may read: staff all of them (also those without a project), others the
    entries of the projects they maintain."""
    from . import permissions

    entries = AuditEntry.objects.select_related("project")
    if permissions.visible_project_ids(user) is None:
        return entries
    maintained = [pk for pk in (permissions.visible_project_ids(user) or ())
                  if permissions.has_role(user, pk, Role.MAINTAINER)]
    return entries.filter(project_id__in=maintained)


def audit_entries(*, user, project: Project | None = None, username: str | None = None, action: str | None = None,
                  since: datetime | None = None, until: datetime | None = None) -> QuerySet[AuditEntry]:
    """The entries the user may read, newest first, narrowed by the filters (`until` exclusive)."""
    if project is not None:
        audit_project_check(user, project)
        entries = audit_readable(user).filter(project=project)
    else:
        entries = audit_readable(user)
    if username:
        entries = entries.filter(username=username)
    if action:
        entries = entries.filter(action=action)
    if since is not None:
        entries = entries.filter(created_at__gte=since)
    if until is not None:
        entries = entries.filter(created_at__lt=until)
    return entries.order_by("-created_at", "-id")


# --- CSV export ------------------------------------------------------------------------------------

CSV_HEADER = ["when", "user", "project", "action", "object_type", "object_id", "object", "summary"]
# A spreadsheet runs a cell starting with these as a formula (CSV injection): they get a quote first.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """A file whose write returns the line, for csv.writer feeding a streamed response."""

    def write(self, value):
        return value


def audit_csv_lines(entries: QuerySet[AuditEntry]):
    """The CSV text of the entries, a line at a time (read from the database in chunks)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for entry in entries.iterator(chunk_size=500):
        yield writer.writerow([csv_safe(value) for value in (
            timezone.localtime(entry.created_at).isoformat(), entry.username or "system",
            entry.project.slug if entry.project_id else "", entry.action, entry.object_type, entry.object_id,
            entry.object_repr, entry.summary)])


# --- logins, logouts and API tokens (no project: staff only) ----------------------------------------


def _user_repr(user) -> dict:
    return {"object_type": user._meta.label_lower, "object_repr": user.get_username()[:200]}


def record_login(sender, request, user, **kwargs):
    audit_record(user=user, action="login", project=NO_PROJECT, **_user_repr(user),
                 summary=f"from {_address(request)}" if request is not None else "")


def record_logout(sender, request, user, **kwargs):
    if user is not None and getattr(user, "is_authenticated", False):
        audit_record(user=user, action="logout", project=NO_PROJECT, **_user_repr(user))


def _address(request) -> str:
    return (request.META.get("REMOTE_ADDR") or "unknown address")[:60]


def record_token_created(sender, instance, created=False, raw=False, **kwargs):
    if created and not raw:
        audit_record(user=instance.user, action="create", obj=instance, project=NO_PROJECT,
                     summary=_token_summary(instance))


# Users being deleted in this thread: their tokens go with them, and an entry must not point at them
# (its key would outlive the row). The entry keeps the owner's name in its object text.
_deleting = threading.local()


def _users_deleting() -> set:
    if not hasattr(_deleting, "pks"):
        _deleting.pks = set()
    return _deleting.pks


def _note_user_deleting(sender, instance, **kwargs):
    _users_deleting().add(instance.pk)


def _forget_user_deleting(sender, instance, **kwargs):
    _users_deleting().discard(instance.pk)


def record_token_deleted(sender, instance, **kwargs):
    expired = instance.expiry is not None and instance.expiry <= timezone.now()
    owner = None if expired or instance.user_id in _users_deleting() else instance.user
    audit_record(user=owner, action="expire" if expired else "revoke", obj=instance, project=NO_PROJECT,
                 summary=_token_summary(instance))


def _token_summary(token) -> str:
    parts = [f"scope: {token.scope}"]
    if token.project_id:
        parts.append(f"project: {token.project_id}")
    if token.expiry:
        parts.append(f"expires: {token.expiry:%Y-%m-%d}")
    return "; ".join(parts)


def connect_signals():
    """Called from the core's ready()."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.signals import user_logged_in, user_logged_out
    from django.db.models.signals import post_delete, post_save, pre_delete

    from .models import ApiToken

    user_logged_in.connect(record_login, dispatch_uid="mlops_dashboard.audit.login")
    user_logged_out.connect(record_logout, dispatch_uid="mlops_dashboard.audit.logout")
    post_save.connect(record_token_created, sender=ApiToken, dispatch_uid="mlops_dashboard.audit.token_created")
    post_delete.connect(record_token_deleted, sender=ApiToken, dispatch_uid="mlops_dashboard.audit.token_deleted")
    pre_delete.connect(_note_user_deleting, sender=get_user_model(), dispatch_uid="mlops_dashboard.audit.user_deleting")
    post_delete.connect(_forget_user_deleting, sender=get_user_model(), dispatch_uid="mlops_dashboard.audit.user_deleted")
