"""The metrics collector: one background thread in every Celery worker (started on `worker_ready`)
and every ASGI server process (started when Django loads in one).

Every MONITORING_INTERVAL seconds, aligned on the clock so that the processes of a host wake together:
1. report this process's live figures (open sockets, API timings, ping round trips) to Redis;
   every server does, always: they are figures only a server has;
2. (unless MONITORING_COLLECTOR_ROLE=worker leaves the sampling to the workers, as `make run` does
   so that its servers keep their CPU for sockets) take the host's sample, unless another process of the host just did (a per-host lock in Redis):
   store it, evaluate health, anomalies and metric rules, publish system_metrics & co.;
3. run the service and job checks when they are due (also lock-throttled; beat runs them too, so
   they go on when no worker is left, and when beat is down).
Beat's `monitoring.metrics_collect` takes a host's sample through the same lock, so samples keep coming if
a thread dies. A tick's failure is logged and the next tick tries again.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from django.conf import settings
from django.db import close_old_connections

from mlops_dashboard import runtime

logger = logging.getLogger(__name__)

SERVER_COMMANDS = {"uvicorn", "daphne", "gunicorn", "hypercorn"}

_lock = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()
_role: str | None = None
_check_thread: threading.Thread | None = None


def server_process_role(argv: list[str] | None = None) -> str | None:
    """"asgi" when this process is an ASGI server (uvicorn, daphne, gunicorn, hypercorn, or the
    serving child of `manage.py runserver`), else None. MONITORING_COLLECTOR_ROLE=asgi makes any
    process one, `off` none; with `worker` a server still reports its figures (see samples_host)."""
    configured = settings.MONITORING_COLLECTOR_ROLE
    if configured == "off":
        return None
    if configured == "asgi":
        return "asgi"
    argv = sys.argv if argv is None else argv
    if not argv:
        return None
    program = os.path.basename(argv[0])
    package = os.path.basename(os.path.dirname(argv[0]))
    if program in SERVER_COMMANDS or (program == "__main__.py" and package in SERVER_COMMANDS):
        return "asgi"
    if program == "manage.py" and len(argv) > 1 and argv[1] == "runserver":
        if os.environ.get("RUN_MAIN") == "true" or "--noreload" in argv:
            return "asgi"
    return None


def samples_host(role: str) -> bool:
    """Whether this process's collector takes the host's samples and runs the checks, or only
    reports its own figures: a server leaves that to the workers when MONITORING_COLLECTOR_ROLE=worker."""
    return not (role == "asgi" and settings.MONITORING_COLLECTOR_ROLE == "worker")


def start(role: str) -> bool:
    """Start this process's collector (once). False when monitoring is disabled or it already runs."""
    global _thread, _role
    if not settings.MONITORING_ENABLED or settings.MONITORING_COLLECTOR_ROLE == "off":
        return False
    with _lock:
        if _thread is not None and _thread.is_alive():
            return False
        _stop.clear()
        _role = role
        _thread = threading.Thread(target=_run, args=(role,), name=f"monitoring-collector-{role}", daemon=True)
        _thread.start()
    logger.info("monitoring collector started (%s, pid %s, every %s s)", role, os.getpid(), settings.MONITORING_INTERVAL)
    return True


def stop(timeout: float = 2.0) -> None:
    global _thread
    _stop.set()
    thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=timeout)
    _thread = None
    try:
        from . import state

        state.process_forget()
    except Exception:
        pass


def running() -> bool:
    return _thread is not None and _thread.is_alive()


def _run(role: str) -> None:
    interval = max(1, settings.MONITORING_INTERVAL)
    time.sleep(0.05)
    failures = 0
    while not _stop.is_set():
        try:
            tick(role)
            failures = 0
        except Exception:
            failures += 1
            # Log the first failure of a streak and then one in 60, not every tick of an outage.
            if failures == 1 or failures % 60 == 0:
                logger.warning("monitoring tick failed (%s in a row)", failures, exc_info=True)
        finally:
            close_old_connections()
        now = time.time()
        _stop.wait(interval - (now % interval) + 0.01)


def tick(role: str) -> None:
    from . import services, state

    state.process_report(role, runtime.snapshot())
    if samples_host(role):
        services.metrics_collect(role=role)
        _check_in_background()


def _check_in_background() -> None:
    """The checks wait on the network (Celery pings): run them beside the sampling, one at a time."""
    global _check_thread
    if _check_thread is not None and _check_thread.is_alive():
        return

    def run():
        from . import services

        try:
            services.monitoring_check()
        except Exception:
            logger.warning("monitoring checks failed", exc_info=True)
        finally:
            close_old_connections()

    _check_thread = threading.Thread(target=run, name="monitoring-checks", daemon=True)
    _check_thread.start()


def _after_fork() -> None:
    # Threads do not survive a fork: a forked child starts without a collector (a Celery pool
    # child must not run one; a preforking server's child can call start() again).
    global _thread, _check_thread
    _thread = None
    _check_thread = None
    _stop.clear()


os.register_at_fork(after_in_child=_after_fork)
