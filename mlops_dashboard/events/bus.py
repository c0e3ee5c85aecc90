"""The event bus: sequence, log and fan-out of catalog events through Redis.

One Lua script does the three steps of a publish atomically inside Redis: take the next id, append
the event to the bounded log, and PUBLISH it to each topic's channel-layer group. Because Redis runs
the script as one step, the order of ids is the order in which every subscriber receives events,
across any number of publishing processes, and a reader of the log never sees id N+1 without N.

The published message is the layer's live-event message (events/layer.py: its wire format, its
group channels), so `EventsConsumer` receives it as a normal group message. The JSON text is built
once here and relayed verbatim to every socket.

Ids are seeded from the Redis clock (microseconds) when the sequence key is missing, so that they
keep rising even after Redis restarts empty; `floor` remembers the seed, below which the log knows
nothing. A read of the log seeds it too: the `latest_id` it reports (a `replay_gap`'s resume point)
never goes back below an id already sent, even when nothing was published since Redis came back.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from django.conf import settings
from django.db import transaction

from . import frames, layer
from .catalog import REGISTRY, Event, EventError, is_connection_event

logger = logging.getLogger(__name__)

# KEYS: the sequence, the log, the floor (`keys()`). A missing sequence (Redis lost its data) starts
# again from the Redis clock, above every id of the lost log, which is where the new log begins.
SEED_LUA = """
if not redis.call('GET', KEYS[1]) then
  local t = redis.call('TIME')
  local seed = string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('SET', KEYS[1], seed)
  redis.call('SET', KEYS[3], seed)
end
"""

# KEYS: sequence, log, floor, log bytes. ARGV: log size, log bytes, the JSON's head and tail (around
# the id), then each topic and its group's channel.
# The log is trimmed from its oldest end to EVENT_LOG_SIZE events and EVENT_LOG_MAX_BYTES bytes of
# text, counted in KEYS[4] as events come and go, so a publish never walks the log (each event is
# popped once; the log is only summed when its byte count is missing: an upgrade, or lost keys).
PUBLISH_LUA = SEED_LUA + """
if redis.call('EXISTS', KEYS[4]) == 0 then
  local total = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do total = total + #m end
  redis.call('SET', KEYS[4], total)
end
local id = redis.call('INCR', KEYS[1])
local sid = string.format('%d', id)
local text = ARGV[3] .. sid .. ARGV[4]
local topics, channels = {}, {}
for i = 5, #ARGV, 2 do
  topics[#topics + 1] = ARGV[i]
  channels[#channels + 1] = ARGV[i + 1]
end
local member = table.concat(topics, ' ') .. '\\t' .. text
redis.call('ZADD', KEYS[2], id, member)
local bytes = redis.call('INCRBY', KEYS[4], #member)
local size, max_bytes = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = redis.call('ZCARD', KEYS[2])
if n > size then
  local popped = redis.call('ZPOPMIN', KEYS[2], n - size)
  for i = 1, #popped, 2 do bytes = bytes - #popped[i] end
  n = size
end
while n > 1 and bytes > max_bytes do
  local popped = redis.call('ZPOPMIN', KEYS[2])
  bytes = bytes - #popped[1]
  n = n - 1
end
if n <= 1 then bytes = #member end  -- the count heals if the log was deleted behind our back
redis.call('SET', KEYS[4], bytes)
local msg = """ + layer.RELAY_MESSAGE_LUA + """
for _, channel in ipairs(channels) do
  redis.call('PUBLISH', channel, msg)
end
return sid
"""


def _prefix() -> str:
    return settings.REDIS_KEY_PREFIX


def keys() -> tuple[str, str, str]:
    """The sequence, the log and the floor (below which the log knows nothing)."""
    p = _prefix()
    return (f"{p}:events:seq", f"{p}:events:log", f"{p}:events:floor")


def log_bytes_key() -> str:
    """The size in bytes of the log's text, kept by the publish script."""
    return f"{_prefix()}:events:log_bytes"


def _script_keys() -> list[str]:
    return [*keys(), log_bytes_key()]


def layer_prefix() -> str:
    return settings.CHANNEL_LAYERS["default"]["CONFIG"].get("prefix", "asgi")


def _topics_and_channels(topics: list[str]) -> list[str]:
    prefix = layer_prefix()
    return [item for topic in topics for item in (topic, layer.group_channel(prefix, topic))]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_publishable(event) -> None:
    """`publish()` refuses anything that is not a registered, broadcastable catalog event."""
    if not isinstance(event, Event) or REGISTRY.get(event.type) is not type(event):
        raise EventError(f"{event!r} is not a registered catalog event")
    if is_connection_event(event.type):
        raise EventError(f"{event.type} is a connection event: send it to one socket, don't publish")


def encode(event: Event) -> tuple[str, str, list[str]]:
    """Split the wire JSON around its id, which only Redis knows: (head, tail, topics).

    The frame stays under WS_MAX_MESSAGE_BYTES: lists too long are shortened (events/frames.py)."""
    rest = frames.fit(event.type, {"timestamp": now_iso(), **event.payload()},
                      limit=settings.WS_MAX_MESSAGE_BYTES, strict=settings.EVENT_OVERSIZE_STRICT)
    head = '{"type":' + json.dumps(event.type) + ',"id":'
    return head, "," + rest[1:], event.topic_names()


def connection_event(event: Event) -> str:
    """Wire text for a connection event (pong, error): answers one socket, has no sequence id."""
    body = {"type": event.type, "id": None, "timestamp": now_iso(), **event.payload()}
    return json.dumps(body, separators=(",", ":"), default=str)


# --- Redis clients ---------------------------------------------------------------------------------

_sync_client: redis.Redis | None = None
_sync_script = None
_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def sync_client() -> redis.Redis:
    global _sync_client, _sync_script
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
        )
        _sync_script = _sync_client.register_script(PUBLISH_LUA)
    return _sync_client


def async_client() -> aredis.Redis:
    """One client per event loop (redis.asyncio connections belong to the loop that made them).

    A blocking pool: two thousand sockets connecting at once wait for a connection instead of
    failing with "Too many connections".
    """
    loop = asyncio.get_running_loop()
    entry = _async_clients.get(loop)
    if entry is None:
        pool = aredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=50, timeout=20, socket_connect_timeout=2,
            # A pooled connection that a restarted Redis closed fails its next command: reconnect and
            # send it once more, rather than fail a socket's resync read after every restart.
            retry=Retry(NoBackoff(), 1),
        )
        client = aredis.Redis(connection_pool=pool)
        entry = (client, client.register_script(PUBLISH_LUA))
        _async_clients[loop] = entry
    return entry[0]


def _async_script():
    async_client()
    return _async_clients[asyncio.get_running_loop()][1]


def reset_clients():
    """Forget clients and held events (a forked child must not share its parent's sockets)."""
    global _sync_client, _sync_script, _throttle
    _sync_client = None
    _sync_script = None
    _async_clients.clear()
    _throttle = None


os.register_at_fork(after_in_child=reset_clients)


# --- publishing --------------------------------------------------------------------------------------


def _script_args(head: str, tail: str, topics: list[str]) -> list:
    return [settings.EVENT_LOG_SIZE, settings.EVENT_LOG_MAX_BYTES, head, tail, *_topics_and_channels(topics)]


# Redis unreachable (restarting, failing over): worth retrying. Anything else is not.
RETRYABLE = (redis.ConnectionError, redis.TimeoutError)


def _retry_delays():
    """Sleeps between publish attempts while Redis is unreachable: 0.1 s doubling to 1 s, for at
    most EVENT_PUBLISH_RETRY_SECONDS in all."""
    deadline = time.monotonic() + settings.EVENT_PUBLISH_RETRY_SECONDS
    delay = 0.1
    while (left := deadline - time.monotonic()) > 0:
        yield min(delay, left)
        delay = min(delay * 2, 1.0)


def _dropped(event: Event, exc: Exception) -> None:
    # The database stays the truth, which the API and a reloaded page show. A task must not die here.
    logger.warning("event %s not published: %s", event.type, exc)


def _send(event: Event) -> int | None:
    head, tail, topics = encode(event)
    delays = _retry_delays()
    while True:
        try:
            sync_client()
            return int(_sync_script(keys=_script_keys(), args=_script_args(head, tail, topics)))
        except RETRYABLE as exc:
            delay = next(delays, None)
            if delay is None:
                _dropped(event, exc)
                return None
            time.sleep(delay)
        except redis.RedisError as exc:
            _dropped(event, exc)
            return None


def publish(event: Event) -> int | None:
    """Publish a catalog event; returns its id, or None when coalesced away or Redis is down."""
    check_publishable(event)
    if event.coalesce_key() is None and not event.closes:
        return _send(event)
    return throttle().offer(event)


async def apublish(event: Event) -> int | None:
    """`publish` for async code (consumers, async views)."""
    check_publishable(event)
    if event.coalesce_key() is not None or event.closes:
        return await asyncio.to_thread(publish, event)
    head, tail, topics = encode(event)
    delays = _retry_delays()
    while True:
        try:
            return int(await _async_script()(keys=_script_keys(), args=_script_args(head, tail, topics)))
        except RETRYABLE as exc:
            delay = next(delays, None)
            if delay is None:
                _dropped(event, exc)
                return None
            await asyncio.sleep(delay)
        except redis.RedisError as exc:
            _dropped(event, exc)
            return None


def publish_on_commit(event: Event) -> None:
    """Publish after the current transaction commits, so a client that reacts by reading the API
    sees the new state (immediately when no transaction is open)."""
    transaction.on_commit(lambda: publish(event), robust=True)


# --- coalescing progress ---------------------------------------------------------------------------


class Throttle:
    """At most one progress event per job per interval; always the first and the latest.

    A held event is sent by a timer thread when its turn comes, or just before the event that
    closes its job (completed/failed), so the last progress a client sees is the true last one.

    `lock` guards only the bookkeeping: a send (which may retry for EVENT_PUBLISH_RETRY_SECONDS
    while Redis is away) happens outside it, so one job's stuck publish never holds up another
    job's. The events of one job still leave in order: each send first takes its turn in that job's
    queue (`turns`), and waits (releasing the lock) while an earlier send of the same job is out.
    """

    def __init__(self, interval: float):
        self.interval = interval
        self.lock = threading.Condition()
        self.last_sent: dict[tuple, float] = {}
        self.pending: dict[tuple, Event] = {}
        self.turns: dict[tuple, collections.deque] = {}
        self.thread: threading.Thread | None = None

    def offer(self, event: Event) -> int | None:
        with self.lock:
            sends, job_keys = [], []
            for closed in event.closes:
                closed_key = (closed, getattr(event, REGISTRY[closed].coalesce_by))
                held = self.pending.pop(closed_key, None)
                self.last_sent.pop(closed_key, None)
                job_keys.append(closed_key)
                if held is not None:
                    sends.append(held)
            key = event.coalesce_key()
            if key is not None:
                now = time.monotonic()
                last = self.last_sent.get(key)
                if last is not None and now - last < self.interval:
                    self.pending[key] = event
                    self._ensure_thread()
                    self.lock.notify_all()
                    return None
                self.pending.pop(key, None)
                self.last_sent[key] = now
                self._prune(now)
                job_keys.append(key)
            sends.append(event)
            return self._send_in_turn(job_keys, sends)[-1]

    def flush(self) -> None:
        """Send every held event now (a task calls this before it returns)."""
        with self.lock:
            for key, event in list(self.pending.items()):
                if self.pending.get(key) is not event:
                    continue  # sent by the timer while this thread waited its turn
                del self.pending[key]
                self.last_sent[key] = time.monotonic()
                self._send_in_turn([key], [event])

    def _send_in_turn(self, job_keys: list[tuple], events: list[Event]) -> list[int | None]:
        """Send `events` in order once every earlier send of these jobs is done; called, and
        returns, with the lock held, but releases it while waiting and while sending."""
        turn = object()
        for key in job_keys:
            self.turns.setdefault(key, collections.deque()).append(turn)
        while any(self.turns[key][0] is not turn for key in job_keys):
            self.lock.wait()
        self.lock.release()
        try:
            return [_send(event) for event in events]
        finally:
            self.lock.acquire()
            for key in job_keys:
                queue = self.turns[key]
                queue.popleft()
                if not queue:
                    del self.turns[key]
            self.lock.notify_all()

    def _prune(self, now: float) -> None:
        if len(self.last_sent) > 1000:
            for key, at in list(self.last_sent.items()):
                if now - at > 60 and key not in self.pending:
                    del self.last_sent[key]

    def _ensure_thread(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="event-throttle", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        with self.lock:
            while True:
                if not self.pending:
                    self.lock.wait(timeout=5)
                    continue
                wake = None
                for key, event in list(self.pending.items()):
                    if self.pending.get(key) is not event:
                        continue  # replaced or sent while this thread was sending another
                    now = time.monotonic()
                    due = self.last_sent.get(key, 0) + self.interval
                    if due <= now:
                        del self.pending[key]
                        self.last_sent[key] = now
                        self._send_in_turn([key], [event])
                    else:
                        wake = due if wake is None else min(wake, due)
                if wake is not None:
                    self.lock.wait(timeout=max(0.0, wake - time.monotonic()))


_throttle: Throttle | None = None
_throttle_lock = threading.Lock()


def throttle() -> Throttle:
    global _throttle
    with _throttle_lock:
        if _throttle is None:
            _throttle = Throttle(settings.EVENT_PROGRESS_INTERVAL)
        return _throttle


# --- reading the log ---------------------------------------------------------------------------------


@dataclass
class LogSlice:
    events: list[tuple[int, list[str], str]]  # (id, topics, json text), oldest first
    latest_id: int  # the sequence when read (seeded from the clock if Redis had lost it)
    gap: bool  # events after `after` may have been lost (trimmed, or Redis lost its data)


def _slice(after: int, seq, floor, oldest, rows) -> LogSlice:
    latest = int(seq) if seq is not None else 0
    events = []
    for member, score in rows:
        topics, _, text = member.decode().partition("\t")
        events.append((int(score), topics.split(" ") if topics else [], text))
    if seq is None:
        gap = after > 0
    else:
        # after=0 means "from the beginning", which is the floor of the current sequence;
        # an id below the floor belongs to data Redis has lost.
        floor = int(floor or 0)
        first = int(oldest[0][1]) if oldest else latest + 1
        gap = after > latest or 0 < after < floor or max(after, floor) + 1 < first
    return LogSlice(events=events, latest_id=latest, gap=gap)


def _queue_reads(pipe, after: int, limit: int):
    seq_key, log_key, floor_key = keys()
    # EVAL, not a registered script: inside a pipeline redis-py would check for it first (a round trip).
    pipe.eval(SEED_LUA, 3, seq_key, log_key, floor_key)
    pipe.get(seq_key)
    pipe.get(floor_key)
    pipe.zrange(log_key, 0, 0, withscores=True)
    pipe.zrangebyscore(log_key, f"({after}", "+inf", start=0, num=limit, withscores=True)


def read_after(after: int, limit: int = 1000) -> LogSlice:
    pipe = sync_client().pipeline(transaction=True)
    _queue_reads(pipe, after, limit)
    return _slice(after, *pipe.execute()[1:])


async def aread_after(after: int, limit: int = 10_000) -> LogSlice:
    async with async_client().pipeline(transaction=True) as pipe:
        _queue_reads(pipe, after, limit)
        return _slice(after, *(await pipe.execute())[1:])


def latest_id() -> int:
    try:
        value = sync_client().get(keys()[0])
    except redis.RedisError:
        return 0
    return int(value) if value is not None else 0


async def alatest_id() -> int:
    try:
        value = await async_client().get(keys()[0])
    except redis.RedisError:
        return 0
    return int(value) if value is not None else 0
