"""Socket authentication for programs and the Origin check for browsers."""

from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser


@database_sync_to_async
def _user_for_token(key: str):
    from rest_framework.authtoken.models import Token

    try:
        return Token.objects.select_related("user").get(key=key).user
    except Token.DoesNotExist:
        return AnonymousUser()


class TokenAuthMiddleware:
    """`Authorization: Token <key>` on the handshake authenticates a program (as the REST API does)."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                kind, _, key = value.decode("latin1").partition(" ")
                if kind.lower() == "token" and key.strip():
                    user = await _user_for_token(key.strip())
                    if user.is_authenticated and user.is_active:
                        scope = dict(scope, user=user)
                break
        return await self.inner(scope, receive, send)


class BrowserOriginValidator(OriginValidator):
    """Refuse a handshake whose Origin is not one of ALLOWED_HOSTS.

    Browsers always send Origin on a WebSocket handshake, so cross-site hijacking always carries a
    foreign one; a handshake without Origin comes from a program, which still has to authenticate.
    """

    def valid_origin(self, parsed_origin):
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


def origin_validator(app):
    return BrowserOriginValidator(app, settings.ALLOWED_HOSTS)
