"""The WebSocket endpoint: relays catalog events to browsers and programs.

On connect: authenticate, join the topics its user may read (`dashboard`, `user.<id>`, the user's
projects, `staff` for staff: events/topics.py), replay the log after the client's `last_event_id`,
then relay live events. When the user's memberships change, the socket is told on its account group
(`account.projects`) and joins or leaves project topics within moments. Object topics are joined on
the client's `subscribe`, each checked with the view permission on its object, or named on connect
(`?topics=dataset.3,telemetry.7`, checked alike) so that the replay after `last_event_id` covers them.

Every event carries a global id and arrives in id order, so dropping any id at or below the last one
sent removes both replay/live overlaps and the duplicates of an event addressed to several topics
this socket has joined.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from .. import runtime
from . import bus, sockets
from . import topics as topic_rules
from .catalog import Error, Pong
from .fastpath import FrameWriter, server_send, text_frame
from .layer import RELAY

# Close code for a token whose scope does not cover sockets (a `predict` or `telemetry` token).
SCOPE_CLOSE_CODE = 4403
# When the first live event arrives, or this long after connecting, re-read the log once: a
# SUBSCRIBE travels on another Redis connection than the replay read and could land after it.
CATCHUP_DELAY = 1.0
# Close code for a socket that fell too far behind (1013: try again later); the client reconnects
# and replays from its last id.
SLOW_CLOSE_CODE = 1013
# Replays and catch-ups read the log this many events at a time.
REPLAY_PAGE = 2000
# Close code for a socket that keeps sending past its message rate (1008: policy violation).
RATE_CLOSE_CODE = 1008

logger = logging.getLogger(__name__)


def _query_topics(query: dict) -> tuple[list[str], list[str]]:
    """The object topics of the connect URL's `topics` (comma-separated, as the events API takes
    them), at most WS_MAX_SUBSCRIPTIONS; and the names that are not object topics."""
    raw = (query.get("topics") or [""])[0]
    names = list(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    wanted = [t for t in names if topic_rules.object_topic(t) is not None]
    unknown = [t[:60] for t in names if topic_rules.object_topic(t) is None]
    return wanted[:settings.WS_MAX_SUBSCRIPTIONS], unknown[:5]


class EventsConsumer(AsyncWebsocketConsumer):
    user_id: int | None = None
    counted = False  # this socket is in the process's open-connection count (monitoring)
    fell_behind = False  # closed by the channel layer's backlog limit (see events/layer.py)
    catchup_pending = False
    catchup_task: asyncio.Task | None = None
    _writer: FrameWriter | None = None
    _holding = 0  # messages taken by a pump and not yet handled
    cleaned_up = False
    leased = False  # counted against its user's socket limit (events/sockets.py)
    account_filter: tuple[str | None, str | None] = (None, None)  # (session ref, token ref) it used
    view: topic_rules.View | None = None  # what the user may read (re-read when memberships change)

    async def __call__(self, scope, receive, send):
        """Channels' `AsyncConsumer.__call__` with a cheaper message loop.

        Channels' loop (`await_many_dispatch`) creates a task and runs `asyncio.wait` for every
        message; under fan-out that (with the session wrapper's checks on every send) was over half
        of the server's CPU per delivered event. Here one long-lived task per source (the socket,
        the channel layer) awaits its next message, and a lock keeps handlers strictly one at a
        time, as before.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is None:
            return await super().__call__(scope, receive, send)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        self._relay_send = server_send(send)
        self._lock = lock = asyncio.Lock()
        pumps = [asyncio.ensure_future(self._pump(source, lock)) for source in (receive, self.channel_receive)]
        self._pumps = pumps
        handlers = getattr(self.channel_layer, "overflow_handlers", None)
        if handlers is not None:
            handlers[self.channel_name] = self._fell_behind
        relays = getattr(self.channel_layer, "relays", None)
        self._writer = FrameWriter.of(self._relay_send) if relays is not None else None
        if self._writer is not None:
            relays[self.channel_name] = self._relay_now
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled():
                    task.result()
        except StopConsumer:
            pass
        finally:
            # Every way out (a client's close, a reset, a handler that raised, the backlog limit,
            # a cancelled task) leaves the groups, gives back the counts and drops the channel.
            try:
                await self._clean_up()
            finally:
                if handlers is not None:
                    handlers.pop(self.channel_name, None)
                if self._writer is not None:
                    relays.pop(self.channel_name, None)
                for task in pumps:
                    task.cancel()
                for task in pumps:
                    try:
                        await task
                    except (asyncio.CancelledError, StopConsumer):
                        pass
                    except Exception as exc:  # noqa: BLE001 - the socket is gone either way
                        logger.debug("a pump ended with %r", exc)
                # channels_redis unsubscribes a channel only when a pending receive is cancelled; a
                # pump cancelled while handling a message (an event in flight) would leave it.
                delete_channel = getattr(self.channel_layer, "delete_channel", None)
                if delete_channel is not None:
                    try:
                        await delete_channel(self.channel_name)
                    except Exception as exc:  # noqa: BLE001 - Redis gone: it dropped the subscription too
                        logger.warning("could not drop channel %s: %r", self.channel_name, exc)
        if self.fell_behind:
            await self._close_behind()

    def _fell_behind(self):
        """Called by the channel layer when this socket is `max_backlog` events behind: it is not
        reading (or far too slowly). Stop relaying; `__call__` then closes it."""
        self.fell_behind = True
        for task in self._pumps:
            task.cancel()

    async def _close_behind(self):
        try:
            # A stalled peer never drains the transport: don't wait on it (the server drops the
            # connection when this returns).
            await asyncio.wait_for(
                self._relay_send({"type": "websocket.close", "code": SLOW_CLOSE_CODE, "reason": "too far behind"}),
                timeout=1.0,
            )
        except Exception:  # noqa: BLE001 - already gone or stalled: either way it is closed now
            pass

    async def _pump(self, source, lock: asyncio.Lock):
        while True:
            message = await source()
            # From here until it is handled, this message is in neither the queue nor the lock (it
            # may wait for the lock): the direct relay must not overtake it.
            self._holding += 1
            try:
                async with lock:
                    await self.dispatch(message)
            finally:
                self._holding -= 1

    async def dispatch(self, message):
        # The relay touches no database, so skip Channels' per-message hop to the sync thread
        # (aclose_old_connections), which was most of the server's CPU under fan-out.
        if message["type"] == RELAY:
            await self.event_forward(message)
        else:
            await super().dispatch(message)

    # --- connection -----------------------------------------------------------------------------

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()
            await self._error("unauthorized", "Log in (session cookie or 'Authorization: Token <key>').")
            await self.close(code=4401)
            return
        self.topics: set[str] = set()
        # Object topics the client follows, each with its object's project (None: a global object).
        self.granted: dict[str, int | None] = {}
        # Topics of the user's own view that the client unsubscribed from: not re-joined on a re-read.
        self.dropped: set[str] = set()
        refusal = topic_rules.token_scope_refusal(self.scope.get("api_token_scope"))
        if refusal is not None:
            await self.accept()
            await self._error("forbidden_scope", refusal)
            await self.close(code=SCOPE_CLOSE_CODE, reason="token scope")
            return
        if not await sockets.acquire(user.id, self.channel_name):
            limit = settings.WS_MAX_SOCKETS_PER_USER
            await self.accept()
            await self._error("too_many_sockets", f"At most {limit} open sockets per user: close one first.")
            await self.close(code=sockets.TOO_MANY_CODE, reason=f"at most {limit} sockets per user")
            raise StopConsumer
        self.leased = True
        self.user_id = user.id
        self.account_filter = self._credentials()
        self.tokens = float(settings.WS_MESSAGE_BURST)
        self.tokens_at = time.monotonic()
        self.over_rate = 0
        self.last_sent = 0
        # Where this socket's view of the log starts: its last_event_id, else the log's newest id
        # when it connected (a resync must not send a fresh socket the whole history).
        self.resume_from = 0
        self.catchup_pending = False
        self.catchup_task = None
        await self.channel_layer.group_add(sockets.account_group(user.id), self.channel_name)
        self.view = await database_sync_to_async(topic_rules.view_of)(user)
        if self.view.staff:
            # Told when a project is made or deleted (every staff socket follows every project).
            await self.channel_layer.group_add(sockets.STAFF_GROUP, self.channel_name)
        for topic in sorted(self.view.base_topics()):
            await self._join(topic)
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        # Object topics named on connect are joined before the replay, so it covers them too.
        wanted, unknown = _query_topics(query)
        granted = await database_sync_to_async(topic_rules.grant)(user, wanted) if wanted else {}
        for topic, project_id in granted.items():
            self.granted[topic] = project_id
            await self._join(topic)
        await self.accept()
        runtime.connection_opened()
        self.counted = True
        if unknown:
            await self._error("bad_topic", f"Not object topics, left out: {', '.join(unknown)[:200]}.")
        refused = [t for t in wanted if t not in granted]
        if refused:
            await self._error("forbidden_topic", f"No such objects that you may view, left out: {', '.join(refused)[:200]}.")

        raw = (query.get("last_event_id") or [None])[0]
        after = None
        if raw not in (None, ""):
            try:
                after = int(raw)
                if after < 0:
                    raise ValueError
            except ValueError:
                after = None
                await self._error("bad_message", "last_event_id must be a non-negative integer")
        if after is None:
            self.resume_from = await bus.alatest_id()
        else:
            self.resume_from = after
            await self._replay(after)

    def _credentials(self) -> tuple[str | None, str | None]:
        token_id = self.scope.get("api_token_id")
        if token_id is not None:
            return None, sockets.token_ref(token_id)
        session = self.scope.get("session")
        key = getattr(session, "session_key", None)
        return (sockets.session_ref(key) if key else None), None

    async def disconnect(self, code):
        await self._clean_up()

    async def _clean_up(self):
        """Idempotent; each step runs even when an earlier one fails (Redis gone)."""
        if self.cleaned_up:
            return
        self.cleaned_up = True
        if self.counted:
            self.counted = False
            runtime.connection_closed()
        if self.catchup_task is not None:
            self.catchup_task.cancel()
        groups = list(getattr(self, "topics", ()))
        if self.user_id is not None:
            groups.append(sockets.account_group(self.user_id))
        if self.view is not None and self.view.staff:
            groups.append(sockets.STAFF_GROUP)
        for group in groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception as exc:  # noqa: BLE001 - the next group and the lease still go
                logger.warning("could not leave %s: %r", group, exc)
        if self.leased:
            self.leased = False
            try:
                await sockets.release(self.channel_name)
            except Exception as exc:  # noqa: BLE001 - the lease lapses on its own
                logger.warning("could not release a socket lease: %r", exc)

    async def account_close(self, message):
        """The user's credentials changed (events/sockets.py): close if it concerns this socket."""
        session, token = self.account_filter
        if "session" in message and message["session"] != session:
            return
        if "token" in message and message["token"] != token:
            return
        await self._error("account_changed", f"Closed: {message.get('reason', 'credentials changed')}.")
        await self.close(code=int(message.get("code", sockets.REVOKED_CODE)), reason=message.get("reason", ""))
        raise StopConsumer

    async def account_projects(self, message):
        """The user's memberships (or the set of projects, for staff) changed: re-read what the
        user may read, join and leave topics to match, and drop object topics now out of sight."""
        if self.user_id is None or self.cleaned_up:
            return
        user = self.scope["user"]
        view = await database_sync_to_async(topic_rules.view_of)(user)
        before, self.view = self.view, view
        joined = False
        for topic in sorted(view.base_topics() - self.dropped - self.topics):
            await self._join(topic)
            joined = True
        for topic in sorted(self.topics):
            if topic in self.granted:
                project_id = self.granted[topic]
                if project_id is None or view.all_projects or project_id in view.project_ids:
                    continue
                del self.granted[topic]
            elif view.reads(topic):
                continue
            await self._leave(topic)
        if before is not None and before.staff != view.staff:
            change = self.channel_layer.group_add if view.staff else self.channel_layer.group_discard
            await change(sockets.STAFF_GROUP, self.channel_name)
        if joined:
            # The new groups' SUBSCRIBE and the next log read travel on different Redis connections:
            # read once more after a moment, so an event of a newly joined project is not missed.
            self._schedule_catchup()

    async def _join(self, topic: str):
        await self.channel_layer.group_add(topic, self.channel_name)
        self.topics.add(topic)

    async def _leave(self, topic: str):
        await self.channel_layer.group_discard(topic, self.channel_name)
        self.topics.discard(topic)

    async def _replay(self, after: int):
        await self._send_log_after(after, gap_message=f"Events after {after} are no longer in the log")
        self._schedule_catchup()

    async def _send_log_after(self, after: int, *, before: int | None = None, gap_message: str | None = None):
        """Send the logged events after `after` (and below `before`) for this socket's topics, a
        page at a time. With `gap_message`, a log that no longer has them is reported as
        `replay_gap` (the client reloads from the API); without, it is left to the caller."""
        while True:
            log = await bus.aread_after(after, limit=REPLAY_PAGE)
            if log.gap:
                if gap_message is not None:
                    self.last_sent = max(self.last_sent, log.latest_id)
                    await self._error("replay_gap", f"{gap_message}; reload state from the API.",
                                      latest_id=log.latest_id)
                return
            complete = len(log.events) < REPLAY_PAGE
            for event_id, topics, text in log.events:
                if before is not None and event_id >= before:
                    return
                if event_id > self.last_sent and self.topics.intersection(topics):
                    await self.send(text_data=text)
                    self.last_sent = event_id
            # Nothing for this socket up to here: later live events need not wait for these ids.
            high = log.latest_id if complete else log.events[-1][0]
            self.last_sent = max(self.last_sent, high if before is None else min(high, before - 1))
            if complete:
                return
            after = log.events[-1][0]

    def _schedule_catchup(self):
        # The SUBSCRIBE and the log read travel on different Redis connections: read once more.
        self.catchup_pending = True
        if self.catchup_task is not None:
            self.catchup_task.cancel()
        self.catchup_task = asyncio.create_task(self._delayed_catchup())

    async def _catchup(self, before: int | None = None):
        self.catchup_pending = False
        # Never before where this socket's view of the log starts (a fresh socket: its connect).
        await self._send_log_after(max(self.last_sent, self.resume_from), before=before)

    async def _delayed_catchup(self):
        await asyncio.sleep(CATCHUP_DELAY)
        # Through our own channel, so it is handled in turn with the live events, never between.
        await self.channel_layer.send(self.channel_name, {"type": "events.catchup"})

    async def events_catchup(self, message):
        if self.catchup_pending:
            await self._catchup()

    async def events_resync(self, message):
        """The layer's Redis subscription was lost and is back (events/layer.py): whatever was
        published meanwhile never reached this process, so read it from the log, or say
        `replay_gap` if Redis came back without it."""
        if self.user_id is None:
            return
        after = max(self.last_sent, self.resume_from)
        await self._send_log_after(after, gap_message=f"Events after {after} were lost while Redis was unavailable")
        self._schedule_catchup()

    # --- relay ----------------------------------------------------------------------------------

    def _relay_now(self, message) -> bool:
        """The channel layer's direct relay (events/layer.py), called only while nothing is queued
        for this socket. Delivers a live event here and now when this consumer is idle (no handler
        running: no replay, catch-up, connect or reply in progress) and the socket is writable;
        otherwise returns False and the event goes through the queue and `event_forward`.
        (`_holding` covers the lock too: a handler runs only while its pump holds its message.)
        Should it raise, the layer queues the event and drops this relay: `last_sent` moves only
        once the frame is written."""
        if message.get("type") != RELAY or self._holding or self.catchup_pending or self.fell_behind:
            return False
        if not self._writer.ready():
            return False
        event_id = message["id"]
        if event_id > self.last_sent:
            self._writer.write(text_frame(event_id, message["text"]))
            self.last_sent = event_id
        return True

    async def event_forward(self, message):
        event_id = message["id"]
        if event_id <= self.last_sent:
            return
        if self.catchup_pending and event_id > self.last_sent + 1:
            await self._catchup(before=event_id)
        self.last_sent = event_id
        await self._relay_send({"type": "websocket.send", "text": message["text"]})

    # --- client messages ------------------------------------------------------------------------

    async def websocket_receive(self, message):
        try:
            await super().websocket_receive(message)
        except (StopConsumer, asyncio.CancelledError, OSError):
            raise  # OSError: the socket is gone (uvicorn's ClientDisconnected); nothing to answer
        except Exception as exc:  # noqa: BLE001 - one bad message must not cost the socket
            logger.warning("a client message failed: %r", exc)
            await self._error("server_error", "The message could not be handled; the socket stays open.")

    def _within_rate(self) -> bool:
        """A token bucket: WS_MESSAGE_RATE a second, WS_MESSAGE_BURST at once."""
        now = time.monotonic()
        self.tokens = min(float(settings.WS_MESSAGE_BURST), self.tokens + (now - self.tokens_at) * settings.WS_MESSAGE_RATE)
        self.tokens_at = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.over_rate = 0
            return True
        self.over_rate += 1
        return False

    async def receive(self, text_data=None, bytes_data=None):
        if self.user_id is None:
            return
        if not self._within_rate():
            # The first message over the rate is told; one that keeps on past another burst is closed.
            if self.over_rate == 1:
                await self._error("rate_limited", f"At most {settings.WS_MESSAGE_RATE:g} messages a second "
                                                  f"(bursts of {settings.WS_MESSAGE_BURST}); slow down or be closed.")
            elif self.over_rate > settings.WS_MESSAGE_BURST:
                await self.close(code=RATE_CLOSE_CODE, reason="message rate exceeded")
                raise StopConsumer
            return
        if text_data is None:
            await self._error("bad_message", "Send JSON text frames, not binary.")
            return
        if len(text_data) > settings.WS_MAX_MESSAGE_BYTES or len(text_data.encode()) > settings.WS_MAX_MESSAGE_BYTES:
            await self._error("too_large", f"Messages are limited to {settings.WS_MAX_MESSAGE_BYTES} bytes.")
            return
        try:
            data = json.loads(text_data)
        except (ValueError, RecursionError):
            await self._error("bad_message", "The message is not valid JSON (or nests too deeply).")
            return
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            await self._error("bad_message", 'A message is a JSON object with a "type".')
            return
        kind = data["type"]
        if kind == "ping":
            await self._reply(Pong(ts=data.get("ts"), server_ts=round(time.time() * 1000, 3)))
            runtime.record_ws_rtt(data.get("rtt"), self.channel_name)  # its last measured round trip, if any
        elif kind in ("subscribe", "unsubscribe"):
            await self._change_topics(kind, data.get("topics"))
        else:
            await self._error("unknown_type", f"Unknown message type {kind[:40]!r}: use ping, subscribe or unsubscribe.")

    async def _change_topics(self, kind: str, topics):
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
            await self._error("bad_message", f'{kind} takes "topics": a non-empty list of strings.')
            return
        own, objects = [], []
        for topic in dict.fromkeys(topics):
            if topic.startswith("user.") and topic != f"user.{self.user_id}":
                await self._error("forbidden_topic", f"{topic[:60]} belongs to another user.")
                return
            if topic_rules.object_topic(topic) is not None:
                objects.append(topic)
            elif topic in (topic_rules.DASHBOARD, topic_rules.STAFF, f"user.{self.user_id}") or (
                topic.startswith("project.") and topic[len("project."):].isdigit()
            ):
                own.append(topic)
            else:
                await self._error("bad_topic", f"{topic[:60]!r} is not a topic (e.g. training_job.12).")
                return
        if kind == "unsubscribe":
            for topic in topics:
                if topic in self.topics:
                    await self._leave(topic)
                    self.granted.pop(topic, None)
                    if topic not in objects:
                        self.dropped.add(topic)
            return
        for topic in own:
            if not self.view.reads(topic):
                # A project the user is not a member of (or the staff topic of a non-staff user).
                await self._error("forbidden_topic", f"{topic[:60]} is not one of your topics.")
                return
        new = [t for t in objects if t not in self.granted]
        if len(self.granted) + len(new) > settings.WS_MAX_SUBSCRIPTIONS:
            await self._error("too_many_topics", f"At most {settings.WS_MAX_SUBSCRIPTIONS} object topics per socket.")
            return
        checked = {}
        for topic in new:
            allowed, project_id = await database_sync_to_async(topic_rules.may_subscribe)(self.scope["user"], topic)
            if not allowed:
                # Also for an object that does not exist: whether it does is not the client's to learn.
                await self._error("forbidden_topic", f"{topic[:60]}: no such object that you may view.")
                return
            checked[topic] = project_id
        for topic in own:
            self.dropped.discard(topic)
            if topic not in self.topics:
                await self._join(topic)
        for topic, project_id in checked.items():
            self.granted[topic] = project_id
            if topic not in self.topics:
                await self._join(topic)

    async def _reply(self, event):
        await self.send(text_data=bus.connection_event(event))

    async def _error(self, code: str, message: str, **extra):
        await self._reply(Error(code=code, message=message, **extra))
