"""Site-wide request rules: a bounded number of requests at work per process; pages need a login;
the API always answers in JSON."""

import asyncio
import logging
import time
import weakref

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware

from . import runtime
from .api_errors import problem_response

logger = logging.getLogger(__name__)


def is_api(request) -> bool:
    return request.path_info.startswith("/api/")


class DashboardLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Every page redirects an anonymous visitor to the login page, except views marked
    `login_not_required` (login, /health/). The API answers 401/403 itself (DRF permissions)."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if is_api(request):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class ApiProblemMiddleware:
    """Under /api/, no HTML error page and no bare 500: errors become problem details."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            is_api(request)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith(("application/problem+json", "application/json"))
        ):
            detail = {404: f"No API endpoint at {request.path_info}."}.get(
                response.status_code, "The request could not be handled."
            )
            return problem_response(response.status_code, detail)
        return response

    def process_exception(self, request, exception):
        if not is_api(request):
            return None
        logger.exception("unhandled API error on %s", request.path_info)
        return problem_response(500, "The server failed to handle this request; it has been logged.")


class ApiTimingMiddleware:
    """Times every /api/ request (first in the chain, so the whole of Django's work counts); the
    process's monitoring collector reports the recent p95 as `api_response_time_ms`. A file upload
    (multipart) is not timed: its duration is the file's size over the network, not the API's speed,
    and a few uploads would hold the minute's p95 at seconds (a false latency anomaly)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not is_api(request) or request.content_type == "multipart/form-data":
            return self.get_response(request)
        started = time.perf_counter()
        try:
            return self.get_response(request)
        finally:
            runtime.record_api_duration((time.perf_counter() - started) * 1000)


class RequestSlots:
    """ASGI middleware: at most WEB_MAX_CONCURRENT_REQUESTS requests of one server process at work
    in Django at once; the others wait here, in the event loop, holding neither a thread nor a
    database connection. Under ASGI each request's sync code runs in a thread of its own, so without
    this a burst (predictions at 50/s on a busy machine) means as many threads and PostgreSQL
    connections as requests in flight. A request comes here with its body already read
    (request_bodies.RequestBodies), and uploads do not take a slot at all (see asgi.py), so a slow
    client never holds one."""

    def __init__(self, app, limit: int | None = None):
        self.app = app
        self.limit = limit
        self._slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per event loop

    async def __call__(self, scope, receive, send):
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.limit or settings.WEB_MAX_CONCURRENT_REQUESTS)
        async with slots:
            return await self.app(scope, receive, send)
