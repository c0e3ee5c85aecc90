"""The stock Channels path, for comparison in `bench/event_latency.py`.

A plain `AsyncJsonWebsocketConsumer` as the Channels tutorial writes it: join a group on connect,
and relay each group message with `send_json` (Channels' default `dispatch`, so every message also
pays `aclose_old_connections`). The layer is channels_redis' default `RedisChannelLayer`
(`bench/stock_settings.py`). Sockets authenticate with the same `Authorization: Token` header as
ours, so the same benchmark client drives both.

    DJANGO_SETTINGS_MODULE=bench.stock_settings uvicorn bench.stock_asgi:application
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.stock_settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from mlops_dashboard.events.auth import TokenAuthMiddleware  # noqa: E402

GROUP = "dashboard"

if settings.CHANNEL_LAYERS["default"]["BACKEND"] != "channels_redis.core.RedisChannelLayer":
    raise RuntimeError("run the stock app with DJANGO_SETTINGS_MODULE=bench.stock_settings")


class StockRelayConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def event_forward(self, message):
        await self.send_json(message["event"])


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(
            TokenAuthMiddleware(URLRouter([path("ws/", StockRelayConsumer.as_asgi())]))
        ),
    }
)
