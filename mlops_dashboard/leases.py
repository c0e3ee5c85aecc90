"""At most N of a thing at once per key, across every process: a Redis sorted set of leases.

Each lease is a member scored with the Redis clock when it was taken or last refreshed; its holder
refreshes it every TTL/3 seconds while it holds it and removes it when done. A process that dies
holding a lease stops refreshing it, and the lease stops counting TTL seconds later.

    async with lease("uploads:user.7", limit=3) as held:
        if not held: ... answer 429
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from django.conf import settings
from redis.exceptions import RedisError

from .events import bus

logger = logging.getLogger(__name__)

TTL = 60.0  # seconds a lease counts without a refresh (its holder died)

# KEYS[1]: the set; ARGV: limit, ttl, member. 1 when taken, 0 when `limit` live leases are held.
ACQUIRE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], t, ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""
REFRESH = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], 'XX', tonumber(now[1]) + tonumber(now[2]) / 1e6, ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 1)
return 1
"""


def key(name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:lease:{name}"


async def _refresh(client, name: str, member: str, ttl: float):
    while True:
        await asyncio.sleep(ttl / 3)
        with contextlib.suppress(RedisError):
            await client.eval(REFRESH, 1, key(name), ttl, member)


@contextlib.asynccontextmanager
async def lease(name: str, limit: int, ttl: float = TTL):
    """Yields True while holding one of `limit` leases on `name`, False when all are taken.

    While Redis is unreachable every caller gets one (logged): the limit guards against one user
    hogging the servers, not against an outage.
    """
    client = bus.async_client()
    member = uuid.uuid4().hex
    try:
        held = bool(await client.eval(ACQUIRE, 1, key(name), limit, ttl, member))
    except RedisError as exc:
        logger.warning("lease %s not counted (Redis unreachable: %s)", name, exc)
        held = None
    if not held:
        yield held is None
        return
    refresher = asyncio.create_task(_refresh(client, name, member, ttl))
    try:
        yield True
    finally:
        refresher.cancel()
        with contextlib.suppress(RedisError):
            await client.zrem(key(name), member)
