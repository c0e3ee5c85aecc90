"""Who may do what: the one place that answers "may this user do this to this object".

Objects belong to a project (`project_id`), or to none: host metrics, health, system alerts and
their rules are global. Members of a project have a role in it (viewer < editor < maintainer);
staff users are admins of every project and the only ones who change global objects.

Actions, each a `rules` rule taking (user, object):
- `view`: any member (global objects: any logged-in user);
- `create`: editor, in the project given (the object is a Project, or the parent it is made under);
- `change`, `delete`, `cancel`: the object's creator with the editor role, or a maintainer;
- `deploy` (deploys and rollbacks), `manage` (members, alert rules, channels): maintainer;
- `acknowledge` (alerts): editor.

Services call `authorize(user, action, obj)` before every write, so the API, pages, admin actions,
pipeline steps and the socket share these rules. `user=None` is the system itself (a worker, beat).
An object in a project the user is not a member of answers 404 (`Http404`), so its existence does
not leak; a member without the role answers 403 (`PermissionDenied`) naming the role needed.
"""

from __future__ import annotations

import rules
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404

from .models import ROLE_RANK, Membership, Project, Role

ADMIN = "admin"
# The role each action needs, when the actor is not the object's creator.
NEEDED = {
    "view": Role.VIEWER,
    "create": Role.EDITOR,
    "acknowledge": Role.EDITOR,
    "change": Role.MAINTAINER,
    "delete": Role.MAINTAINER,
    "cancel": Role.MAINTAINER,
    "deploy": Role.MAINTAINER,
    "manage": Role.MAINTAINER,
}
# Actions an editor may take on what it created.
OWN = ("change", "delete", "cancel")
VERBS = {
    "view": "Seeing this", "create": "Creating or running here", "acknowledge": "Acknowledging alerts",
    "change": "Editing this", "delete": "Deleting this", "cancel": "Cancelling this",
    "deploy": "Deploying or rolling back", "manage": "Managing this project",
}

_ROLES_ATTR = "_project_roles"


# --- who has which role --------------------------------------------------------------------------


def roles(user) -> dict[int, str]:
    """{project id: role} of the user's memberships, read once per user object. A token limited to
    one project (`user.token_project_id`, set by the token authentication) narrows it to that one."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {}
    cached = getattr(user, _ROLES_ATTR, None)
    if cached is None:
        cached = dict(Membership.objects.filter(user_id=user.pk).values_list("project_id", "role"))
        setattr(user, _ROLES_ATTR, cached)
    limit = getattr(user, "token_project_id", None)
    if limit is not None:
        return {limit: cached[limit]} if limit in cached else {}
    return cached


def forget_roles(user) -> None:
    """Drop the cached roles (after a membership change in the same request)."""
    if user is not None and hasattr(user, _ROLES_ATTR):
        delattr(user, _ROLES_ATTR)


def is_admin(user) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_staff)


def project_id_of(obj) -> int | None:
    if isinstance(obj, Project):
        return obj.pk
    return getattr(obj, "project_id", None)


def role_in(user, project) -> str | None:
    """The user's role in a project (a Project or its id): `admin` for staff, None for outsiders."""
    project_id = project.pk if isinstance(project, Project) else project
    limit = getattr(user, "token_project_id", None)
    if is_admin(user) and (limit is None or limit == project_id):
        return ADMIN
    return roles(user).get(project_id)


def has_role(user, project, needed: str) -> bool:
    role = role_in(user, project)
    return role == ADMIN or (role is not None and ROLE_RANK[role] >= ROLE_RANK[needed])


def creator_id(obj) -> int | None:
    for field in ("created_by_id", "deployed_by_id"):
        if hasattr(obj, field):
            return getattr(obj, field)
    return None


# --- the rules -----------------------------------------------------------------------------------


def _project_rule(action: str):
    @rules.predicate(name=f"may_{action}")
    def allowed(user, obj) -> bool:
        if user is None:  # the system
            return True
        if not getattr(user, "is_authenticated", False):
            return False
        project_id = project_id_of(obj)
        if project_id is None and not isinstance(obj, Project):
            # A global object: everyone reads it, staff change it.
            return action == "view" or is_admin(user)
        needed = NEEDED[action]
        if action in OWN and not isinstance(obj, Project) and creator_id(obj) == user.pk:
            needed = Role.EDITOR
        return has_role(user, project_id, needed)

    return allowed


RULES = rules.RuleSet()
for _action in NEEDED:
    RULES.add_rule(_action, _project_rule(_action))


def can(user, action: str, obj) -> bool:
    return RULES.test_rule(action, user, obj)


def can_see(user, obj) -> bool:
    return can(user, "view", obj)


def needed_role(user, action: str, obj) -> str:
    """The role that would allow the action, for messages and tooltips."""
    if project_id_of(obj) is None and not isinstance(obj, Project):
        return ADMIN
    if action in OWN and not isinstance(obj, Project) and user is not None and creator_id(obj) == user.pk:
        return Role.EDITOR
    return NEEDED[action]


def denial(user, action: str, obj) -> str:
    """Why the user may not: names the role needed (and the project)."""
    role = needed_role(user, action, obj)
    verb = VERBS.get(action, action.capitalize())
    if role == ADMIN:
        return f"{verb} needs an admin (staff) account: it is shared by every project."
    project = obj if isinstance(obj, Project) else getattr(obj, "project", None)
    where = f" in project “{project.name}”" if project is not None else ""
    if action in OWN and role == Role.MAINTAINER:
        return f"{verb} needs the maintainer role{where} (editors may change only what they created)."
    return f"{verb} needs the {role} role{where}."


def authorize(user, action: str, obj) -> None:
    """Raise unless the user may: `Http404` when the object is invisible to them, `PermissionDenied`
    (with the role needed) when they see it but lack the role."""
    if user is None:
        return
    if not can_see(user, obj):
        raise Http404("No such object.")
    if not can(user, action, obj):
        raise PermissionDenied(denial(user, action, obj))


def tooltip(user, action: str, obj) -> str:
    """'' when allowed, else the reason: for a disabled button's title."""
    return "" if can(user, action, obj) else denial(user, action, obj)


# --- what a user sees ------------------------------------------------------------------------------


def visible_project_ids(user) -> set[int] | None:
    """The ids of the projects the user may read; None means every project (staff)."""
    if is_admin(user) and getattr(user, "token_project_id", None) is None:
        return None
    return set(roles(user)) if not is_admin(user) else {user.token_project_id}


def visible_projects(user) -> QuerySet[Project]:
    ids = visible_project_ids(user)
    projects = Project.objects.all()
    return projects if ids is None else projects.filter(pk__in=ids)


def visible(queryset: QuerySet, user, *, field: str = "project", include_global: bool = False) -> QuerySet:
    """The rows of a queryset the user may read. `include_global`: rows without a project (global
    alert rules, system alerts) are readable by every logged-in user."""
    if user is None:
        return queryset
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    ids = visible_project_ids(user)
    if ids is None:
        return queryset
    condition = Q(**{f"{field}_id__in": ids})
    if include_global:
        condition |= Q(**{f"{field}__isnull": True})
    return queryset.filter(condition)


def get_visible(queryset: QuerySet, user, **lookup):
    """One row the user may read, or Http404 (also when it exists in another project)."""
    try:
        return visible(queryset, user, include_global=True).get(**lookup)
    except queryset.model.DoesNotExist:
        raise Http404("No such object.") from None
