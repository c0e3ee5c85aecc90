"""Pages of projects: the list of yours, the switcher (remembered per user), and a project's Members."""

from __future__ import annotations

from functools import cache
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.functional import SimpleLazyObject
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import memberships, permissions
from .models import Project, Role
from .projects import Conflict, current_project, current_project_set


def user_projects(user) -> list[Project]:
    """The user's projects, each with `.role` (staff: every project, role `admin`)."""
    projects = list(permissions.visible_projects(user).order_by("name", "id"))
    for project in projects:
        project.role = permissions.role_in(user, project)
    return projects


def switcher_context(request) -> dict:
    """Read lazily: a page that shows no switcher costs no query."""

    @cache
    def values():
        project = current_project(request)
        return {
            "current_project": project,
            "current_role": permissions.role_in(request.user, project) if project is not None else None,
            "user_projects": user_projects(request.user),
        }

    return {name: SimpleLazyObject(lambda name=name: values()[name]) for name in
            ("current_project", "current_role", "user_projects")}


def _visible_project(user, slug: str) -> Project:
    project = permissions.visible_projects(user).filter(slug=slug).first()
    if project is None:
        raise Http404("No such project.")
    return project


@require_GET
def project_list(request):
    """Your projects and your role in each (a friendly empty state when you are in none)."""
    return render(request, "projects/list.html", {"nav": "projects", "projects": user_projects(request.user)})


@require_GET
@never_cache
def project_switcher(request):
    """The switcher alone: a fragment the live pages re-render when the user's memberships change."""
    # Its form goes back to the page showing it (`?next=`, else the page that fetched it), never here.
    back = _safe_next(request, request.GET.get("next") or request.headers.get("referer"))
    if urlsplit(back).path == request.path:
        back = "/"
    return render(request, "includes/project_switcher.html", {"next": back})


def _safe_next(request, url: str | None) -> str:
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()},
                                                require_https=request.is_secure()):
        return url
    return "/"


@require_POST
def project_switch(request):
    """Make a project the current one (remembered for the user), then back to where they were."""
    pk = request.POST.get("project", "")
    project = Project.objects.filter(pk=int(pk)).first() if pk.isdigit() and len(pk) <= 18 else None
    if project is None:
        raise Http404("No such project.")
    current_project_set(user=request.user, project=project)  # Http404 unless the user sees it
    return redirect(_safe_next(request, request.POST.get("next") or request.headers.get("referer")))


# --- Members -------------------------------------------------------------------------------------


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, label="Username")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


def _members_page(request, project, *, status=200, error="", add_form=None):
    can_manage = permissions.can(request.user, "manage", project)
    context = {
        "nav": "members", "project": project, "members": memberships.memberships_of(project),
        "can_manage": can_manage, "why": "" if can_manage else permissions.denial(request.user, "manage", project),
        "role_choices": Role.choices, "add_form": add_form or MemberAddForm(), "error": error,
        "my_role": permissions.role_in(request.user, project),
    }
    return render(request, "projects/members.html", context, status=status)


@require_GET
def members(request, slug):
    return _members_page(request, _visible_project(request.user, slug))


def _member_write(request, project, write, success: str, add_form=None):
    """Run a membership service; its refusals re-render the page with the reason and the status."""
    try:
        write()
    except ValidationError as exc:
        return _members_page(request, project, status=400, error=" ".join(exc.messages), add_form=add_form)
    except PermissionDenied as exc:
        return _members_page(request, project, status=403, error=str(exc), add_form=add_form)
    except Conflict as exc:
        return _members_page(request, project, status=409, error=str(exc), add_form=add_form)
    except Http404 as exc:
        return _members_page(request, project, status=404, error=str(exc), add_form=add_form)
    from django.contrib import messages

    messages.success(request, success)
    return redirect("project-members", slug=project.slug)


@require_POST
def member_add(request, slug):
    project = _visible_project(request.user, slug)
    form = MemberAddForm(request.POST)
    if not form.is_valid():
        if not permissions.can(request.user, "manage", project):
            return _members_page(request, project, status=403, error=permissions.denial(request.user, "manage", project))
        return _members_page(request, project, status=400, error="Give a username and a role.", add_form=form)
    data = form.cleaned_data
    return _member_write(
        request, project,
        lambda: memberships.membership_add(user=request.user, project=project, username=data["username"].strip(),
                                           role=data["role"]),
        f"{data['username']} added as {data['role']}.", add_form=form,
    )


@require_POST
def member_change(request, slug, username):
    project = _visible_project(request.user, slug)
    form = MemberRoleForm(request.POST)
    role = form.cleaned_data["role"] if form.is_valid() else request.POST.get("role", "")
    return _member_write(
        request, project,
        lambda: memberships.membership_change(user=request.user, project=project, username=username, role=role),
        f"{username} is now {role}.",
    )


@require_http_methods(["POST"])
def member_remove(request, slug, username):
    project = _visible_project(request.user, slug)
    return _member_write(
        request, project,
        lambda: memberships.membership_remove(user=request.user, project=project, username=username),
        f"{username} removed from {project.name}.",
    )
