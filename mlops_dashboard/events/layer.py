"""The channel layer: channels_redis' pub/sub layer, plus two things a relay of the event log needs.

1. A resync after the subscription connection comes back. redis-py re-subscribes on its own when
   Redis restarts or the connection drops, but whatever was published in between is silently gone
   for this process. So after each re-subscription the layer puts one `events.resync` message in
   every local consumer's queue; the consumer re-reads the event log after its last id (and says
   `replay_gap` when Redis lost the log), so a socket ends with every event once.
2. A direct relay. A consumer may register a relay callable for its channel: for each group
   message whose consumer's queue is empty, the layer offers the message to the relay first, in
   the receiving task; the relay returns True when it delivered it (see EventsConsumer), else the
   message is queued as usual. A queued or direct message is never overtaken: a consumer with
   anything queued gets the rest queued behind it.
3. A bounded backlog per consumer. The stock layer queues without limit, so a socket that stops
   reading (its send blocks on the transport's flow control) would grow the server's memory with
   every event. Past `max_backlog` queued messages the layer empties that consumer's queue and
   calls its overflow handler, which closes the socket; the client reconnects and replays from the
   log. Other sockets are never delayed: delivery to each queue is `put_nowait`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close, decode_hosts
from redis.asyncio.client import PubSub

logger = logging.getLogger(__name__)

RESYNC = {"type": "events.resync"}


class EventsChannelLayer(RedisPubSubChannelLayer):
    """CHANNEL_LAYERS backend: `RedisPubSubChannelLayer` with resync and a bounded backlog."""

    def __init__(self, *args, max_backlog: int = 1000, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_backlog = max_backlog
        # channel name -> called once when that channel's backlog overflows (set by the consumer)
        self.overflow_handlers: dict[str, Callable[[], None]] = {}
        # channel name -> relay(message) -> bool: delivered without queueing (set by the consumer)
        self.relays: dict[str, Callable[[dict], bool]] = {}

    def _get_layer(self):
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, hosts=None, **kwargs):
        super().__init__(hosts=hosts, **kwargs)
        self._shards = [_Shard(host, self) for host in decode_hosts(hosts)]

    def enqueue(self, channel: str, data: bytes) -> None:
        queue = self.channels.get(channel)
        if queue is None:
            return
        top = self.channel_layer
        if queue.qsize() < top.max_backlog:
            queue.put_nowait(data)
            return
        while not queue.empty():  # free the backlog now; the socket replays it from the log
            queue.get_nowait()
        handler = top.overflow_handlers.pop(channel, None)
        if handler is not None:
            logger.warning("closing a socket %d events behind (%s)", top.max_backlog, channel)
            handler()

    def resync_all(self) -> None:
        data = self.channel_layer.serialize(RESYNC)
        for channel in list(self.channels):
            self.enqueue(channel, data)


class _Shard(RedisSingleShardConnection):
    def _ensure_redis(self):
        if self._redis is None:
            super()._ensure_redis()
            self._pubsub = _ResubscribingPubSub(self._redis.connection_pool, on_resubscribe=self._resubscribed)

    def _resubscribed(self) -> None:
        logger.warning("channel layer subscription to %s restored; consumers resync from the log", self.host)
        self.channel_layer.resync_all()

    def _receive_message(self, message):
        if message is None:
            return
        name = message["channel"]
        if isinstance(name, bytes):
            name = name.decode()
        layer = self.channel_layer
        if name in layer.channels:
            layer.enqueue(name, message["data"])
        elif name in layer.groups:
            # The fan-out's hot path. No copy of the group per event: neither a relay nor enqueue
            # changes the group (an overflowing consumer leaves it later, from its own task).
            data = message["data"]
            relays = layer.channel_layer.relays
            decoded = None
            for channel in layer.groups[name]:
                relay = relays.get(channel)
                if relay is not None:
                    queue = layer.channels.get(channel)
                    if queue is not None and queue.empty():
                        if decoded is None:
                            decoded = layer.channel_layer.deserialize(data)
                        if relay(decoded):
                            continue
                layer.enqueue(channel, data)


class _ResubscribingPubSub(PubSub):
    """redis-py calls `on_connect` on every (re)connection of the subscription connection. The
    first connection has no channels yet; any later one re-subscribes after a loss."""

    def __init__(self, *args, on_resubscribe: Callable[[], None], **kwargs):
        super().__init__(*args, **kwargs)
        self._on_resubscribe = on_resubscribe

    async def on_connect(self, connection):
        had_channels = bool(self.channels)
        await super().on_connect(connection)
        if had_channels:
            self._on_resubscribe()
