"""A per-process cache kept right across processes by a generation counter in Redis.

A process keeps what it read from the database (tokens and roles: auth_cache.py; the versions that
serve predictions: training/services/serving.py). Whatever can change an answer bumps the cache's
counter in Redis when its transaction commits, and empties this process's cache at once. Every
process reads the counter at most once every AUTH_CACHE_CHECK_SECONDS (1 s) and empties its cache
when it moved, so a change is honoured everywhere within a second. With Redis away, nothing is
cached (`usable()` is False): every call reads the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


class GenerationCache:
    """`clear` empties the process's entries (called under `lock`, or with it free at start)."""

    def __init__(self, name: str, clear: Callable[[], None]):
        self.name = name
        self._clear = clear
        self.lock = threading.Lock()
        self.generation: bytes | None = None
        self.checked_at = float("-inf")
        self.up = False  # Redis answered at the last read

    def key(self) -> str:
        return f"{settings.REDIS_KEY_PREFIX}:{self.name}:generation"

    def usable(self) -> bool:
        """May the cache answer now? Reads Redis's generation when the last read is older than the
        check interval (one caller reads; the others use what is known), and empties the cache if it
        moved. False without Redis or with the cache turned off."""
        every = settings.AUTH_CACHE_CHECK_SECONDS
        if every <= 0:
            return False
        now = time.monotonic()
        if now - self.checked_at < every:
            return self.up
        with self.lock:
            if now - self.checked_at < every:  # another thread just read it
                return self.up
            from .events import bus

            self.checked_at = now  # tried again after the interval, Redis up or not
            try:
                generation = bus.sync_client().get(self.key())
            except (RedisError, OSError):
                if self.up:
                    logger.warning("%s cache off: Redis does not answer", self.name, exc_info=True)
                self._clear()
                self.up = False
                return False
            if generation != self.generation or not self.up:
                self._clear()
                self.generation = generation
            self.up = True
            return True

    def fresh(self) -> bool:
        """`usable()` without reading Redis: True while the last read is recent and Redis answered it.
        For callers that must not block (the event loop): when it is False, they take the path
        that calls usable()."""
        every = settings.AUTH_CACHE_CHECK_SECONDS
        return every > 0 and self.up and time.monotonic() - self.checked_at < every

    def put(self, generation, store: Callable[[], None]) -> None:
        """Run `store` (which adds an entry) unless the cache was emptied since `generation` was read
        (the entry may then be stale)."""
        with self.lock:
            if self.generation == generation:
                store()

    def forget_all(self) -> None:
        with self.lock:
            self._clear()

    def changed(self) -> None:
        """Something cached may have changed: forget now, and tell every process on commit."""
        self.forget_all()
        transaction.on_commit(self._bump, robust=True)

    def _bump(self) -> None:
        from .events import bus

        self.forget_all()  # again: a request of this process may have cached the old state meanwhile
        try:
            bus.sync_client().incr(self.key())
        except (RedisError, OSError):
            logger.warning("%s cache: the change could not be announced (Redis away); other processes "
                           "see it within AUTH_CACHE_CHECK_SECONDS of Redis answering again", self.name,
                           exc_info=True)
