"""The channel layer: channels_redis' pub/sub layer, plus what a relay of the event log needs.

The wire format of a live event is defined here, once: the bus publishes it from inside Redis, the
layer receives it and the consumer relays it.

1. A resync after the subscription connection comes back. redis-py re-subscribes on its own when
   Redis restarts or the connection drops, but whatever was published in between is silently gone
   for this process. So after each re-subscription the layer puts one `events.resync` message in
   every local consumer's queue; the consumer re-reads the event log after its last id (and says
   `replay_gap` when Redis lost the log), so a socket ends with every event once.
2. A direct relay. A consumer may register a relay callable for its channel: for each group
   message whose consumer's queue is empty, the layer offers the message to the relay first, in
   the receiving task; the relay returns True when it delivered it (see EventsConsumer), else the
   message is queued as usual. A queued or direct message is never overtaken: a consumer with
   anything queued gets the rest queued behind it. A relay that raises is dropped: that socket
   takes the queued path from then on, and the message that failed is queued.
3. A bounded backlog per consumer. The stock layer queues without limit, so a socket that stops
   reading (its send blocks on the transport's flow control) would grow the server's memory with
   every event. Past `max_backlog` queued messages the layer empties that consumer's queue and
   calls its overflow handler, which closes the socket; the client reconnects and replays from the
   log. Other sockets are never delayed: delivery to each queue is `put_nowait`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgpack
from django.core.exceptions import ImproperlyConfigured

from .fastpath import PubSubLayer

logger = logging.getLogger(__name__)

# --- the wire format -------------------------------------------------------------------------------
# A live event is the message {"type": RELAY, "id": <its id>, "text": <its JSON>}, packed with
# msgpack (channels_redis' default serializer), published on the Redis channel of each of its
# topics' groups. Only Redis knows the id, so the bus packs it there, with `RELAY_MESSAGE_LUA`.

RELAY = "event.forward"
RESYNC = {"type": "events.resync"}
# The Lua expression of the message, from the script's locals `id` (a number) and `text`.
RELAY_MESSAGE_LUA = "cmsgpack.pack({type = '" + RELAY + "', id = id, text = text})"


def relay_message(event_id: int, text: str) -> dict:
    return {"type": RELAY, "id": event_id, "text": text}


def group_channel(prefix: str, group: str) -> str:
    """The Redis channel of a group (channels_redis' naming, which the layer keeps)."""
    return f"{prefix}__group__{group}"



class EventsChannelLayer(PubSubLayer):
    """CHANNEL_LAYERS backend: `RedisPubSubChannelLayer` with resync, the direct relay and a
    bounded backlog."""

    def __init__(self, *args, max_backlog: int = 1000, prefix: str = "asgi", **kwargs):
        if kwargs.get("serializer_format", "msgpack") != "msgpack" or kwargs.get("symmetric_encryption_keys"):
            raise ImproperlyConfigured("the event bus publishes plain msgpack: no other serializer, no encryption")
        super().__init__(*args, prefix=prefix, **kwargs)
        self.prefix = prefix
        self.max_backlog = max_backlog
        # channel name -> called once when that channel's backlog overflows (set by the consumer)
        self.overflow_handlers: dict[str, Callable[[], None]] = {}
        # channel name -> relay(message) -> bool: delivered without queueing (set by the consumer)
        self.relays: dict[str, Callable[[dict], bool]] = {}
        self.relay_failures = 0

    serialize = staticmethod(msgpack.packb)
    deserialize = staticmethod(msgpack.unpackb)

    def group_channel(self, group: str) -> str:
        return group_channel(self.prefix, group)

    def enqueue(self, queues: dict, channel: str, data: bytes) -> None:
        queue = queues.get(channel)
        if queue is None:
            return
        if queue.qsize() < self.max_backlog:
            queue.put_nowait(data)
            return
        while not queue.empty():  # free the backlog now; the socket replays it from the log
            queue.get_nowait()
        handler = self.overflow_handlers.pop(channel, None)
        if handler is not None:
            logger.warning("closing a socket %d events behind (%s)", self.max_backlog, channel)
            handler()

    def fan_out(self, queues: dict, channels: set, data: bytes) -> None:
        # The fan-out's hot path. No copy of the group per event: neither a relay nor enqueue
        # changes the group (an overflowing consumer leaves it later, from its own task).
        relays = self.relays
        decoded = None
        for channel in channels:
            relay = relays.get(channel)
            if relay is not None:
                queue = queues.get(channel)
                if queue is not None and queue.empty():
                    if decoded is None:
                        decoded = self.deserialize(data)
                    try:
                        if relay(decoded):
                            continue
                    except Exception:  # noqa: BLE001 - one socket's relay must not stop the others'
                        self._relay_failed(channel)
            self.enqueue(queues, channel, data)

    def _relay_failed(self, channel: str) -> None:
        self.relays.pop(channel, None)
        self.relay_failures += 1
        if self.relay_failures == 1:
            logger.warning("direct relay to %s failed; that socket (and any other whose relay fails) takes "
                           "the queued path", channel, exc_info=True)

    def resync(self, queues: dict) -> None:
        data = self.serialize(RESYNC)
        for channel in list(queues):
            self.enqueue(queues, channel, data)
