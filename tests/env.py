"""Loaded by pytest before Django (`-p tests.env`): the tests' own Redis database and key prefix.

Every key, channel and Celery queue the suite touches starts with a prefix unique to this run, in
a Redis database of its own, so a run never disturbs a running instance (or another run).
"""

import os
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops_dashboard.settings")


def _test_redis_url(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


os.environ["REDIS_URL"] = _test_redis_url(
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), int(os.environ.get("TEST_REDIS_DB", "15"))
)
os.environ.pop("CELERY_BROKER_URL", None)
os.environ["REDIS_KEY_PREFIX"] = os.environ.get("TEST_REDIS_KEY_PREFIX") or f"test-{os.getpid()}"
os.environ.setdefault("MEDIA_ROOT", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".run", f"test-media-{os.getpid()}"))
# The suite hammers the API from one user and one address: throttles stay on but out of reach (per
# second, so DRF's history per client stays short); tests/mlops_dashboard/test_throttles.py lowers them.
os.environ.setdefault("API_THROTTLE_ANON", "10000/second")
os.environ.setdefault("API_THROTTLE_USER", "10000/second")
# Big prediction batches in the test process's ASGI app run in its threads: processes of its own would
# not see the tests' settings overrides. Servers that test the processes set it themselves.
os.environ.setdefault("API_PROCESSES", "0")
# Periodic metrics would interleave with the events tests count; monitoring tests turn it on.
os.environ.setdefault("MONITORING_ENABLED", "0")
# Playwright's sync API runs an event loop in the test thread; the tests' own ORM calls are safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
os.makedirs(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".run"), exist_ok=True)
# An event frame over 64 KiB that shortening its lists cannot fix is a bug: fail the test that sent it.
os.environ.setdefault("EVENT_OVERSIZE_STRICT", "1")
# Notifications: a short grouping window and quick retries, so tests wait seconds, not minutes.
os.environ.setdefault("NOTIFY_GROUP_SECONDS", "2")
os.environ.setdefault("NOTIFY_RETRY_BASE_SECONDS", "0.5")
os.environ.setdefault("NOTIFY_MAX_ATTEMPTS", "3")
os.environ.setdefault("NOTIFY_TIMEOUT_SECONDS", "5")
