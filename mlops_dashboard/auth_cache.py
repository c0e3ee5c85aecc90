"""Who an API token is, which roles its user holds, and the projects named in requests, cached in
each server process.

A program calling the API many times a second (telemetry ingest, predictions) would otherwise cost
two queries per call before any work: the token's row and the user's memberships. Here a token
checked once is kept, with its user and that user's roles, and later calls with the same key take it
from memory.

Staying right (generation_cache.py): anything that can change an answer (a token made, changed or
revoked; a user saved or deleted; a membership or a project changed) bumps a generation counter in
Redis when its transaction commits, and drops this process's cache at once. Every process reads the
counter at most once every AUTH_CACHE_CHECK_SECONDS (1 s), and empties its cache when it moved: a
revoked token, a deactivated user or a removed member is refused everywhere within a second. Expiry
needs no bump (it is checked on every use). With Redis away, nothing is cached: every call reads the
database.

Each request gets its own copies of the cached token and user (requests set attributes on them).
"""

from __future__ import annotations

import copy

from .generation_cache import GenerationCache

MAX_ENTRIES = 10_000  # keys of one process; past it the cache starts over


class _Cache:
    def __init__(self):
        self.tokens: dict[str, object] = {}
        self.projects: dict[int, object] = {}


_cache = _Cache()


def _clear() -> None:
    _cache.tokens.clear()
    _cache.projects.clear()


_generation = GenerationCache("authz", _clear)


def generation_key() -> str:
    return _generation.key()


def token_get(key: str):
    """A copy of the cached token of this key (with a copy of its user), or None."""
    return _copied_token(key) if _generation.usable() else None


def fresh() -> bool:
    """May token_peek answer now (the cache's check is recent)? No I/O."""
    return _generation.fresh()


def check() -> bool:
    """Read the cache's generation if its check is due (a Redis read: not on the event loop)."""
    return _generation.usable()


def token_peek(key: str):
    """token_get without any I/O (for the event loop): None also when the cache's check is due."""
    return _copied_token(key) if _generation.fresh() else None


def _copied_token(key: str):
    token = _cache.tokens.get(key)
    if token is None:
        return None
    user = copy.copy(token.user)
    token = copy.copy(token)
    token.user = user
    return token


def token_put(key: str, token) -> None:
    """Keep a token just checked against the database (its user loaded). Its user's roles are read
    now, so that requests made with it need no query for them either."""
    from . import permissions

    if not _generation.usable():
        return
    generation = _generation.generation
    user = copy.copy(token.user)
    permissions.roles(user)  # every membership, cached on this user (a token's limit applies on use)
    kept = copy.copy(token)
    kept.user = user

    def store():
        if len(_cache.tokens) >= MAX_ENTRIES:
            _cache.tokens.clear()
        _cache.tokens[key] = kept

    _generation.put(generation, store)  # not if changed meanwhile: this reading may be stale


def project_get(pk: int):
    """A copy of project `pk` (None when there is none), from the cache when it holds it."""
    from .models import Project

    usable = _generation.usable()
    project = _cache.projects.get(pk) if usable else None
    if project is None:
        generation = _generation.generation
        project = Project.objects.filter(pk=pk).first()
        if project is None or not usable:
            return project

        def store():
            if len(_cache.projects) >= MAX_ENTRIES:
                _cache.projects.clear()
            _cache.projects[pk] = project

        _generation.put(generation, store)
    return copy.copy(project)


def token_used(key: str, moment) -> None:
    """The cached token's last use was noted in the database at `moment`."""
    token = _cache.tokens.get(key)
    if token is not None:
        token.last_used_at = moment


def forget_all() -> None:
    _generation.forget_all()


def changed(sender=None, update_fields=None, **kwargs) -> None:
    """Something tokens or roles depend on changed: forget now, and tell every process on commit.
    (A login's own save of `last_login` changes nothing here.)"""
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    _generation.changed()


def connect_signals() -> None:
    from django.contrib.auth import get_user_model
    from django.db.models.signals import post_delete, post_save

    from .models import ApiToken, Membership, Project

    for model in (ApiToken, get_user_model(), Membership, Project):
        uid = f"mlops_dashboard.auth_cache.{model._meta.label_lower}"
        post_save.connect(changed, sender=model, dispatch_uid=f"{uid}.save")
        post_delete.connect(changed, sender=model, dispatch_uid=f"{uid}.delete")
