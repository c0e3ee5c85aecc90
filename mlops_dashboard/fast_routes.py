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

A route may also have an answer on the event loop (`register_fast_route(..., on_loop=handler)`):
`await handler(scope, body, match, executor)` runs first and answers the plain case (predictions: a
token, version and model in this process's caches, rows that pass every check, a throttle that
allows) with what the thread path would send, status, body and headers alike (`loop_headers`),
doing its work in `executor`'s threads. It returns None for anything else, having changed nothing,
and the request then takes the thread path above, which gives every other answer (401, 403, 404,
400, 413, 429, ...) as it always did.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core import signals
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix
from django.utils.module_loading import import_string

from . import runtime
from .api_errors import problem_response
from .request_bodies import header, resolve_scope

logger = logging.getLogger(__name__)

# URL name -> the methods served here.
_ROUTES: dict[str, frozenset[str]] = {}
# URL name -> its answer on the event loop (see the module doc).
_ON_LOOP: dict[str, object] = {}
# Requests answered on the event loop by this process (tests read it).
answered_on_loop = 0

# What a token-authenticated API call passes through (in this order), instead of settings.MIDDLEWARE.
MIDDLEWARE = (
    "mlops_dashboard.middleware.ApiTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "mlops_dashboard.middleware.ApiProblemMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)


def register_fast_route(url_name: str, methods=("POST",), on_loop=None) -> None:
    """Serve the view named `url_name` here for token-authenticated requests of these methods;
    `on_loop`: its answer on the event loop for the plain case (module doc)."""
    _ROUTES[url_name] = frozenset(m.upper() for m in methods)
    if on_loop is not None:
        _ON_LOOP[url_name] = on_loop


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
        body = b"".join(chunks)
        on_loop = _ON_LOOP.get(match.url_name)
        if on_loop is not None and await self._on_loop(on_loop, scope, body, match, send):
            return
        loop = asyncio.get_running_loop()
        try:
            status, headers, body = await loop.run_in_executor(self._pool(), self._serve, scope, body, match)
        except Exception:  # past the middleware's own handling: still a problem body, never a bare 500
            logger.exception("API fast route failed on %s", scope["path"])
            failed = problem_response(500, "The server failed to handle this request; it has been logged.")
            status, headers, body = failed.status_code, _headers(failed), failed.content
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _on_loop(self, handler, scope, body: bytes, match, send) -> bool:
        """Answer with `handler` if it takes the request; False when it leaves it to the thread path."""
        global answered_on_loop
        started = time.perf_counter()
        try:
            answer = await handler(scope, body, match, self._pool())
        except Exception:  # a fault of the handler: a problem body, as the thread path gives one
            logger.exception("API fast route failed on %s", scope["path"])
            failed = problem_response(500, "The server failed to handle this request; it has been logged.")
            answer = failed.status_code, _without_length(_headers(failed)), failed.content
        if answer is None:
            return False
        status, headers, content = answer
        answered_on_loop += 1
        runtime.record_api_duration((time.perf_counter() - started) * 1000)  # as ApiTimingMiddleware
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"Content-Length", str(len(content)).encode("ascii"))]})
        await send({"type": "http.response.body", "body": content})
        return True

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


_loop_headers: dict[tuple, list] = {}


def loop_headers(scope, match) -> list[tuple[bytes, bytes]] | None:
    """The headers the thread path sends with a JSON answer of this view (200, from DRF's Response
    through MIDDLEWARE), Content-Length aside; None when that path would not answer it (an HTTPS
    redirect). Made once per view and scheme by the same middleware, on a response as DRF makes it."""
    secure = _is_secure(scope)
    if settings.SECURE_SSL_REDIRECT and not secure:
        return None
    key = (match.url_name, secure)
    headers = _loop_headers.get(key)
    if headers is None:
        view = match.func.view_class(**match.func.view_initkwargs)
        response = HttpResponse(content_type="application/json")
        for name, value in view.default_response_headers.items():  # as DRF's finalize_response
            response[name] = value
        request = _Scheme(secure)
        response = SecurityMiddleware(_no_response).process_response(request, response)
        response = XFrameOptionsMiddleware(_no_response).process_response(request, response)
        headers = _loop_headers[key] = _without_length(_headers(response))
    return headers


def _without_length(headers: list) -> list:
    return [h for h in headers if h[0].lower() != b"content-length"]


def _is_secure(scope) -> bool:
    """HttpRequest.is_secure() for this scope (SECURE_PROXY_SSL_HEADER first, as Django reads it)."""
    if settings.SECURE_PROXY_SSL_HEADER:
        name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = header(scope, name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin1"))
        if value is not None:
            return value.decode("latin1").split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "https"


class _Scheme:
    """What the middleware's process_response reads of a request."""

    def __init__(self, secure: bool):
        self.secure = secure

    def is_secure(self) -> bool:
        return self.secure


def _no_response(request):  # pragma: no cover - process_response alone is called
    raise AssertionError


def _headers(response) -> list[tuple[bytes, bytes]]:
    headers = [(k.encode("latin1"), v.encode("latin1")) for k, v in response.items()]
    if not response.has_header("Content-Length"):
        headers.append((b"Content-Length", str(len(response.content)).encode("ascii")))
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    return headers
