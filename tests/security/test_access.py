"""Every URL in the URLconf refuses an anonymous client (401/403 or a redirect to the login page),
except the login page, /health/ and static files."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db

# The login pages and the token endpoint exist to let an anonymous client in.
PUBLIC = {"/login/", "/health/", "/admin/login/", "/api/auth/token/"}


def walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


def concrete(route: str) -> str:
    """A URL for a route pattern: regex groups and path converters become 1 (or 'x' for strings)."""
    route = route.replace("^", "").replace("$", "").replace("\\Z", "").replace("\\.", ".")
    route = re.sub(r"\(\?P<\w+>[^)]*\)", "1", route)
    route = re.sub(r"\(\?:[^)]*\)\??", "", route)
    route = re.sub(r"<(?:(int|slug|str|path|uuid):)?(\w+)>",
                   lambda m: "x" if m.group(1) in ("str", "slug", "path") else "1", route)
    route = route.replace("\\", "").replace("?", "")
    return "/" + route.lstrip("/")


def all_urls():
    urls = sorted({concrete(route) for route in walk(get_resolver().url_patterns)})
    return [u for u in urls if not u.startswith("/static/") and "(" not in u and "[" not in u]


def test_the_urlconf_is_enumerated():
    urls = all_urls()
    assert len(urls) > 40 and "/api/datasets/" in urls and "/api/models/1/predict/" in urls


@pytest.mark.parametrize("url", all_urls())
def test_anonymous_clients_are_refused(client, url):
    if url in PUBLIC:
        return
    for method in ("get", "post"):
        response = getattr(client, method)(url)
        status = response.status_code
        if status in (301, 302):
            location = response["Location"]
            assert location.startswith("/login/") or location.startswith("/admin/login/") or url.startswith("/admin/"), (url, location)
        else:
            assert status in (401, 403, 404, 405), (method, url, status)
            assert status != 404 or url.startswith("/admin/"), (method, url, status)


def test_public_urls_answer_anonymously(client):
    assert client.get("/login/").status_code == 200
    assert client.get("/health/").status_code in (200, 503)
