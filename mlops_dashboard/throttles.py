"""API rate limits per client: anonymous callers by address, logged-in users (session or token) by
user. The counts live in the shared cache's Redis (CACHES["default"]), so every server process
counts against one budget. A 429 is a
problem-details body with Retry-After (api_errors.py).

DRF's sliding window (the times of the requests of the last period), kept as a Redis list and
checked and updated by one script: one round trip per request where DRF's cache-based throttle
makes two (a read, then a write of the whole history), and no lost counts between processes
racing each other."""

import logging
import threading

from django.conf import settings
from django.core.cache import caches
from redis.exceptions import RedisError
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)

# KEYS[1]: the client's list of request times, newest first. ARGV: now, period (s), allowed requests.
# Drops the times older than the period; refuses when as many as allowed remain, else notes now.
# Returns {allowed (1|0), requests in the window, the oldest time in it (a string, or false)}.
WINDOW_LUA = """
local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local allowed = tonumber(ARGV[3])
while true do
  local oldest = redis.call('LINDEX', KEYS[1], -1)
  if not oldest or tonumber(oldest) > now - period then break end
  redis.call('RPOP', KEYS[1])
end
local n = redis.call('LLEN', KEYS[1])
if n >= allowed then
  return {0, n, redis.call('LINDEX', KEYS[1], -1)}
end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(period))
return {1, n + 1, redis.call('LINDEX', KEYS[1], -1)}
"""

_script = None  # registered once; run with each call's client
# One redis-py client per process for the cache's Redis (per writer URL: a test may point the cache
# elsewhere). Django's `caches` gives each request context a cache object of its own, with a
# connection pool of its own: asking it for a client cost a new connection per request.
_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def _client(cache):
    url = cache._servers[0]  # django's RedisCache: the first server is the writer
    client = _clients.get(url)
    if client is None:
        with _clients_lock:
            client = _clients.get(url)
            if client is None:
                made = cache._cache  # the pool class and options as the cache's own
                client = _clients[url] = made._client(connection_pool=made._pool_class.from_url(url, **made._pool_options))
    return client


def _window_script(client):
    global _script
    if _script is None:
        _script = client.register_script(WINDOW_LUA)
    return _script


def _window(key: str, now: float, period: int, allowed: int):
    """Run the script on the shared cache's Redis (CACHES["default"]), under the cache's key for `key`."""
    cache = caches["default"]
    client = _client(cache)
    return _window_script(client)(keys=[cache.make_key(key)], args=[repr(now), period, allowed], client=client)


def user_requests_allowed(user_ids: list[int]) -> list[bool | None]:
    """UserThrottle's check of one request per user id in the list (a user may appear more than
    once), all sent to Redis in one round trip: True when allowed (the request is counted), False
    when refused, None when Redis did not answer it (the caller then takes DRF's path, which decides
    as UserThrottle does). The same keys, window and script as UserThrottle, without a request object.
    """
    throttle = UserThrottle()
    if throttle.rate is None:
        return [True] * len(user_ids)
    cache = caches["default"]
    client = _client(cache)
    sha = _window_script(client).sha
    pipe = client.pipeline(transaction=False)
    for user_id in user_ids:
        key = cache.make_key(throttle.cache_format % {"scope": throttle.scope, "ident": user_id})
        # evalsha alone: a Redis that lost the script answers NoScriptError for it (None here).
        pipe.evalsha(sha, 1, key, repr(throttle.timer()), throttle.duration, throttle.num_requests)
    try:
        replies = pipe.execute(raise_on_error=False)
    except (RedisError, OSError):
        return [None] * len(user_ids)
    return [None if isinstance(r, Exception) else bool(r[0]) for r in replies]


class _SettingRate:
    """DRF reads its rates once, at import (`THROTTLE_RATES` on the class); these read the setting
    on each request, so a deployment, a benchmark or a test changes them with the setting alone.
    An empty rate turns the throttle off."""

    setting = ""

    def get_rate(self):
        return getattr(settings, self.setting) or None

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        try:
            allowed, self.count, oldest = _window(self.key, self.now, self.duration, self.num_requests)
        except (RedisError, OSError):  # the count is away with Redis: serve rather than fail the API
            logger.warning("API throttle skipped: Redis does not answer", exc_info=True)
            return True
        self.oldest = float(oldest) if oldest else None
        return bool(allowed)

    def wait(self):
        """DRF's advice: the rest of the oldest request's period, shared among the requests left."""
        remaining = self.duration - (self.now - self.oldest) if self.oldest is not None else self.duration
        available = self.num_requests - self.count + 1
        if available <= 0:
            return None
        return remaining / float(available)


class AnonThrottle(_SettingRate, AnonRateThrottle):
    setting = "API_THROTTLE_ANON"


class UserThrottle(_SettingRate, UserRateThrottle):
    setting = "API_THROTTLE_USER"
