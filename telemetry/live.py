"""Live points: `telemetry_points` events, at most one per second per source per process.

Every process that ingests (an ASGI server's request threads, a Celery worker's tasks) has one
`LivePublisher`, fed by `signals.points_ingested` (connected in apps.py). It holds each source's
points in a window: the first points of a quiet source (none sent in the last second) go out at
once; points arriving within a second of the last event wait for the end of that second and go out
together, in time order. One background thread per process does every send, so an ingest request
never waits on Redis, and a source's events leave in order. The last window is never lost: the
thread sends it when it is due, and on shutdown (atexit, Celery's worker_process_shutdown and
worker_shutdown) whatever is held is sent at once.

An event is cut to fit a frame (WS_MAX_MESSAGE_BYTES) here, before the bus would shorten it: the
newest points are kept (a live chart's right edge stays current) and the older ones of the window
are dropped, with `truncated` true; the page refetches the range it shows from the series API.

Client contract (static/js pages):

- A source page follows one source: `{"type": "subscribe", "topics": ["telemetry.<source id>"]}`
  (the view permission on the source, else `error` `forbidden_topic`). Its socket URL may carry the
  same topics (`/ws/?last_event_id=N&topics=telemetry.12`) so that a reconnect replays the events
  it missed on them too; realtime.js does this for every topic it follows.
- The project's Telemetry page (every source) watches the project: `{"type": "subscribe",
  "topics": ["telemetry_project.<project id>"]}` (the view permission on the project). While at least
  one socket anywhere is subscribed to it, every source of the project sends its events to
  `project.<id>` too (`project_id` set), which the page's socket already follows; a publisher
  notices a new watcher (and the last one leaving) within WATCH_CACHE_SECONDS. Nothing is ever
  published on `telemetry_project.<id>` itself: the subscription is the watch (a Redis pub/sub
  subscription of the channel layer, counted with PUBSUB NUMSUB, so a closed or killed server's
  watch ends with its connection).
- On `telemetry_points` with `truncated` true, refetch the shown range from
  `GET /api/telemetry/series/`. Points are `[metric, epoch_ms, value]`, in time order.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from operator import itemgetter

import redis
from django.conf import settings

from mlops_dashboard.events import bus, catalog, layer

logger = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between two events of one source from one process
WATCH_TOPIC = "telemetry_project"  # `telemetry_project.<project id>`: subscribed by the Telemetry page
WATCH_CACHE_SECONDS = 1.0
# Room for what the bus adds around the body (type, id) and a margin, as events/frames.fit counts it.
_FRAME_ROOM = 40 + len(catalog.TelemetryPoints.type) + 64
# The shortest point is `["a",1700000000000,0]` (21 bytes and a comma): no frame holds more than this.
_MIN_POINT_BYTES = 22


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def watch_topic(project_id: int) -> str:
    return f"{WATCH_TOPIC}.{project_id}"


@dataclass
class Window:
    """One source's points waiting for their event: each batch as it came, (metric, [[epoch_ms,
    value], ...] in time order), made into the event's [metric, epoch_ms, value] points only when it
    is sent, at most once a second (a busy source gets dozens of batches a second)."""

    source_id: int
    source: str
    project_id: int
    batches: list = field(default_factory=list)  # (metric, points), in arrival order
    held: int = 0  # points in `batches`
    dropped: bool = False  # points were left out to bound memory (more than a frame holds)

    def add(self, metric: str, points, cap: int) -> None:
        if len(points) > cap:  # a batch is in time order: only its newest can make it into a frame
            points = points[-cap:]
            self.dropped = True
        self.batches.append((metric, points))
        self.held += len(points)
        if self.held > 2 * cap:  # the batches whose newest point is oldest go first, down to `cap`
            batches = self.batches
            drop = set()
            for i in sorted(range(len(batches)), key=lambda i: batches[i][1][-1][0]):
                if self.held - len(batches[i][1]) < cap:
                    break
                self.held -= len(batches[i][1])
                drop.add(i)
            self.batches = [b for i, b in enumerate(batches) if i not in drop]  # the rest in arrival order
            self.dropped = True

    @property
    def points(self) -> list:
        """The held points, [metric, epoch_ms, value], in time order."""
        return _in_time_order([[metric, ms, value] for metric, points in self.batches for ms, value in points])


_TIME = itemgetter(1)  # a point's epoch_ms


def _in_time_order(points: list) -> list:
    return sorted(points, key=_TIME)  # stable: one timestamp's points keep their arrival order


def fit_points(points: list, *, source_id: int, source: str, project_id: int | None,
               limit: int) -> tuple[list, bool]:
    """The newest of `points` (in time order) whose event stays under `limit` bytes once the bus
    adds its type, id and timestamp; and whether any were left out."""
    empty = {"timestamp": bus.now_iso(), "source_id": source_id, "source": source, "points": [],
             "truncated": True, "project_id": project_id}
    budget = limit - _FRAME_ROOM - len(_dumps(empty))
    names: dict[str, int] = {}  # a metric's size as JSON, with the brackets and commas of its point
    total, keep = 0, len(points)
    while keep > 0:
        metric, ms, value = points[keep - 1]
        if (name := names.get(metric)) is None:
            name = names[metric] = len(_dumps(metric)) + 5
        # json writes an int or a finite float as its repr; anything else is measured the slow way.
        number = len(repr(value)) if type(value) in (int, float) and math.isfinite(value) else len(_dumps(value))
        size = name + len(repr(ms)) + number
        if total + size > budget:
            break
        total += size
        keep -= 1
    return points[keep:], keep > 0


class LivePublisher:
    """Coalesces one process's ingested points into `telemetry_points` events (see the module)."""

    def __init__(self, interval: float = INTERVAL):
        self.interval = interval
        self.cond = threading.Condition()
        self.windows: dict[int, Window] = {}  # source id -> points not yet sent
        self.last_sent: dict[int, float] = {}  # source id -> monotonic time its last event was sent
        self.force = False  # send every window now (flush, shutdown)
        self.stopping = False
        self.sending = False
        self.thread: threading.Thread | None = None
        self.watch_cache: dict[int, tuple[float, bool]] = {}

    # --- the ingest side (any thread) ----------------------------------------------------------------

    def offer(self, project_id: int, batches) -> None:
        """Hold the points of an ingest (`points_ingested`'s batches) for their sources' events."""
        cap = settings.WS_MAX_MESSAGE_BYTES // _MIN_POINT_BYTES
        with self.cond:
            for batch in batches:
                if not batch.points:
                    continue
                window = self.windows.get(batch.source_id)
                if window is None:
                    window = self.windows[batch.source_id] = Window(batch.source_id, batch.source, project_id)
                window.add(batch.metric, batch.points, cap)
            self._ensure_thread()
            self.cond.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Send every held window now, whatever its time, and wait until they are sent. True when done."""
        deadline = time.monotonic() + timeout
        with self.cond:
            if not self.windows and not self.sending:
                return True
            if self.thread is None or not self.thread.is_alive():
                self._send_all_inline()
                return True
            self.force = True
            self.cond.notify_all()
            while self.windows or self.sending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(timeout=left)
            self.force = False
            return True

    def stop(self, timeout: float = 15.0) -> None:
        """Send what is held and end the thread (process shutdown)."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
            thread = self.thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=timeout)
        with self.cond:
            if not (self.thread is not None and self.thread.is_alive()):
                self._send_all_inline()

    # --- the sending thread --------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.stopping = False
            self.thread = threading.Thread(target=self._run, name="telemetry-live", daemon=True)
            self.thread.start()

    def _due(self, source_id: int) -> float:
        last = self.last_sent.get(source_id)
        return float("-inf") if last is None else last + self.interval

    def _run(self) -> None:
        with self.cond:
            while True:
                now = time.monotonic()
                urgent = self.force or self.stopping
                # The window due the longest first, so one busy source does not hold the others back.
                first = min(self.windows, key=self._due, default=None)
                if first is not None and (urgent or self._due(first) <= now):
                    self._send_unlocked(self.windows.pop(first))
                    continue
                if self.stopping:
                    self.cond.notify_all()
                    return
                self._prune(now)
                wake = min((self._due(sid) for sid in self.windows), default=None)
                self.cond.wait(timeout=None if wake is None else max(0.0, wake - now))
                if not self.windows and self.force:
                    self.force = False

    def _send_unlocked(self, window: Window) -> None:
        """Called with the lock held; sends with it released (Redis may be slow or away)."""
        self.sending = True
        self.cond.release()
        try:
            self._send(window)
        except Exception:  # noqa: BLE001 - a bad window must not end the thread
            logger.warning("telemetry_points for source %s not sent", window.source_id, exc_info=True)
        finally:
            self.cond.acquire()
            self.sending = False
            # Counted from when the send ended: two events of a source leave at least a second apart.
            self.last_sent[window.source_id] = time.monotonic()
            self.cond.notify_all()

    def _send_all_inline(self) -> None:
        """With the lock held and no thread: send every window from this thread."""
        while self.windows:
            _, window = self.windows.popitem()
            self._send_unlocked(window)

    def _send(self, window: Window) -> None:
        project_id = window.project_id if self.watched(window.project_id) else None
        points, cut = fit_points(window.points, source_id=window.source_id, source=window.source,
                                 project_id=project_id, limit=settings.WS_MAX_MESSAGE_BYTES)
        bus.publish(catalog.TelemetryPoints(source_id=window.source_id, source=window.source, points=points,
                                            truncated=cut or window.dropped, project_id=project_id))

    def _prune(self, now: float) -> None:
        if len(self.last_sent) > 2000:
            for sid, at in list(self.last_sent.items()):
                if now - at > 60 and sid not in self.windows:
                    del self.last_sent[sid]
        if len(self.watch_cache) > 1000:
            self.watch_cache.clear()

    # --- watching ------------------------------------------------------------------------------------

    def watched(self, project_id: int) -> bool:
        """Someone's socket follows `telemetry_project.<id>` (in any server process); cached a second."""
        now = time.monotonic()
        cached = self.watch_cache.get(project_id)
        if cached is not None and now - cached[0] < WATCH_CACHE_SECONDS:
            return cached[1]
        channel = layer.group_channel(bus.layer_prefix(), watch_topic(project_id))
        try:
            counts = bus.sync_client().pubsub_numsub(channel)
            watched = any(n > 0 for _, n in counts)
        except redis.RedisError as exc:
            logger.info("could not tell whether project %s's telemetry is watched: %s", project_id, exc)
            watched = False
        self.watch_cache[project_id] = (now, watched)
        return watched


_publisher: LivePublisher | None = None
_publisher_lock = threading.Lock()


def publisher() -> LivePublisher:
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            _publisher = LivePublisher()
        return _publisher


def on_points_ingested(sender=None, *, project_id: int, batches, **kwargs) -> None:
    """`points_ingested` receiver. Never raises: it runs on commit of an ingest that is already stored."""
    try:
        publisher().offer(project_id, batches)
    except Exception:  # noqa: BLE001 - live points are a nicety; the stored points are the truth
        logger.warning("live points of project %s not queued", project_id, exc_info=True)


def shutdown(**kwargs) -> None:
    """Send whatever is held (process exit, a Celery pool process or worker ending)."""
    if _publisher is not None:
        try:
            _publisher.stop()
        except Exception:  # noqa: BLE001 - exiting anyway
            logger.warning("telemetry live points not flushed at shutdown", exc_info=True)


def _after_fork() -> None:
    # The parent's windows are the parent's to send, and its thread did not come along.
    global _publisher, _publisher_lock
    _publisher = None
    _publisher_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(shutdown)


def connect() -> None:
    """Called by apps.py's ready()."""
    from celery.signals import worker_process_shutdown, worker_shutdown

    from . import signals

    signals.points_ingested.connect(on_points_ingested, dispatch_uid="telemetry.live")
    worker_process_shutdown.connect(shutdown, dispatch_uid="telemetry.live.process_shutdown", weak=False)
    worker_shutdown.connect(shutdown, dispatch_uid="telemetry.live.worker_shutdown", weak=False)
