"""Projects as the apps use them: which project a create goes to, and the current project of a page."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils.text import slugify

from . import auth_cache, permissions
from .activity import activity_record
from .audit import audit_record
from .models import Project, ProjectPreference, Role

DEFAULT_SLUG = "default"


class Conflict(Exception):
    """Valid, but the state does not allow it (an existing slug, member, the last maintainer): 409."""


def project_create_check(user) -> None:
    """Only admins (staff, not through a token limited to one project) create projects."""
    if not permissions.is_admin(user) or getattr(user, "token_project_id", None) is not None:
        raise PermissionDenied("Creating projects needs an admin (staff) account.")


def project_create(*, user, name: str, slug: str | None = None, description: str = "") -> Project:
    """A new project (staff only; staff are admins of every project, so they are not made members).
    The slug is derived from the name when not given; one already taken is a Conflict."""
    project_create_check(user)
    name = (name or "").strip()
    slug = (slug or "").strip() or slugify(name)[: Project._meta.get_field("slug").max_length]
    if name and not slug:
        raise ValidationError({"slug": "The name gives no slug (letters, digits, - or _): give one."})
    project = Project(name=name, slug=slug, description=description or "")
    project.full_clean(validate_unique=False)
    if Project.objects.filter(slug=slug).exists():
        raise Conflict(f"A project with the slug “{slug}” already exists.")
    try:
        with transaction.atomic():
            project.save()
            # No project on the entry: creating projects is an admin's business (staff-only entries).
            audit_record(user=user, action="create", obj=project, project=None,
                         summary=f"name: {project.name}; slug: {project.slug}")
            activity_record(title=f"Project {project.name} created", action_type="project_created",
                            user=user, project=project)
    except IntegrityError:  # a concurrent create took the slug between the check and the insert
        raise Conflict(f"A project with the slug “{slug}” already exists.") from None
    return project


def project_for_create(user, project_id=None, *, field: str = "project") -> Project:
    """The project a new object goes to, checked for the editor role.

    Given: it must be one the user can see (404 otherwise, not 403) and may create in (403 naming
    the role). Not given: the only project the user may create in; when there are several (staff:
    every project) a 400 naming the choices, and none at all a 403.
    """
    if project_id not in (None, ""):
        try:
            pk = int(project_id)
        except (TypeError, ValueError):
            raise ValidationError({field: "A project id (an integer)."}) from None
        project = auth_cache.project_get(pk)
        if project is None or not permissions.can_see(user, project):
            raise Http404("No such project.")
        permissions.authorize(user, "create", project)
        return project
    choices = creatable_projects(user)
    if len(choices) == 1:
        return choices[0]
    if not choices:
        if permissions.is_admin(user):
            raise ValidationError({field: "There is no project yet: create one first (POST /api/projects/)."})
        raise PermissionDenied("Creating needs the editor role in a project; you are not an editor of any.")
    names = ", ".join(f"{p.pk} ({p.name})" for p in choices[:20])
    more = f" and {len(choices) - 20} more" if len(choices) > 20 else ""
    raise ValidationError({field: f"Say which project: one of {names}{more}."})


def creatable_projects(user) -> list[Project]:
    return [p for p in permissions.visible_projects(user) if permissions.has_role(user, p, Role.EDITOR)]


def parent_project(parent, project_id=None, *, field: str = "project") -> Project:
    """The project of an object made under a parent (a dataset's jobs, a pipeline's runs): the
    parent's. A different `project` given with it is a 400."""
    if project_id not in (None, "") and str(project_id) != str(parent.project_id):
        raise ValidationError({field: f"This belongs to project {parent.project_id}, set by its parent; "
                                      "leave `project` out or give that one."})
    return parent.project


def default_project() -> Project:
    project, _ = Project.objects.get_or_create(slug=DEFAULT_SLUG, defaults={"name": "Default"})
    return project


# --- the current project of the pages ------------------------------------------------------------


def current_project(request) -> Project | None:
    """The project the pages show: the user's remembered choice while they can still see it, else
    their first project. None for a user in no project."""
    user = request.user
    if not user.is_authenticated:
        return None
    cached = getattr(request, "_current_project", False)
    if cached is not False:
        return cached
    project = None
    preference = ProjectPreference.objects.filter(user_id=user.pk).select_related("project").first()
    if preference is not None and permissions.can_see(user, preference.project):
        project = preference.project
    if project is None:
        project = permissions.visible_projects(user).first()
    request._current_project = project
    return project


def current_project_set(*, user, project: Project) -> None:
    if not permissions.can_see(user, project):
        raise Http404("No such project.")
    ProjectPreference.objects.update_or_create(user_id=user.pk, defaults={"project": project})
