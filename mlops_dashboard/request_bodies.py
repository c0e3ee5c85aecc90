"""ASGI: a request's body is read here, in the event loop, before the request takes one of the
process's slots (middleware.RequestSlots) and reaches Django.

A slow or silent client then costs a socket and a coroutine, never a slot: twelve clients trickling
bodies no longer stall everyone else. What is refused here is refused before Django sees it:
- a request with a body to a view that needs a login, carrying no credentials at all (no session
  cookie, no Authorization header): 401 under /api/, the login redirect for pages, body unread;
- a body larger than its limit (DATA_UPLOAD_MAX_MEMORY_SIZE, or a URL's own limit registered by its
  app with `register_body_limit`; WEB_ANONYMOUS_MAX_BODY without credentials, since bodies are held
  in memory and anonymous clients are many): 413, by Content-Length before reading, else as it
  streams in. DRF parsers read the stream themselves, so Django's own limit never applied to JSON;
- a body that has not fully arrived within WEB_BODY_TIMEOUT seconds: 408, connection closed.
Uploads take another path (asgi.py, datasets/upload.py): they stream into Django while being
counted, and use the helpers at the end of this module for their refusals. Before reading an
upload's body they also run the permission check its app registered (`register_body_check`), so a
forbidden upload is refused (404/403/400) before a byte of it is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, QueryDict
from django.http.cookie import parse_cookie
from django.urls import Resolver404, resolve
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from .api_errors import problem_response

# URL name -> (largest body in bytes, the 413 detail): views that take more than the default.
_BODY_LIMITS: dict[str, tuple[int, str]] = {}


def register_body_limit(url_name: str, max_bytes: int, detail: str) -> None:
    """Let the view named `url_name` take bodies up to `max_bytes` (an app calls this in ready())."""
    _BODY_LIMITS[url_name] = (max_bytes, detail)


# URL name -> check(user, query): raises Http404 / PermissionDenied / ValidationError when the request
# may not go on, before its body is read (an app calls register_body_check in ready()).
_BODY_CHECKS: dict[str, Callable] = {}


def register_body_check(url_name: str, check: Callable) -> None:
    """Run `check(user, query)` (query: the URL's QueryDict) before the body of a request to the view
    named `url_name` is read; whatever it raises is the answer (404, 403 naming the role, 400)."""
    _BODY_CHECKS[url_name] = check


def default_body_limit() -> tuple[int, str]:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return limit, (f"The request body is larger than the {limit / 2**20:g} MiB limit "
                   "(DATA_UPLOAD_MAX_MEMORY_SIZE).")


def anonymous_too_large() -> str:
    return (f"A request without credentials may send at most {settings.WEB_ANONYMOUS_MAX_BODY:,} bytes "
            "(WEB_ANONYMOUS_MAX_BODY).")


@dataclass(frozen=True)
class Route:
    login_required: bool
    max_body: int
    too_large: str


def view_needs_login(func) -> bool:
    """The rule Django's LoginRequiredMiddleware applies (views marked `login_not_required` are
    public), with DRF's for API views (DRF marks them all; public only with AllowAny permissions)."""
    view_class = getattr(func, "cls", None)
    if isinstance(view_class, type) and issubclass(view_class, APIView):
        permissions = getattr(func, "initkwargs", {}).get("permission_classes", view_class.permission_classes)
        return any(not issubclass(p, AllowAny) for p in permissions)
    return getattr(func, "login_required", True)


def route_for(path_info: str) -> Route:
    try:
        match = resolve(path_info)
    except Resolver404:
        match = None
    return _route_of(match)


def _route_of(match) -> Route:
    if match is None:  # static files, 404s: public; their body is still bounded
        return Route(False, *default_body_limit())
    limit = _BODY_LIMITS.get(match.url_name) or default_body_limit()
    return Route(view_needs_login(match.func), *limit)


# The request's URL resolved, kept in its scope for the layers after this one (fast_routes.py):
# resolving walks every URL pattern, a noticeable part of a short API call.
SCOPE_MATCH = "mlops_dashboard.resolver_match"


# Paths resolved lately (a program calls the same few URLs many times a second): path -> match.
# Matches are only read (a view gets copies of their arguments). Emptied when full.
_resolved: dict[tuple[str, str], object] = {}
RESOLVED_MAX = 4096


def resolve_scope(scope):
    """The ResolverMatch of the scope's path (None when no view has it), resolved once per request."""
    if SCOPE_MATCH not in scope:
        path = path_info(scope)
        key = (settings.ROOT_URLCONF, path)
        try:
            scope[SCOPE_MATCH] = _resolved[key]
        except KeyError:
            try:
                match = resolve(path)
            except Resolver404:
                match = None
            if len(_resolved) >= RESOLVED_MAX:
                _resolved.clear()
            scope[SCOPE_MATCH] = _resolved[key] = match
    return scope[SCOPE_MATCH]


def path_info(scope) -> str:
    return scope["path"].removeprefix(scope.get("root_path", "")) or "/"


def header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value
    return None


def content_length(scope) -> int | None:
    value = header(scope, b"content-length")
    return int(value) if value is not None and value.isdigit() else None


def has_body(scope) -> bool:
    return bool(content_length(scope)) or header(scope, b"transfer-encoding") is not None


def carries_credentials(scope) -> bool:
    if header(scope, b"authorization"):
        return True
    cookies = parse_cookie((header(scope, b"cookie") or b"").decode("latin1"))
    return bool(cookies.get(settings.SESSION_COOKIE_NAME))


# --- answers sent from the ASGI layer (the connection is closed after each) -----------------------


async def send_response(send, response: HttpResponse) -> None:
    response["Connection"] = "close"  # the rest of the body, if any, is never read
    response["Content-Length"] = str(len(response.content))
    headers = [(k.encode("latin1"), v.encode("latin1")) for k, v in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})


async def send_problem(scope, send, status: int, detail: str, *, code: str | None = None) -> None:
    """Problem details under /api/, the detail as plain text for pages."""
    if path_info(scope).startswith("/api/"):
        response = problem_response(status, detail, code=code)
    else:
        response = HttpResponse(detail + "\n", status=status, content_type="text/plain; charset=utf-8")
    await send_response(send, response)


async def refuse_anonymous(scope, send) -> None:
    """401 for the API (as for a bad token), the login page for pages (as LoginRequiredMiddleware)."""
    path = path_info(scope)
    if path.startswith("/api/"):
        response = problem_response(401, "Authentication credentials were not provided.", code="not_authenticated")
        response["WWW-Authenticate"] = "Token"
    else:
        query = scope.get("query_string", b"").decode("latin1")
        response = redirect_to_login(path + (f"?{query}" if query else ""), settings.LOGIN_URL)
    await send_response(send, response)


async def send_timeout(scope, send) -> None:
    await send_problem(scope, send, 408, f"The request body did not arrive within {settings.WEB_BODY_TIMEOUT:g} s "
                                         "(WEB_BODY_TIMEOUT).", code="body_timeout")


class RequestBodies:
    """ASGI middleware: read and bound the body, then replay it to the app (see the module doc)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = _route_of(resolve_scope(scope))
        if not carries_credentials(scope):
            if route.login_required and has_body(scope):
                return await refuse_anonymous(scope, send)
            if route.max_body > settings.WEB_ANONYMOUS_MAX_BODY:  # the login forms: a few hundred bytes
                route = Route(False, settings.WEB_ANONYMOUS_MAX_BODY, anonymous_too_large())
        declared = content_length(scope)
        if declared is not None and declared > route.max_body:
            return await send_problem(scope, send, 413, route.too_large, code="too_large")
        messages, size = [], 0
        try:
            async with asyncio.timeout(settings.WEB_BODY_TIMEOUT):
                while size <= route.max_body:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left: nobody to answer
                    size += len(message.get("body", b""))
                    messages.append(message)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return await send_timeout(scope, send)
        if size > route.max_body:  # no Content-Length (chunked), or more than it announced
            return await send_problem(scope, send, 413, route.too_large, code="too_large")
        messages.reverse()

        async def replay():
            # The body as it came, then the live channel (Django listens for the client leaving).
            return messages.pop() if messages else await receive()

        return await self.app(scope, replay, send)


# --- checks before the body -------------------------------------------------------------------------


def body_check_for(scope) -> Callable | None:
    match = resolve_scope(scope)
    return _BODY_CHECKS.get(match.url_name) if match is not None else None


async def refuse_before_body(scope, send, user) -> bool:
    """Run the registered check of this request's view; answer its refusal and return True, or False
    (go on and read the body). The check reads the database: in Django's thread, as views do."""
    check = body_check_for(scope)
    if check is None:
        return False
    query = QueryDict(scope.get("query_string", b"").decode("latin1"))
    try:
        await database_sync_to_async(check)(user, query)
    except Http404:
        await send_problem(scope, send, 404, "Not found.", code="not_found")
    except PermissionDenied as exc:
        await send_problem(scope, send, 403, str(exc) or "You do not have permission to perform this action.",
                           code="permission_denied")
    except ValidationError as exc:
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        detail = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
        await send_response(send, problem_response(400, detail, errors=errors, code="invalid"))
    else:
        return False
    return True
