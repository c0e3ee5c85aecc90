"""What every row that records long work shares: states, claiming, heartbeats and the reaper.

A job row moves queued → running → succeeded | failed | cancelled and always reaches a terminal
state, even when its worker dies:
- `claim()` moves a row to running with one conditional UPDATE, so a task delivered twice (as a
  broker may after a visibility timeout) does its work once;
- `heartbeat()` touches the row from a background thread while the work runs;
- `reap_stale()` (run by beat) fails rows whose heartbeat stopped: the worker was killed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import timedelta

from django.db import close_old_connections, models
from django.utils import timezone

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5
# A running row whose heartbeat is older than this has lost its worker.
STALE_AFTER = timedelta(seconds=25)


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class JobFields(models.Model):
    """Columns shared by processing jobs, training jobs and pipeline runs."""

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def duration(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return round((end - self.started_at).total_seconds(), 3)


def claim(model, pk, *, from_statuses=(JobStatus.QUEUED,), to_status=JobStatus.RUNNING, **fields) -> bool:
    """Atomically move a row to `to_status`; False when another delivery already did (or it ended)."""
    now = timezone.now()
    updated = model.objects.filter(pk=pk, status__in=list(from_statuses)).update(
        status=to_status, started_at=now, heartbeat_at=now, attempts=models.F("attempts") + 1, **fields
    )
    return updated == 1


def finish(model, pk, *, status, from_statuses=(JobStatus.RUNNING,), **fields) -> bool:
    """Move a running row to a terminal state, once: False if it was already terminal."""
    updated = model.objects.filter(pk=pk, status__in=list(from_statuses)).update(
        status=status, finished_at=timezone.now(), **fields
    )
    return updated == 1


@contextlib.contextmanager
def heartbeat(model, pk, *, field="heartbeat_at", every: float = HEARTBEAT_SECONDS):
    """Touch `field` every few seconds while the block runs, from a thread of its own (a long
    computation between progress reports must not look like a dead worker)."""
    stop = threading.Event()

    def beat():
        while not stop.wait(every):
            try:
                model.objects.filter(pk=pk).update(**{field: timezone.now()})
            except Exception:  # the next beat tries again; the work itself goes on
                logger.warning("heartbeat of %s %s failed", model.__name__, pk, exc_info=True)
            finally:
                close_old_connections()

    thread = threading.Thread(target=beat, name=f"heartbeat-{model.__name__}-{pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 1)


def stale(model, *, statuses=(JobStatus.RUNNING,), field="heartbeat_at", older_than=STALE_AFTER):
    cutoff = timezone.now() - older_than
    return model.objects.filter(status__in=list(statuses)).filter(
        models.Q(**{f"{field}__lt": cutoff}) | models.Q(**{f"{field}__isnull": True, "created_at__lt": cutoff})
    )


# Each app registers a function that fails its rows whose worker died; beat runs them all.
REAPERS: list = []
# Each app registers a function that sends its queued rows older than a cutoff to the broker again.
RESENDERS: list = []
# A row still queued this long, with no message left waiting in the broker, lost its message.
REENQUEUE_AFTER = timedelta(seconds=120)


def reaper(fn):
    REAPERS.append(fn)
    return fn


def reap_all() -> dict[str, int]:
    results = {}
    for fn in REAPERS:
        try:
            results[f"{fn.__module__}.{fn.__name__}"] = fn()
        except Exception:
            logger.exception("reaper %s failed", fn.__name__)
    return results


def resender(fn):
    RESENDERS.append(fn)
    return fn


def broker_queue_empty() -> bool:
    """True when no task message waits in the default queue. With prefetch 1 and late acks, a
    worker holds only the messages it runs, so a row queued for minutes while nothing waits has
    lost its message (Redis restarted without its data, a broker failover)."""
    from celery import current_app
    from kombu.exceptions import ChannelError

    with current_app.connection_for_write() as conn:
        try:
            ok = conn.default_channel.queue_declare(queue=current_app.conf.task_default_queue, passive=True)
        except ChannelError:  # Redis keeps no key for an empty queue
            return True
        return ok.message_count == 0


def resend_lost() -> dict[str, int]:
    """Send again the queued rows whose message was lost (run by beat with the reapers). A second
    delivery, should the first turn up after all, finds the row claimed and does nothing."""
    try:
        if not broker_queue_empty():
            return {}
    except Exception:
        logger.warning("could not look at the broker's queue", exc_info=True)
        return {}
    cutoff = timezone.now() - REENQUEUE_AFTER
    results = {}
    for fn in RESENDERS:
        try:
            results[f"{fn.__module__}.{fn.__name__}"] = fn(cutoff)
        except Exception:
            logger.exception("resender %s failed", fn.__name__)
    return results
