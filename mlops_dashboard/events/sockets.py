"""Open sockets per user: the per-user limit across server processes, and closing a user's sockets
when their credentials change (logout, deactivation, password change, a revoked token).

The limit counts live sockets in Redis, one sorted set per user: a member per socket (its channel
name) scored with the time its lease ends. Each server process renews its own sockets' leases every third
of `WS_SOCKET_LEASE_SECONDS`, and a socket that closes removes its member. A server that is SIGKILLed (or
loses its host) cannot remove its members, so they lapse on their own within a lease: the
count never leaks for good, and a plain per-process counter could not hold across processes.

Closing reaches every server process through the channel layer: each socket joins its user's
`account.<id>` group, and `close_user_sockets` publishes one `account.close` message there (a plain
Redis PUBLISH, so any process can call it: a request, a worker, a management command).

Memberships take the same road: a membership made, changed or deleted (and, for staff sockets, a
project made, renamed or deleted, and a user's staff flag) sends `account.projects` to the user's
sockets (staff: the `account.staff` group), which re-read what the user may read and join or leave
project topics; then a `projects_changed` event on `user.<id>` tells the user's pages.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import msgpack
import redis
from django.conf import settings
from django.db import transaction

from . import bus, layer

logger = logging.getLogger(__name__)

ACCOUNT_CLOSE = "account.close"  # the consumer's handler for it is `account_close`
ACCOUNT_PROJECTS = "account.projects"  # ... and `account_projects`
# Every staff socket (without a project-limited token) is in this group: told when projects come and go.
STAFF_GROUP = "account.staff"
# Close codes: the credential this socket authenticated with is gone (the client goes to the login
# page), or it changed (the client reconnects, and the server says whether it still holds).
REVOKED_CODE = 4401
CHANGED_CODE = 4001
TOO_MANY_CODE = 4429

# Keys: the user's set; ARGV: its limit, the lease, the socket. Redis' clock, so hosts may disagree.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[1])
if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit and not redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""
# KEYS: users' sets; ARGV: the lease, then one socket per key.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, ARGV[i + 1])
  redis.call('EXPIRE', key, math.ceil(lease) + 1)
end
return #KEYS
"""


def user_key(user_id: int) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:ws:user:{user_id}"


def account_group(user_id: int) -> str:
    return f"account.{user_id}"


def token_ref(token_id: int) -> str:
    """A socket's handle on the API token it authenticated with (never the key itself)."""
    return hashlib.sha256(f"token:{token_id}".encode()).hexdigest()[:24]


def session_ref(session_key: str) -> str:
    return hashlib.sha256(f"session:{session_key}".encode()).hexdigest()[:24]


# --- the per-user limit ---------------------------------------------------------------------------

# This process's live sockets (channel name -> user id), whose leases it renews, per event loop.
_live: dict[str, int] = {}
_renewers: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


async def acquire(user_id: int, channel: str) -> bool:
    """Count this socket against its user's limit; False (not counted) when the user is at it."""
    client = bus.async_client()
    limit = settings.WS_MAX_SOCKETS_PER_USER
    ok = await client.eval(_ACQUIRE, 1, user_key(user_id), limit, settings.WS_SOCKET_LEASE_SECONDS, channel)
    if not ok:
        return False
    _live[channel] = user_id
    _ensure_renewer()
    return True


async def release(channel: str) -> None:
    user_id = _live.pop(channel, None)
    if user_id is not None:
        await bus.async_client().zrem(user_key(user_id), channel)


async def count(user_id: int) -> int:
    """The user's sockets counted now, across every process (for tests and the admin)."""
    client = bus.async_client()
    await client.zremrangebyscore(user_key(user_id), "-inf", (await client.time())[0])
    return await client.zcard(user_key(user_id))


def _ensure_renewer() -> None:
    loop = asyncio.get_running_loop()
    task = _renewers.get(loop)
    if task is None or task.done():
        _renewers[loop] = loop.create_task(_renew_forever())


async def _renew_forever() -> None:
    while True:
        lease = settings.WS_SOCKET_LEASE_SECONDS
        await asyncio.sleep(lease / 3)
        live = list(_live.items())
        if not live:
            continue
        try:
            await bus.async_client().eval(
                _RENEW, len(live), *[user_key(u) for _, u in live], lease, *[c for c, _ in live]
            )
        except (redis.RedisError, OSError) as exc:  # the next round tries again; leases outlast two misses
            logger.warning("could not renew %d socket leases: %s", len(live), exc)


# --- closing a user's sockets -----------------------------------------------------------------------


def close_user_sockets(user_id: int, reason: str, *, code: int = REVOKED_CODE, session_key: str | None = None,
                       token=None) -> None:
    """Close the user's open sockets in every server process, within moments.

    With `session_key` or `token`, only the sockets that authenticated with that session or token.
    Best effort: if Redis is down the sockets stay open (as would the sessions' other pages).
    """
    message = {"type": ACCOUNT_CLOSE, "code": code, "reason": reason[:120]}
    if session_key:
        message["session"] = session_ref(session_key)
    if token is not None:
        message["token"] = token_ref(token.pk)
    channel = layer.group_channel(bus.layer_prefix(), account_group(user_id))
    try:
        bus.sync_client().publish(channel, msgpack.packb(message))
    except redis.RedisError as exc:
        logger.warning("could not close user %s's sockets (%s): %s", user_id, reason, exc)


def _tell(group: str, message: dict) -> None:
    """One message to a channel-layer group in every server process (a plain Redis PUBLISH)."""
    bus.sync_client().publish(layer.group_channel(bus.layer_prefix(), group), msgpack.packb(message))


def projects_changed(user_ids=(), *, staff: bool = False) -> None:
    """The users' projects changed (`staff`: the set of projects changed, which staff all see): their
    sockets re-read and re-join, then each user's pages get `projects_changed`. Call after commit."""
    from django.contrib.auth import get_user_model

    from . import catalog, topics
    from .bus import publish

    user_model = get_user_model()
    ids = set(user_ids)
    try:
        # Sockets first: by the time a page hears of a new project, its socket is joining that topic.
        for user_id in sorted(ids):
            _tell(account_group(user_id), {"type": ACCOUNT_PROJECTS})
        if staff:
            _tell(STAFF_GROUP, {"type": ACCOUNT_PROJECTS})
    except redis.RedisError as exc:
        logger.warning("could not tell sockets of users %s about their projects: %s", sorted(ids), exc)
    if staff:
        ids |= set(user_model.objects.filter(is_staff=True, is_active=True).values_list("pk", flat=True))
    for user in user_model.objects.filter(pk__in=ids, is_active=True):
        publish(catalog.ProjectsChanged(user_id=user.pk, projects=topics.projects_of(user)))


def _on_membership_saved(sender, instance, created=False, raw=False, update_fields=None, **kwargs):
    if raw:
        return
    user_id = instance.user_id
    transaction.on_commit(lambda: projects_changed([user_id]), robust=True)


def _on_membership_deleted(sender, instance, **kwargs):
    user_id = instance.user_id
    transaction.on_commit(lambda: projects_changed([user_id]), robust=True)


def _on_project_pre_save(sender, instance, raw=False, **kwargs):
    """Remember the name and slug, to tell after the save whether the switcher's entry changed."""
    if raw or instance.pk is None:
        return
    instance._socket_project_before = sender._default_manager.filter(pk=instance.pk).values("name", "slug").first()


def _on_project_saved(sender, instance, created=False, raw=False, **kwargs):
    before = instance.__dict__.pop("_socket_project_before", None)
    if raw or (not created and before == {"name": instance.name, "slug": instance.slug}):
        return  # a new description: no list shows it
    # A new project has no members yet (staff only); a renamed one is renamed for its members too.
    members = [] if created else list(instance.memberships.values_list("user_id", flat=True))
    transaction.on_commit(lambda: projects_changed(members, staff=True), robust=True)


def _on_project_deleted(sender, instance, **kwargs):
    # Its memberships' own post_delete tells the members.
    transaction.on_commit(lambda: projects_changed(staff=True), robust=True)


def _token_model():
    """The API token model (knox's, ours: KNOX_TOKEN_MODEL) whose deletion closes sockets."""
    from django.apps import apps

    return apps.get_model(settings.KNOX_TOKEN_MODEL)


def _on_logout(sender, request, user, **kwargs):
    if user is None:
        return
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        close_user_sockets(user.pk, "logged out", session_key=session_key)


def _on_user_pre_save(sender, instance, raw=False, update_fields=None, **kwargs):
    """Remember what the row held, to tell after the save whether the account changed."""
    if raw or instance.pk is None:
        return
    if update_fields is not None and not {"is_active", "password", "is_staff"} & set(update_fields):
        return
    before = sender._default_manager.filter(pk=instance.pk).values("is_active", "password", "is_staff").first()
    instance._socket_account_before = before


def _on_user_post_save(sender, instance, created=False, raw=False, **kwargs):
    before = instance.__dict__.pop("_socket_account_before", None)
    if created or raw or before is None:
        return
    if before["is_active"] and not instance.is_active:
        close_user_sockets(instance.pk, "account deactivated")
    elif before["password"] != instance.password:
        close_user_sockets(instance.pk, "password changed", code=CHANGED_CODE)
    elif before["is_staff"] != instance.is_staff:
        user_id = instance.pk  # an admin now sees every project, or no longer does
        transaction.on_commit(lambda: projects_changed([user_id]), robust=True)


def _on_user_delete(sender, instance, **kwargs):
    close_user_sockets(instance.pk, "account deleted")


def _on_token_delete(sender, instance, **kwargs):
    close_user_sockets(instance.user_id, "token revoked", token=instance)


def connect_signals() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import post_delete, post_save, pre_save

    user_model = get_user_model()
    uid = "mlops_dashboard.events.sockets"
    user_logged_out.connect(_on_logout, dispatch_uid=f"{uid}.logout")
    pre_save.connect(_on_user_pre_save, sender=user_model, dispatch_uid=f"{uid}.user_pre_save")
    post_save.connect(_on_user_post_save, sender=user_model, dispatch_uid=f"{uid}.user_post_save")
    post_delete.connect(_on_user_delete, sender=user_model, dispatch_uid=f"{uid}.user_delete")
    post_delete.connect(_on_token_delete, sender=_token_model(), dispatch_uid=f"{uid}.token_delete")
    from ..models import Membership, Project

    post_save.connect(_on_membership_saved, sender=Membership, dispatch_uid=f"{uid}.membership_saved")
    post_delete.connect(_on_membership_deleted, sender=Membership, dispatch_uid=f"{uid}.membership_deleted")
    pre_save.connect(_on_project_pre_save, sender=Project, dispatch_uid=f"{uid}.project_pre_save")
    post_save.connect(_on_project_saved, sender=Project, dispatch_uid=f"{uid}.project_saved")
    post_delete.connect(_on_project_deleted, sender=Project, dispatch_uid=f"{uid}.project_deleted")
