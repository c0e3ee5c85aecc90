"""ASGI: the API's hot endpoints, called by programs many times a second, served past the parts of
Django that only pages need.

An app registers a URL name (`register_fast_route`, in its ready()): telemetry ingest and the
series read, predictions. A request to one of them that carries `Authorization: Token ...` is then
run here, after its body was read and bounded (request_bodies.RequestBodies), as follows:

- in one of API_FAST_THREADS threads of this process's own pool, not the one thread through which
  asgiref runs every sync view, so that one request's wait on the database overlaps another's work,
  and without taking one of the page requests' slots (middleware.RequestSlots);
- through the same DRF view as any other request (authentication, token scopes, permissions,
  throttles, validation, error bodies: nothing is skipped), wrapped only in the middleware an API
  call made with a token needs: the API timing, the security headers, problem details for errors and
  X-Frame-Options. Sessions, CSRF, messages, the login redirect and axes have nothing to do with a
  token;
- with Django's request_started and request_finished signals around it, as Django sends them
  (database connections are handed back to the pool the same way).

Anything else (no token, another method, another URL) goes on to Django unchanged. The token itself
is checked from the process's cache (auth_cache.py), as on every other path.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core import signals
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix
from django.utils.module_loading import import_string

from .api_errors import problem_response
from .request_bodies import header, resolve_scope

logger = logging.getLogger(__name__)

# URL name -> the methods served here.
_ROUTES: dict[str, frozenset[str]] = {}

# What a token-authenticated API call passes through (in this order), instead of settings.MIDDLEWARE.
MIDDLEWARE = (
    "mlops_dashboard.middleware.ApiTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "mlops_dashboard.middleware.ApiProblemMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)


def register_fast_route(url_name: str, methods=("POST",)) -> None:
    """Serve the view named `url_name` here for token-authenticated requests of these methods."""
    _ROUTES[url_name] = frozenset(m.upper() for m in methods)


def _token_request(scope) -> bool:
    value = header(scope, b"authorization")
    return value is not None and value[:6].lower() == b"token "


class FastRoutes:
    """ASGI middleware: see the module doc. Goes between RequestBodies and RequestSlots."""

    def __init__(self, app):
        self.app = app
        self._executor: ThreadPoolExecutor | None = None
        self._handler = None
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not _ROUTES or not _token_request(scope):
            return await self.app(scope, receive, send)
        match = resolve_scope(scope)  # once, by RequestBodies before
        if match is None or scope["method"] not in _ROUTES.get(match.url_name, ()):
            return await self.app(scope, receive, send)
        chunks = []
        while True:  # already read by RequestBodies: this takes it from memory
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        loop = asyncio.get_running_loop()
        try:
            status, headers, body = await loop.run_in_executor(self._pool(), self._serve, scope, b"".join(chunks),
                                                               match)
        except Exception:  # past the middleware's own handling: still a problem body, never a bare 500
            logger.exception("API fast route failed on %s", scope["path"])
            failed = problem_response(500, "The server failed to handle this request; it has been logged.")
            status, headers, body = failed.status_code, _headers(failed), failed.content
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._handler = _chain()
                    self._executor = ThreadPoolExecutor(max_workers=settings.API_FAST_THREADS,
                                                        thread_name_prefix="api-fast")
        return self._executor

    def _serve(self, scope, body: bytes, match) -> tuple[int, list, bytes]:
        """One request, in a thread of the pool, as Django's handler runs it: request_started, the
        view within its middleware, then the response closed (which sends request_finished: the
        thread's database connection goes back). Returns what to send."""
        set_script_prefix(settings.FORCE_SCRIPT_NAME or scope.get("root_path", "") or "/")
        signals.request_started.send(sender=self.__class__, scope=scope)
        response = None
        try:
            request = ASGIRequest(scope, io.BytesIO(body))
        except UnicodeDecodeError:  # as Django's handler answers a path or query it cannot decode
            signals.request_finished.send(sender=self.__class__)
            bad = problem_response(400, "The request's URL is not valid UTF-8.", code="invalid")
            return bad.status_code, _headers(bad), bad.content
        try:
            request.resolver_match = match
            request.user = AnonymousUser()  # DRF authenticates from the token; nothing else reads it
            response = self._handler(request)
            response._resource_closers.append(request.close)
            return response.status_code, _headers(response), response.content
        finally:
            if response is not None:
                response.close()
            else:
                request.close()
                signals.request_finished.send(sender=self.__class__)


def _view(request):
    match = request.resolver_match
    response = match.func(request, *match.args, **match.kwargs)
    if callable(getattr(response, "render", None)):  # DRF's Response, a TemplateResponse
        response = response.render()
    return response


def _chain():
    handler = convert_exception_to_response(_view)
    for path in reversed(MIDDLEWARE):
        handler = convert_exception_to_response(import_string(path)(handler))
    return handler


def _headers(response) -> list[tuple[bytes, bytes]]:
    headers = [(k.encode("latin1"), v.encode("latin1")) for k, v in response.items()]
    if not response.has_header("Content-Length"):
        headers.append((b"Content-Length", str(len(response.content)).encode("ascii")))
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    return headers
