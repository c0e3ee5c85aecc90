"""The URLconf as the permission matrix sees it: every route with the methods that change something.

Routes are keyed like "POST /api/datasets/{}/jobs/": the method, then the path with every parameter
(regex group or path converter) written `{}`, so a key does not depend on what a parameter is named.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

MUTATING = ("post", "put", "patch", "delete")


@dataclass(frozen=True)
class Route:
    method: str  # upper case
    path: str  # normalized: "/api/datasets/{}/"
    name: str  # the URL pattern's name ("" when unnamed)
    view: str  # dotted name of the view, for messages

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


def walk(patterns, prefix: str = ""):
    """(route string, URLPattern) for every pattern, includes followed."""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


_GROUP = re.compile(r"\(\?P<\w+>(?:[^()]|\([^()]*\))*\)")
_CONVERTER = re.compile(r"<(?:\w+:)?\w+>")


def normalize(route: str) -> str:
    """'api/^datasets/(?P<pk>[0-9]{1,18})/jobs/$' -> '/api/datasets/{}/jobs/'."""
    route = _GROUP.sub("{}", route)
    route = _CONVERTER.sub("{}", route)
    route = route.replace("^", "").replace("$", "").replace("\\Z", "").replace("\\.", ".").replace("\\", "")
    return "/" + route.lstrip("/")


def _view_name(callback) -> str:
    target = getattr(callback, "cls", None) or getattr(callback, "view_class", None) or inspect.unwrap(callback)
    return f"{target.__module__}.{target.__qualname__}"


def api_methods(callback) -> list[str] | None:
    """The mutating methods a DRF view answers (a viewset: its router actions, limited by the
    class's http_method_names); None for a view that is not DRF's."""
    cls = getattr(callback, "cls", None)
    if cls is None:
        return None
    allowed = {m.lower() for m in cls.http_method_names}
    actions = getattr(callback, "actions", None)
    methods = list(actions) if actions else [m for m in allowed if hasattr(cls, m)]
    return sorted(m for m in methods if m in MUTATING and m in allowed)


def _allowed_by_decorator(func) -> list[str] | None:
    """The methods of require_http_methods / require_POST / require_GET around a view function,
    found in the decorator's closure; None when no such decorator wraps it."""
    while func is not None:
        code = getattr(func, "__code__", None)
        if code is not None and "request_method_list" in code.co_freevars:
            cell = func.__closure__[code.co_freevars.index("request_method_list")]
            return [m.upper() for m in cell.cell_contents]
        func = getattr(func, "__wrapped__", None)
    return None


def page_accepts_post(callback) -> bool:
    """Whether a (non-API) page view does something on POST."""
    view_class = getattr(callback, "view_class", None)
    if view_class is not None:
        return hasattr(view_class, "post") and "post" in view_class.http_method_names
    methods = _allowed_by_decorator(callback)
    if methods is not None:
        return "POST" in methods
    # No method restriction: every method reaches it, so it is mutating if it looks at POST at all.
    source = inspect.getsource(inspect.unwrap(callback))
    return "request.POST" in source or '"POST"' in source or "'POST'" in source


def api_routes() -> list[Route]:
    """Every (mutating method, route) under /api/. A non-DRF view there is listed with method "?"
    (the matrix cannot tell what it does, so it must be looked at)."""
    found = set()
    for route, pattern in walk(get_resolver().url_patterns):
        if not route.startswith("api/"):
            continue
        methods = api_methods(pattern.callback)
        path, name, view = normalize(route), pattern.name or "", _view_name(pattern.callback)
        if methods is None:
            found.add(Route("?", path, name, view))
        for method in methods or ():
            found.add(Route(method.upper(), path, name, view))
    return sorted(found, key=lambda r: (r.path, r.method))


def page_routes() -> list[Route]:
    """Every page (not /api/, not Django admin, not static files) that accepts a POST."""
    found = set()
    for route, pattern in walk(get_resolver().url_patterns):
        if route.startswith(("api/", "admin/", "static/")):
            continue
        if page_accepts_post(pattern.callback):
            found.add(Route("POST", normalize(route), pattern.name or "", _view_name(pattern.callback)))
    return sorted(found, key=lambda r: (r.path, r.method))
