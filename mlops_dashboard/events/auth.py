"""Socket authentication for programs and the Origin check for browsers."""

from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


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
    The scope gets `api_token_id` (the ApiToken row the socket stands on) and `api_token_scope`; a
    token limited to a project sets `user.token_project_id`, which narrows what the socket may read
    to that project (permissions.py, events/topics.py)."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                kind, _, key = value.decode("latin1").partition(" ")
                if kind.lower() == "token" and key.strip():
                    token = await _token_for_key(key.strip())
                    if token is not None:
                        # Its id rides along: revoking the token closes this socket (events/sockets.py).
                        user = token.user
                        user.token_project_id = token.project_id
                        scope = dict(scope, user=user, api_token_id=token.pk, api_token_scope=token.scope)
                break
        return await self.inner(scope, receive, send)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_parts(text: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin `scheme://host[:port]`, the port defaulted; None if it is
    not one (including the opaque origin "null")."""
    scheme, sep, netloc = text.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS or not netloc or "/" in netloc.rstrip("/"):
        return None
    netloc = netloc.rstrip("/")
    wildcard = "*." if netloc.startswith("*.") else ""  # CSRF_TRUSTED_ORIGINS' subdomains
    host, port = split_domain_port(netloc.removeprefix(wildcard))
    if not host:
        return None
    host = wildcard + host
    try:
        return scheme, host, int(port) if port else _DEFAULT_PORTS[scheme]
    except ValueError:
        return None


def _host_matches(host: str, pattern: str) -> bool:
    """`*.example.com` matches the subdomains (as CSRF_TRUSTED_ORIGINS does); else exactly."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


class SiteOriginValidator:
    """Refuse a browser's handshake from any origin but the site's own.

    An origin is scheme, host and port. The site's own are: the one the handshake reached, when its
    host is in ALLOWED_HOSTS (the Host header's host and port, and the scheme the connection came
    in on, https behind a proxy per SECURE_PROXY_SSL_HEADER: as Django's CSRF check); and, exactly,
    each of CSRF_TRUSTED_ORIGINS and ALLOWED_ORIGINS (DJANGO_ALLOWED_ORIGINS). So a site on port
    8000 refuses `http://localhost:9999`, `https://localhost:8000` and `http://evil.example.com`.

    Browsers always send Origin on a WebSocket handshake, so cross-site hijacking always carries a
    foreign one; a handshake without Origin comes from a program, which still has to authenticate.
    """

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if self.allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)

    @staticmethod
    def _headers(scope) -> dict[bytes, str]:
        return {name.lower(): value.decode("latin1") for name, value in scope.get("headers", ())}

    def allowed(self, scope) -> bool:
        headers = self._headers(scope)
        if b"origin" not in headers:
            return True
        origin = _origin_parts(headers[b"origin"])
        if origin is None or origin[1].startswith("*"):
            return False
        for trusted in [*settings.CSRF_TRUSTED_ORIGINS, *settings.ALLOWED_ORIGINS]:
            parts = _origin_parts(trusted)
            if parts and parts[0] == origin[0] and parts[2] == origin[2] and _host_matches(origin[1], parts[1]):
                return True
        return origin == self.site_origin(scope, headers)

    @staticmethod
    def site_origin(scope, headers) -> tuple[str, str, int] | None:
        """The origin this handshake reached, if its host is one of ALLOWED_HOSTS."""
        host, port = split_domain_port(headers.get(b"host", ""))
        if not host or not validate_host(host, settings.ALLOWED_HOSTS):
            return None
        secure = scope.get("scheme") == "wss"
        proxy_header = settings.SECURE_PROXY_SSL_HEADER
        if proxy_header:
            name, value = proxy_header
            forwarded = headers.get(name.removeprefix("HTTP_").replace("_", "-").lower().encode(), "")
            secure = forwarded.split(",")[0].strip() == value
        scheme = "https" if secure else "http"
        try:
            return scheme, host, int(port) if port else _DEFAULT_PORTS[scheme]
        except ValueError:
            return None


def origin_validator(app):
    return SiteOriginValidator(app)
