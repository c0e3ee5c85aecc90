"""Processes of a server process for the API's CPU-bound work: big prediction batches.

A server process runs its Python on one core at a time (the GIL), whatever its threads: two
threads predicting 1,000 rows each ran no faster than one after the other. The API_PROCESSES
processes here (Django set up in each, as in a worker) each take one request's work at a time,
on a core of their own, while the server's event loop goes on reading and answering requests.

- They start when first asked for, in the background: until every one of them is up (about as long as
  a worker's start), `ready()` answers None and the caller does the work in its own threads, as
  with API_PROCESSES=0. A pool that does not start is tried again after RESTART_SECONDS, then
  twice as long each time.
- A function sent here and its arguments are pickled; they run in a process with the same
  settings and environment as the server (not a test's settings overrides).
- A process that dies breaks the pool: a call that could not be sent raises `Unavailable` (nothing
  ran), one that was running raises `Lost` (it may have done part of its work), and a new pool
  starts RESTART_SECONDS later.
- They end with the server: at its exit concurrent.futures ends the pool. A server that is killed
  cannot: each process then sees its parent gone (within PARENT_CHECK_SECONDS) and exits, rather
  than wait forever on a queue whose other end it holds itself.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from django.conf import settings

logger = logging.getLogger(__name__)


class Unavailable(Exception):
    """The pool could not take the call (a process died, or the pool was shut down): nothing ran."""


class Lost(Exception):
    """The process running the call died: it may have done part of its work."""


PARENT_CHECK_SECONDS = 1.0


def _init() -> None:
    """In each new process: Django, as the server set it up. Ctrl-C in a terminal reaches the whole
    process group: the server handles it, and the pool ends with the server."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops_dashboard.settings")
    import django

    django.setup()


def _up() -> int:
    return os.getpid()


# A pool that broke, or did not start, is started again after this many seconds, doubled after each
# start that fails (up to the maximum) and reset by one that comes up.
RESTART_SECONDS = 5.0
RESTART_MAX_SECONDS = 300.0
START_TIMEOUT = 180.0


class ProcessPool:
    def __init__(self, setting: str = "API_PROCESSES"):
        self.setting = setting
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._ready = False
        self._starting = False
        self._not_before = 0.0  # monotonic time before which no pool starts
        self._backoff = RESTART_SECONDS

    def ready(self) -> ProcessPoolExecutor | None:
        """The pool, when its processes are all up; else None (starting them, in a thread of their
        own, if they are not and may start now)."""
        if self._ready:
            return self._executor
        size = getattr(settings, self.setting, 0)
        if size <= 0:
            return None
        with self._lock:
            if self._starting or self._executor is not None or time.monotonic() < self._not_before:
                return None
            self._starting = True
        # Spawning writes each new process's start-up data through a pipe: not on the event loop.
        threading.Thread(target=self._start, args=(size,), name="api-processes-start", daemon=True).start()
        return None

    def _start(self, size: int) -> None:
        executor = None
        try:
            executor = ProcessPoolExecutor(max_workers=size, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_init)
            # One call per process: with spawn, each call that finds no idle process starts one.
            for future in [executor.submit(_up) for _ in range(size)]:
                future.result(timeout=START_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - logged; the threads predict, and a later start retries
            logger.warning("API processes did not start (next try in %.0f s): %r", self._backoff, exc)
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
            with self._lock:
                self._starting = False
                self._wait_before_restart()
            return
        with self._lock:
            self._executor, self._ready, self._starting = executor, True, False
            self._backoff = RESTART_SECONDS
        logger.info("API processes up: %d", size)

    def _wait_before_restart(self) -> None:
        self._not_before = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, RESTART_MAX_SECONDS)

    def _drop(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor, self._ready = None, False
                logger.warning("API processes lost one of theirs: a new pool starts in %.0f s", self._backoff)
                self._wait_before_restart()
        executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, executor: ProcessPoolExecutor, fn, *args):
        """`fn(*args)` in one of the processes. Raises Unavailable when the pool cannot take it, Lost
        when its process died while running it."""
        try:
            future = executor.submit(fn, *args)
        except (BrokenProcessPool, RuntimeError) as exc:  # broken, or shut down: nothing ran
            self._drop(executor)
            raise Unavailable(str(exc)) from exc
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            self._drop(executor)
            raise Lost(str(exc)) from exc
