"""ASGI entry point: HTTP goes to Django, `/ws/` to the events consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops_dashboard.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from datasets.upload import UploadProgressMiddleware, is_upload  # noqa: E402
from mlops_dashboard.events.auth import TokenAuthMiddleware, origin_validator  # noqa: E402
from mlops_dashboard.events.consumer import EventsConsumer  # noqa: E402
from mlops_dashboard.middleware import RequestSlots  # noqa: E402

websocket_urlpatterns = [path("ws/", EventsConsumer.as_asgi())]

# Uploads pass through the progress/size middleware, which needs to know the user.
upload_app = AuthMiddlewareStack(TokenAuthMiddleware(UploadProgressMiddleware(django_asgi_app)))


# Everything else waits for one of the process's request slots (not uploads: a slow upload must
# not hold one while its body streams in).
bounded_app = RequestSlots(django_asgi_app)


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
