"""Which topics a user may read: the socket's groups, its replay, and the events API all ask here.

A user reads:
- `dashboard` (host metrics, health, system alerts) and `user.<own id>`;
- `project.<id>` of each project they are a member of (staff: every project), and `staff` (activity
  lines of no project) when staff;
- an object topic (`dataset.12`, `training_job.3`, ...) they asked for, if they may view the object.

Apps register a loader for each of their object topics from their `apps.py` `ready()`, so the core
never names an app:

    from mlops_dashboard.events.topics import register_topic
    register_topic("dataset", "datasets.Dataset")          # a model label, or loader(id) -> obj | None

An API token limited to a project (`ApiToken.project`) narrows all of it to that project, and no
`staff` topic. A token with a narrow scope (`predict`, `telemetry`) opens no socket at all
(`token_scope_refusal`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps

from .. import permissions

DASHBOARD = "dashboard"
STAFF = "staff"
# prefix.id, the id a positive integer that fits a bigint.
_OBJECT_TOPIC = re.compile(r"^([a-z][a-z_]{0,39})\.([1-9][0-9]{0,17})$")
# Topics of users and projects: not object topics, whatever is registered.
_RESERVED = {"user", "project", "account"}

Loader = Callable[[int], object]
_loaders: dict[str, Loader] = {}


def register_topic(prefix: str, loader: Loader | str) -> None:
    """`prefix.<id>` names one object: `loader(id)` returns it (with its `project_id`) or None. A
    model label ("datasets.Dataset") stands for a lookup by primary key."""
    if prefix in _RESERVED or not re.fullmatch(r"[a-z][a-z_]{0,39}", prefix):
        raise ValueError(f"{prefix!r} cannot be an object topic")
    if isinstance(loader, str):
        label = loader

        def loader(pk: int, label=label):
            return apps.get_model(label)._default_manager.filter(pk=pk).first()

    _loaders[prefix] = loader


def object_topic(topic: str) -> tuple[str, int] | None:
    """(prefix, id) of a registered object topic, else None."""
    match = _OBJECT_TOPIC.match(topic)
    if match is None or match[1] not in _loaders:
        return None
    return match[1], int(match[2])


def registered_prefixes() -> list[str]:
    return sorted(_loaders)


def _project_of(topic: str) -> int | None:
    if topic.startswith("project."):
        rest = topic[len("project."):]
        return int(rest) if rest.isdigit() else None
    return None


# --- a user's view ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """What one user may read now (read from the database; re-read when memberships change)."""

    user_id: int
    project_ids: frozenset[int]
    all_projects: bool  # staff without a project-limited token: projects made later too
    staff: bool  # reads `staff`

    def base_topics(self) -> set[str]:
        """The groups a socket joins on connect."""
        topics = {DASHBOARD, f"user.{self.user_id}", *(f"project.{pk}" for pk in self.project_ids)}
        if self.staff:
            topics.add(STAFF)
        return topics

    def reads(self, topic: str) -> bool:
        """May read `topic` without asking (object topics are asked for: `may_subscribe`)."""
        if topic == DASHBOARD or topic == f"user.{self.user_id}":
            return True
        if topic == STAFF:
            return self.staff
        project_id = _project_of(topic)
        if project_id is not None:
            return self.all_projects or project_id in self.project_ids
        return False

    def sees(self, topics, granted=frozenset()) -> bool:
        """An event addressed to `topics` is for this user: one of them is readable, or one of the
        object topics in `granted` (already checked with `may_subscribe`)."""
        return any(self.reads(t) or t in granted for t in topics)


def view_of(user) -> View:
    """The view of `user` as the database says now (their roles are re-read)."""
    permissions.forget_roles(user)
    ids = permissions.visible_project_ids(user)
    all_projects = ids is None
    if all_projects:
        from ..models import Project

        ids = set(Project.objects.values_list("pk", flat=True))
    staff = permissions.is_admin(user) and getattr(user, "token_project_id", None) is None
    return View(user_id=user.pk, project_ids=frozenset(ids), all_projects=all_projects, staff=staff)


def may_subscribe(user, topic: str, *, fresh: bool = True) -> tuple[bool, int | None]:
    """(allowed, the object's project id): the user may view the object of an object topic. An
    unknown object is refused like a forbidden one (its existence does not leak). `fresh`: re-read
    the user's roles first (a socket lives on across membership changes)."""
    parsed = object_topic(topic)
    if parsed is None:
        return False, None
    prefix, pk = parsed
    obj = _loaders[prefix](pk)
    if obj is None:
        return False, None
    if fresh:
        permissions.forget_roles(user)
    return permissions.can_see(user, obj), permissions.project_id_of(obj)


def grant(user, topics) -> dict[str, int | None]:
    """The object topics among `topics` the user may follow, each with its object's project id (a
    socket's `topics` named on connect)."""
    permissions.forget_roles(user)
    out = {}
    for topic in topics:
        allowed, project_id = may_subscribe(user, topic, fresh=False)
        if allowed:
            out[topic] = project_id
    return out


def granted_topics(user, topics) -> set[str]:
    """The object topics among `topics` that the user may follow (the events API's `topics`)."""
    permissions.forget_roles(user)
    return {t for t in topics if may_subscribe(user, t, fresh=False)[0]}


def projects_of(user) -> list[dict]:
    """The user's projects as `projects_changed` carries them: [{id, name, slug, role}], by name."""
    permissions.forget_roles(user)
    return [
        {"id": p.pk, "name": p.name, "slug": p.slug, "role": permissions.role_in(user, p)}
        for p in permissions.visible_projects(user).only("pk", "name", "slug")
    ]


# --- tokens -----------------------------------------------------------------------------------------


def token_scope_refusal(scope: str | None) -> str | None:
    """Why a token of this scope may not open a socket (None: it may). Only `all` tokens: a
    `predict` or `telemetry` token is a program's narrow key, and events are no part of its job."""
    if scope in (None, "", "all"):
        return None
    return f"A {scope!r}-scoped API token cannot open a socket: use a token of scope 'all'."
