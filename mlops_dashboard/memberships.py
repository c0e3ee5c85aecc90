"""Members of a project: add, change a role, remove; and DEFAULT_PROJECT_ROLE for new users.

Maintainers of the project and staff manage its members (the `manage` rule), which is also who may
grant `maintainer`. A project keeps at least one maintainer: removing or demoting the last one is a
Conflict. Writes go through the ORM (save/delete), so the Membership signals fire for each one (open
sockets follow them).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.signals import post_save
from django.http import Http404

from . import permissions
from .activity import activity_record
from .audit import audit_record
from .models import Membership, Project, Role
from .projects import Conflict, default_project


def memberships_of(project: Project):
    return Membership.objects.filter(project=project).select_related("user").order_by("user__username")


def _role(role) -> str:
    if role not in Role.values:
        raise ValidationError({"role": f"One of {', '.join(Role.values)}."})
    return role


def _lock(project: Project) -> None:
    """Serialize the membership changes of one project (inside a transaction), so that two
    concurrent demotions cannot both see another maintainer left."""
    list(Project.objects.select_for_update().filter(pk=project.pk).values_list("pk", flat=True))
    # Lock the rows themselves too: a writer that does not lock the project still waits on them.
    list(Membership.objects.select_for_update().filter(project=project).values_list("pk", flat=True))


def _last_maintainer_check(membership: Membership, verb: str) -> None:
    if membership.role != Role.MAINTAINER:
        return
    others = Membership.objects.filter(project_id=membership.project_id, role=Role.MAINTAINER).exclude(pk=membership.pk)
    if not others.exists():
        raise Conflict(f"{membership.user.get_username()} is the last maintainer of “{membership.project.name}”: "
                       f"make someone else a maintainer before {verb} them.")


def _member(project: Project, username: str) -> Membership:
    membership = (Membership.objects.select_related("user", "project")
                  .filter(project=project, user__username=username).first())
    if membership is None:
        raise Http404(f"{username} is not a member of this project.")
    return membership


def membership_add(*, user, project: Project, username: str, role: str) -> Membership:
    permissions.authorize(user, "manage", project)
    role = _role(role)
    target = get_user_model().objects.filter(username=username).first()
    if target is None:
        raise ValidationError({"user": f"No user named “{username}”."})
    if Membership.objects.filter(project=project, user=target).exists():
        raise Conflict(f"{username} is already a member of “{project.name}”.")
    membership = Membership(project=project, user=target, role=role)
    membership.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            membership.save()
            audit_record(user=user, action="create", obj=membership, project=project,
                         summary=f"{username} added as {role}")
            activity_record(title=f"{username} joined {project.name} as {role}", action_type="member_added",
                            user=user, project=project, metadata={"member": username, "role": role})
    except IntegrityError:  # added concurrently
        raise Conflict(f"{username} is already a member of “{project.name}”.") from None
    permissions.forget_roles(user)
    return membership


def membership_change(*, user, project: Project, username: str, role: str) -> Membership:
    permissions.authorize(user, "manage", project)
    role = _role(role)
    with transaction.atomic():
        _lock(project)
        membership = _member(project, username)
        before = membership.role
        if before == role:
            return membership
        if role != Role.MAINTAINER:
            _last_maintainer_check(membership, "demoting")
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(user=user, action="update", obj=membership, project=project,
                     summary=f"role: {before} → {role}")
        activity_record(title=f"{username} is now {role} in {project.name}", action_type="member_changed",
                        user=user, project=project, metadata={"member": username, "role": role, "was": before})
    permissions.forget_roles(user)
    return membership


def membership_remove(*, user, project: Project, username: str) -> None:
    permissions.authorize(user, "manage", project)
    with transaction.atomic():
        _lock(project)
        membership = _member(project, username)
        _last_maintainer_check(membership, "removing")
        audit_record(user=user, action="delete", obj=membership, project=project,
                     summary=f"{username} removed (was {membership.role})")
        membership.delete()
        activity_record(title=f"{username} left {project.name}", action_type="member_removed",
                        user=user, project=project, metadata={"member": username, "was": membership.role})
    permissions.forget_roles(user)


# --- DEFAULT_PROJECT_ROLE --------------------------------------------------------------------------


def _join_default_project(sender, instance, created=False, raw=False, **kwargs):
    """A new (non-staff) user joins "Default" with DEFAULT_PROJECT_ROLE, when that is set."""
    role = settings.DEFAULT_PROJECT_ROLE
    if not created or raw or not role or instance.is_staff:
        return
    Membership.objects.get_or_create(project=default_project(), user=instance, defaults={"role": role})


def connect_signals():
    post_save.connect(_join_default_project, sender=get_user_model(),
                      dispatch_uid="mlops_dashboard.memberships.default_project")
