"""The fast path, fenced: the one module that uses uvicorn's, websockets', Channels' and
channels_redis' internals. Everything else in the events package uses their public APIs and this
module's.

1. The direct relay's writer. The ASGI path costs every socket a task wake-up, a UTF-8 encode and
   a frame build per event: about 25 us, so 12 ms of one core for an event to 500 sockets, which
   kept a busy server's loop behind under bursts. The frame of an event is the same bytes for every
   socket (server frames are unmasked; per-message deflate is off in `make run`), so it is built
   once per event (`text_frame`) and each socket costs one `transport.write` (`FrameWriter`).
2. The channel layer's receiver. channels_redis' pub/sub layer queues every message it receives;
   `PubSubLayer` hands each one to its subclass (events/layer.py) instead, which offers live events
   to the direct relay, bounds the backlog and resyncs after the subscription comes back.

What both need is checked once, at start-up (`enabled()`, called by asgi.py): if an upgraded
dependency lacks any of it, one warning is logged and every socket takes the queued (ASGI) path.
A relay that raises later costs only its own socket the fast path (events/layer.py, `fan_out`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from channels.sessions import InstanceSessionWrapper
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close, decode_hosts
from redis.asyncio.client import PubSub

logger = logging.getLogger(__name__)

# --- the start-up check --------------------------------------------------------------------------

# What the writer reads on uvicorn's protocol and on its websockets connection (`conn`).
PROTOCOL_NEEDS = ("conn", "transport", "writable", "close_sent")
CONNECTION_NEEDS = ("state", "expect_continuation_frame", "extensions")
# What the receiver overrides (methods of the class) or uses (names the function's code sets or reads).
LAYER_NEEDS = (
    (RedisPubSubChannelLayer, ("_get_layer",)),
    (RedisPubSubChannelLayer.__init__, ("_layers", "_args", "_kwargs")),
    (RedisPubSubLoopLayer, ("_get_group_channel_name", "_get_shard")),
    (RedisPubSubLoopLayer.__init__, ("channels", "groups", "channel_layer")),
    (RedisSingleShardConnection, ("_receive_message", "_ensure_redis")),
    (RedisSingleShardConnection.__init__, ("host", "channel_layer", "_redis", "_pubsub")),
    (PubSub, ("on_connect",)),
    (InstanceSessionWrapper.__init__, ("real_send",)),
)

_SansIOProtocol = None  # uvicorn's websockets-sansio protocol class, once the check passed
_Frame = _TEXT = _OPEN = None


@functools.cache
def enabled() -> bool:
    """True when the direct relay can be used in this process; else logs why, once."""
    global _SansIOProtocol, _Frame, _TEXT, _OPEN
    try:
        protocol_class, frame, text, open_state = _probe()
    except Exception as exc:  # noqa: BLE001 - whatever changed, the queued path still works
        logger.warning("direct relay off, every socket takes the queued path (a dependency changed?): %s", exc)
        return False
    _SansIOProtocol, _Frame, _TEXT, _OPEN = protocol_class, frame, text, open_state
    return True


def _probe():
    """Build a real uvicorn websockets-sansio protocol (never connected) and check every attribute
    the writer uses, and that websockets still serializes an unmasked text frame as RFC 6455 says."""
    import uvicorn
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from uvicorn.server import ServerState
    from websockets.frames import Frame, Opcode
    from websockets.protocol import State

    for owner, names in LAYER_NEEDS:
        _require(owner, names)

    async def app(scope, receive, send):  # pragma: no cover - never called
        pass

    config = uvicorn.Config(app, log_config=None, lifespan="off", ws="websockets-sansio", ws_per_message_deflate=False)
    loop = asyncio.new_event_loop()
    try:
        protocol = WebSocketsSansIOProtocol(config, ServerState(), {}, _loop=loop)
    finally:
        loop.close()
    _require(protocol, PROTOCOL_NEEDS)
    _require(protocol.conn, CONNECTION_NEEDS)
    if Frame(Opcode.TEXT, b"ok").serialize(mask=False) != b"\x81\x02ok":
        raise ValueError("websockets serializes a text frame differently")
    return WebSocketsSansIOProtocol, Frame, Opcode.TEXT, State.OPEN


def _require(owner, names) -> None:
    """`owner` (a class, an instance, or a function: the names its code uses) has every name."""
    code = getattr(owner, "__code__", None)
    have = code.co_names if code is not None else dir(owner)
    missing = [name for name in names if name not in have]
    if missing:
        label = getattr(owner, "__qualname__", None) or type(owner).__qualname__
        raise AttributeError(f"{label} has no {', '.join(missing)}")


# --- the direct relay's writer ---------------------------------------------------------------------


class FrameWriter:
    """Writes ready-made frames straight to one connection's transport.

    Only for uvicorn's websockets-sansio protocol without extensions, once `enabled()`; anything
    else (another server or protocol, deflate on) keeps the ASGI path, as does a socket that is not
    plainly open and writable at that moment (flow control paused, closing): its events queue and
    its consumer sends them, so the backlog limit still applies to a socket that stops reading.
    """

    __slots__ = ("protocol", "conn", "transport")

    def __init__(self, protocol):
        self.protocol = protocol
        self.conn = protocol.conn
        self.transport = protocol.transport

    @classmethod
    def of(cls, send) -> FrameWriter | None:
        """The writer for the connection behind the server's `send`, or None (the ASGI path)."""
        protocol = getattr(send, "__self__", None)
        if not enabled() or type(protocol) is not _SansIOProtocol:
            return None
        if protocol.conn.extensions != [] or protocol.transport is None:
            return None
        return cls(protocol)

    def ready(self) -> bool:
        protocol = self.protocol
        return (protocol.writable.is_set() and not protocol.close_sent and self.conn.state is _OPEN
                and not self.conn.expect_continuation_frame and not self.transport.is_closing())

    def write(self, frame: bytes) -> None:
        self.transport.write(frame)


_last_frame: tuple[int, bytes] = (0, b"")


def text_frame(event_id: int, text: str) -> bytes:
    """The event's text frame, built once for all the sockets of this process (the layer offers an
    event to every local consumer in turn, so one cached frame serves the whole fan-out)."""
    global _last_frame
    if _last_frame[0] != event_id:
        _last_frame = (event_id, _Frame(_TEXT, text.encode()).serialize(mask=False))
    return _last_frame[1]


def server_send(send):
    """The server's own send, under Channels' session wrapper (which only acts on HTTP responses
    and the handshake): relayed frames skip its per-message session checks."""
    owner = getattr(send, "__self__", None)
    if isinstance(owner, InstanceSessionWrapper):
        return owner.real_send
    return send


# --- the channel layer's receiver ------------------------------------------------------------------


class PubSubLayer(RedisPubSubChannelLayer):
    """channels_redis' pub/sub layer whose received messages go to the subclass's hooks, given the
    process's queues (channel name -> asyncio.Queue of serialized messages):

    - `enqueue(queues, channel, data)`: a message for one channel;
    - `fan_out(queues, channels, data)`: a message for a group, whose members are `channels` (a set
      the hook must not change);
    - `resync(queues)`: the subscription connection came back after a loss;
    - `group_channel(group)`: the Redis channel a group's messages are published on.
    """

    enqueue: Callable
    fan_out: Callable
    resync: Callable
    group_channel: Callable

    async def delete_channel(self, channel: str) -> None:
        """Drop a consumer's channel and its Redis subscription, if still there (idempotent)."""
        layer = self._get_layer()
        if layer.channels.pop(channel, None) is not None:
            await layer._get_shard(channel).unsubscribe(channel)

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

    def _get_group_channel_name(self, group):
        return self.channel_layer.group_channel(group)


class _Shard(RedisSingleShardConnection):
    def _ensure_redis(self):
        if self._redis is None:
            super()._ensure_redis()
            self._pubsub = _ResubscribingPubSub(self._redis.connection_pool, on_resubscribe=self._resubscribed)

    def _resubscribed(self) -> None:
        logger.warning("channel layer subscription to %s restored; consumers resync from the log", self.host)
        loop_layer = self.channel_layer
        loop_layer.channel_layer.resync(loop_layer.channels)

    def _receive_message(self, message):
        if message is None:
            return
        name = message["channel"]
        if isinstance(name, bytes):
            name = name.decode()
        loop_layer = self.channel_layer
        if name in loop_layer.channels:
            loop_layer.channel_layer.enqueue(loop_layer.channels, name, message["data"])
        elif name in loop_layer.groups:
            loop_layer.channel_layer.fan_out(loop_layer.channels, loop_layer.groups[name], message["data"])


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
