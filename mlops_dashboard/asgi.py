"""ASGI entry point: HTTP goes to Django, `/ws/` to the events consumer."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops_dashboard.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from datasets.upload import UploadProgressMiddleware, is_upload  # noqa: E402
from mlops_dashboard.events.auth import TokenAuthMiddleware, origin_validator  # noqa: E402
from mlops_dashboard.events import fastpath  # noqa: E402
from mlops_dashboard.events.consumer import EventsConsumer  # noqa: E402
from mlops_dashboard.fast_routes import FastRoutes  # noqa: E402
from mlops_dashboard.middleware import RequestSlots  # noqa: E402
from mlops_dashboard.request_bodies import RequestBodies  # noqa: E402

websocket_urlpatterns = [path("ws/", EventsConsumer.as_asgi())]

# Uploads pass through the progress/limits middleware, which needs to know the user (it refuses
# an anonymous upload before reading its body).
upload_app = AuthMiddlewareStack(TokenAuthMiddleware(UploadProgressMiddleware(django_asgi_app)))


# Everything else has its body read (bounded in size and time) in the event loop, then waits for
# one of the process's request slots: a slow client never holds a slot (nor does an upload). The
# API's hot endpoints called with a token are served from their own threads (fast_routes.py).
bounded_app = RequestBodies(FastRoutes(RequestSlots(django_asgi_app)))


async def http_app(scope, receive, send):
    app = upload_app if is_upload(scope) else bounded_app
    return await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": origin_validator(
            AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)

# Garbage collection in a process that fans events out to many sockets. With CPython's default
# thresholds, the objects in flight during each fan-out keep getting promoted to the oldest
# generation, so a full collection (200-300 ms at 1,000 sockets on a 2-core machine, every few
# seconds under load) stalls every socket. A larger first threshold lets those objects die young,
# and freezing what exists when serving starts (Django, the app: ~190k objects) takes about a third
# off the full collections that remain. Closed sockets' cyclic garbage is still collected, later.
GC_THRESHOLDS = (10_000, 10, 10)

fastpath.enabled()  # checked at start-up: logs once if the direct relay is off
gc.collect()
gc.freeze()
gc.set_threshold(*GC_THRESHOLDS)
