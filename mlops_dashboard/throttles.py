"""API rate limits per client: anonymous callers by address, logged-in users (session or token) by
user. The counts live in the shared cache (CACHES["default"], Redis), so every server process
counts against one budget. A 429 is a problem-details body with Retry-After (api_errors.py)."""

import logging

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


logger = logging.getLogger(__name__)


class _SettingRate:
    """DRF reads its rates once, at import (`THROTTLE_RATES` on the class); these read the setting
    on each request, so a deployment, a benchmark or a test changes them with the setting alone.
    An empty rate turns the throttle off."""

    setting = ""

    def get_rate(self):
        return getattr(settings, self.setting) or None

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError):  # the count is away with Redis: serve rather than fail the API
            logger.warning("API throttle skipped: the cache does not answer", exc_info=True)
            return True


class AnonThrottle(_SettingRate, AnonRateThrottle):
    setting = "API_THROTTLE_ANON"


class UserThrottle(_SettingRate, UserRateThrottle):
    setting = "API_THROTTLE_USER"
