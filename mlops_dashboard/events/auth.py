"""Socket authentication for programs and the Origin check for browsers."""

from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings


@database_sync_to_async
def _token_for_key(key: str):
    """The live ApiToken of `key` (its last use noted), or None: the REST API's own check."""
    from rest_framework.exceptions import AuthenticationFailed

    from mlops_dashboard.tokens import api_token_check

    try:
        return api_token_check(key)
    except AuthenticationFailed:
        return None


class TokenAuthMiddleware:
    """`Authorization: Token <key>` on the handshake authenticates a program (as the REST API does).
    The scope gets `api_token_id`: the ApiToken row the socket stands on."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                kind, _, key = value.decode("latin1").partition(" ")
                if kind.lower() == "token" and key.strip():
                    token = await _token_for_key(key.strip())
                    if token is not None:
                        scope = dict(scope, user=token.user, api_token_id=token.pk)
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
