"""The Content-Security-Policy header: on every page, with no 'unsafe-inline' and no 'unsafe-eval',
and no template of ours that would need them (an inline script or style, an on*= handler, a
javascript: URL). Browsers enforcing it on real pages: tests/browser/test_csp.py."""

import re
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db

ROOT = Path(settings.BASE_DIR)
TEMPLATE_DIRS = [ROOT / "templates", *sorted(ROOT.glob("*/templates"))]
EXPECTED = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
    "base-uri": "'self'",
    "object-src": "'none'",
}
# What the CSP blocks in HTML: an inline <script> (json_script's type="application/json" is data, not
# run, and is written by the filter, not in templates), <style>, style=, on*= handlers, javascript:.
INLINE = [
    (re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<style\b", re.I), "a <style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "a style= attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an on*= handler"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


def policy(response) -> dict[str, str]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"{response.request['PATH_INFO']}: no Content-Security-Policy header"
    return dict((part.strip().split(" ", 1) + [""])[:2] for part in header.split(";") if part.strip())


@pytest.mark.parametrize("path", ["/", "/datasets/", "/monitoring/system/", "/admin/", "/api/docs/", "/api/activity/"])
def test_every_response_carries_the_policy_without_unsafe_inline(client, staff_user, path):
    client.force_login(staff_user)
    response = client.get(path)
    assert response.status_code == 200, path
    header = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in header and "unsafe-eval" not in header, header
    assert policy(response) == EXPECTED


def test_the_login_page_carries_the_policy_for_an_anonymous_client(client):
    response = client.get("/login/")
    assert response.status_code == 200
    assert policy(response) == EXPECTED


def test_the_swagger_page_has_no_inline_script_and_serves_its_init_script_apart(client, staff_user):
    client.force_login(staff_user)
    html = client.get("/api/docs/").content.decode()
    found = [what for pattern, what in INLINE if pattern.search(html)]
    assert not found, found
    script = re.search(r'<script src="([^"]*script=[^"]*)"', html)
    assert script, "no init script URL on the page"
    init = client.get(script.group(1).replace("&amp;", "&"))
    assert init.status_code == 200
    assert init.headers["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in init.content.decode()


def test_no_template_has_inline_script_or_style():
    templates = [p for d in TEMPLATE_DIRS for p in sorted(d.rglob("*.html"))]
    assert len(templates) > 30, TEMPLATE_DIRS
    found = []
    for path in templates:
        text = re.sub(r"{% comment %}.*?{% endcomment %}", "", path.read_text(), flags=re.S)
        for pattern, what in INLINE:
            for m in pattern.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not found, "\n".join(found)
