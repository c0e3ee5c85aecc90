"""The WebSocket endpoint: relays catalog events to browsers and programs.

On connect: authenticate, join `dashboard` and `user.<id>`, replay the log after the client's
`last_event_id`, then relay live events. Every event carries a global id and arrives in id order,
so dropping any id at or below the last one sent removes both replay/live overlaps and the
duplicates of an event addressed to several topics this socket has joined.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import bus
from .catalog import Error, Pong

OBJECT_TOPIC = re.compile(
    r"^(pipeline|pipeline_run|training_job|dataset|processing_job|model)\.[1-9][0-9]{0,17}$"
)
RELAY = "event.forward"
# When the first live event arrives, or this long after connecting, re-read the log once: a
# SUBSCRIBE travels on another Redis connection than the replay read and could land after it.
CATCHUP_DELAY = 1.0


class EventsConsumer(AsyncWebsocketConsumer):
    user_id: int | None = None

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
        self.user_id = user.id
        self.topics: set[str] = set()
        self.last_sent = 0
        self.catchup_pending = False
        self.catchup_task = None
        for topic in ("dashboard", f"user.{user.id}"):
            await self._join(topic)
        await self.accept()

        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        raw = (query.get("last_event_id") or [None])[0]
        if raw not in (None, ""):
            try:
                after = int(raw)
                if after < 0:
                    raise ValueError
            except ValueError:
                await self._error("bad_message", "last_event_id must be a non-negative integer")
                return
            await self._replay(after)

    async def disconnect(self, code):
        if self.catchup_task is not None:
            self.catchup_task.cancel()
        for topic in list(getattr(self, "topics", ())):
            await self.channel_layer.group_discard(topic, self.channel_name)

    async def _join(self, topic: str):
        await self.channel_layer.group_add(topic, self.channel_name)
        self.topics.add(topic)

    async def _replay(self, after: int):
        log = await bus.aread_after(after)
        if log.gap:
            self.last_sent = log.latest_id
            await self._error(
                "replay_gap",
                f"Events after {after} are no longer in the log; reload state from the API.",
                latest_id=log.latest_id,
            )
        else:
            await self._send_from_log(log, after)
        self.catchup_pending = True
        self.catchup_task = asyncio.create_task(self._delayed_catchup())

    async def _send_from_log(self, log: bus.LogSlice, after: int, before: int | None = None):
        for event_id, topics, text in log.events:
            if before is not None and event_id >= before:
                break
            if event_id > self.last_sent and self.topics.intersection(topics):
                await self.send(text_data=text)
                self.last_sent = event_id
        high = log.latest_id if before is None else min(log.latest_id, before - 1)
        self.last_sent = max(self.last_sent, high)

    async def _catchup(self, before: int | None = None):
        self.catchup_pending = False
        after = self.last_sent
        log = await bus.aread_after(after)
        if not log.gap:
            await self._send_from_log(log, after, before)

    async def _delayed_catchup(self):
        await asyncio.sleep(CATCHUP_DELAY)
        # Through our own channel, so it is handled in turn with the live events, never between.
        await self.channel_layer.send(self.channel_name, {"type": "events.catchup"})

    async def events_catchup(self, message):
        if self.catchup_pending:
            await self._catchup()

    # --- relay ----------------------------------------------------------------------------------

    async def event_forward(self, message):
        event_id = message["id"]
        if event_id <= self.last_sent:
            return
        if self.catchup_pending and event_id > self.last_sent + 1:
            await self._catchup(before=event_id)
        self.last_sent = event_id
        await self.send(text_data=message["text"])

    # --- client messages ------------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if self.user_id is None:
            return
        if text_data is None:
            await self._error("bad_message", "Send JSON text frames, not binary.")
            return
        if len(text_data) > settings.WS_MAX_MESSAGE_BYTES or len(text_data.encode()) > settings.WS_MAX_MESSAGE_BYTES:
            await self._error("too_large", f"Messages are limited to {settings.WS_MAX_MESSAGE_BYTES} bytes.")
            return
        try:
            data = json.loads(text_data)
        except ValueError:
            await self._error("bad_message", "The message is not valid JSON.")
            return
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            await self._error("bad_message", 'A message is a JSON object with a "type".')
            return
        kind = data["type"]
        if kind == "ping":
            await self._reply(Pong(ts=data.get("ts"), server_ts=round(time.time() * 1000, 3)))
        elif kind in ("subscribe", "unsubscribe"):
            await self._change_topics(kind, data.get("topics"))
        else:
            await self._error("unknown_type", f"Unknown message type {kind[:40]!r}: use ping, subscribe or unsubscribe.")

    async def _change_topics(self, kind: str, topics):
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
            await self._error("bad_message", f'{kind} takes "topics": a non-empty list of strings.')
            return
        for topic in topics:
            if topic.startswith("user.") and topic != f"user.{self.user_id}":
                await self._error("forbidden_topic", f"{topic[:60]} belongs to another user.")
                return
            if topic not in ("dashboard", f"user.{self.user_id}") and not OBJECT_TOPIC.match(topic):
                await self._error("bad_topic", f"{topic[:60]!r} is not a topic (e.g. training_job.12).")
                return
        if kind == "subscribe":
            if len(self.topics | set(topics)) > settings.WS_MAX_SUBSCRIPTIONS:
                await self._error("too_many_topics", f"At most {settings.WS_MAX_SUBSCRIPTIONS} topics per socket.")
                return
            for topic in topics:
                if topic not in self.topics:
                    await self._join(topic)
        else:
            for topic in topics:
                if topic in self.topics:
                    await self.channel_layer.group_discard(topic, self.channel_name)
                    self.topics.discard(topic)

    async def _reply(self, event):
        await self.send(text_data=bus.connection_event(event))

    async def _error(self, code: str, message: str, **extra):
        await self._reply(Error(code=code, message=message, **extra))
