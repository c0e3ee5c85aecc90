"""What every row that records long work shares: states, claiming, heartbeats and the reaper.

A job row moves queued → running → succeeded | failed | cancelled and always reaches a terminal
state, even when its worker dies:
- `claim()` moves a row to running with one conditional UPDATE, so a task delivered twice (as a
  broker may after a visibility timeout) does its work once;
- `heartbeat()` touches the row from a background thread while the work runs;
- `reap_stale()` (run by beat) fails rows whose heartbeat stopped: the worker was killed.

Each app registers its kinds of job (`register(JobKind(...))`): their label, progress fields, step
text, failure alert rule, reaper and resender. Beat runs every reaper (`reap_all`) and resender
(`resend_lost`); monitoring reads jobs only through `kinds()` and hears of failures by `job_failed`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import close_old_connections, models
from django.dispatch import Signal
from django.utils import timezone
from django.utils.module_loading import import_string

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


def advance(model, pk, *, from_statuses, **fields) -> bool:
    """Write the fields a worker owns, only while the row is still in one of `from_statuses`: False
    when it was deleted or moved on meanwhile. Never a full save() from a worker: it would undo a
    user's edit made since the worker read the row, or INSERT a deleted row again."""
    return model.objects.filter(pk=pk, status__in=list(from_statuses)).update(**fields) == 1


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


# A row still queued this long, with no message left waiting in the broker, lost its message.
REENQUEUE_AFTER = timedelta(seconds=120)


@dataclass(frozen=True)
class JobKind:
    """One kind of long job, as its app registers it (in its AppConfig.ready()): the one place that
    knows every kind. Monitoring's failed-job and stalled-job rules and the dashboard's job rows read
    jobs only through these.

    The functions receive one row of `model` (read by `rows()`: its `select_related` joined, its
    `defer` columns left out):
    - label(job): "Training job #3 (churn)", in alert titles;
    - step_text(job): the last step it reported, in words;
    - row(job): the dashboard's job row ({"kind", "title", "url"}), None to leave it off the dashboard;
    - creator(job): the id of the user who started it (default: its `created_by_id`), or None.
    The reaper (no argument) fails its app's rows whose worker died, the resender (a cutoff time)
    sends again the queued rows whose message was lost; both are dotted paths, imported when beat
    runs them (registering stays cheap), and return how many rows they handled.
    """

    key: str  # the subject prefix of its alerts: "processing_job" -> "processing_job.12"
    model: type[models.Model]
    label: Callable[[Any], str]
    step_text: Callable[[Any], str]
    progress_fields: tuple[str, ...] = ("progress",)  # a change in any of them is progress; () = not watched
    failed_rule: str | None = None  # the alert rule kind of its failures ("training_failed")
    select_related: tuple[str, ...] = ()
    defer: tuple[str, ...] = ()
    row: Callable[[Any], dict] | None = None
    failure_metadata: Callable[[Any], dict] | None = None  # more facts for its failed alert
    # Who started the job (a user id, for "notify me when my jobs fail"); default: its `created_by_id`.
    creator: Callable[[Any], int | None] | None = None
    reaper: str = ""
    resender: str = ""

    def subject(self, job) -> str:
        return f"{self.key}.{job.pk}"

    def creator_id(self, job) -> int | None:
        return self.creator(job) if self.creator else getattr(job, "created_by_id", None)

    def rows(self, **filters):
        return self.model.objects.filter(**filters).select_related(*self.select_related).defer(*self.defer)


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Register (or, as a test's ready() may run twice, replace) a kind of job."""
    _KINDS[kind.key] = kind
    return kind


def kinds() -> list[JobKind]:
    return list(_KINDS.values())


# Sent (by the app that owns the job) when a registered job reached `failed`: job_failed.send(
# sender=JobKind, job=row). Monitoring turns it into an alert; no app imports monitoring for that.
job_failed = Signal()


def job_failed_send(key: str, job) -> None:
    kind = _KINDS[key]
    for receiver, result in job_failed.send_robust(sender=kind, job=job):
        if isinstance(result, Exception):  # a listener's failure never undoes the job's end
            logger.warning("job_failed listener %s failed for %s", receiver, kind.subject(job), exc_info=result)


def _run_each(attribute: str, *args) -> dict[str, int]:
    results = {}
    for kind in _KINDS.values():
        path = getattr(kind, attribute)
        if not path or path in results:
            continue
        try:
            results[path] = import_string(path)(*args)
        except Exception:
            logger.exception("%s %s failed", attribute, path)
    return results


def reap_all() -> dict[str, int]:
    """Run every registered reaper: {its dotted path: rows reaped}."""
    return _run_each("reaper")


def broker_queue_empty() -> bool:
    """True when no task message waits in the default queue. With prefetch 1 and late acks, a
    worker holds only the messages it runs, so a row queued for minutes while nothing waits has
    lost its message (Redis restarted without its data, a broker failover)."""
    from celery import current_app

    with current_app.connection_for_write() as conn:
        # Not passive: kombu's Redis transport checks a passive declare with an EXISTS it does not
        # prefix with `global_keyprefix`, so the queue always looked absent (empty). Declaring the
        # default queue creates nothing a worker would not.
        ok = conn.default_channel.queue_declare(queue=current_app.conf.task_default_queue)
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
    return _run_each("resender", timezone.now() - REENQUEUE_AFTER)
