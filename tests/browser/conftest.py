"""Browser fixtures: one headless Chromium per session, a fresh context (cookies, storage) per page.

Pages are opened on the real server processes of tests/procs.py, logged in with a real session
(`client.force_login`'s cookie) or through the login form, and with the realtime client's timings
shortened through `window.__realtimeTestOverrides` (read by static/js/realtime.js) where a test
needs it.

Every page runs under the site's real Content-Security-Policy, and every test fails at teardown on
any violation its pages reported (a `securitypolicyviolation` event or Chromium's console message).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests import procs
from tests.conftest import session_cookie

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
# A generous deadline for every expect(): the machine may be busy (the default is 5 s).
expect.set_options(timeout=20_000)
# Reconnect quickly (the production defaults are 1 s doubling to 30 s).
FAST_RECONNECT = {"backoffBaseMs": 200, "backoffMaxMs": 1000, "maxReconnectAttempts": 60}


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# Reported to the test through a binding, from the page's own document, before any of its scripts.
CSP_LISTENER = """document.addEventListener("securitypolicyviolation", (e) => window.__cspViolation(
  `${e.effectiveDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile || location.href}:${e.lineNumber}` +
  (e.sample ? ` (${e.sample})` : "")), true);"""


def is_csp_message(text: str) -> bool:
    return "Content Security Policy" in text or "Content-Security-Policy" in text


def add_test_script(page, path: Path, name: str | None = None):
    """Add a test's own script (axe-core...) from a same-origin URL the test answers itself.

    `page.add_script_tag(path=...)` would inline it, which the CSP rightly blocks.
    """
    url = f"/__test__/{name or path.name}"
    routed = page.__dict__.setdefault("test_scripts", set())
    if url not in routed:
        routed.add(url)
        page.route(f"**{url}", lambda route: route.fulfill(path=str(path), content_type="text/javascript"))
    page.add_script_tag(url=url)


def drag_across(page, locator, start: float, end: float):
    """Drag the mouse across the middle of `locator` from `start` to `end` (fractions of its width),
    as a user zooms a chart."""
    box = locator.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (start + end) / 2, y, steps=8)
    page.mouse.move(box["x"] + box["width"] * end, y, steps=8)
    page.mouse.up()


class PageOpener:
    """Opens pages in fresh contexts (see open_page); close() closes them and fails on any CSP
    violation one of them reported."""

    def __init__(self, browser, client):
        self.browser, self.client = browser, client
        self.contexts, self.pages = [], []

    def open(self, server, user=None, overrides=None, path=None):
        context = self.browser.new_context(base_url=server.url, viewport=VIEWPORT)
        self.contexts.append(context)
        if user is not None:
            context.add_cookies(
                [{"name": settings.SESSION_COOKIE_NAME, "value": session_cookie(self.client, user), "url": server.url}]
            )
        if overrides:
            context.add_init_script(f"window.__realtimeTestOverrides = {json.dumps(overrides)};")
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.console_errors = []
        page.csp_violations = []
        page.expose_binding("__cspViolation", lambda source, text: page.csp_violations.append(text))
        page.add_init_script(CSP_LISTENER)
        page.on("console", lambda m: on_console(page, m))
        page.on("pageerror", lambda e: page.console_errors.append(str(e)))
        self.pages.append(page)
        if path:
            page.goto(path)
        return page

    def violations(self) -> list[str]:
        return [f"{page.url}: {v}" for page in self.pages for v in page.csp_violations]

    def close(self):
        for page in self.pages:
            try:  # let the page's pending reports arrive (a task after the violation)
                page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 50))")
            except PlaywrightError:  # closed, or navigating away
                pass
        violations = self.violations()
        for context in self.contexts:
            context.close()
        self.contexts, self.pages = [], []
        if violations:
            pytest.fail("Content-Security-Policy violations:\n" + "\n".join(violations), pytrace=False)


def on_console(page, message):
    if message.type == "error":
        page.console_errors.append(message.text)
    if is_csp_message(message.text):
        page.csp_violations.append(f"console: {message.text}")


@pytest.fixture
def open_page(browser, client):
    """open_page(server, user=None, overrides=None, path=None) -> a Playwright Page.

    With a user, the context carries that user's session cookie; with a path, the page is opened
    there. Console errors of the page are collected in `page.console_errors`, CSP violations in
    `page.csp_violations`: any there at teardown fail the test.
    """
    opener = PageOpener(browser, client)
    yield opener.open
    opener.close()


@pytest.fixture
def own_server(transactional_db):
    """A server process of this test's own, which the test may stop and start on the same port."""
    server = procs.Server().start()
    yield server
    server.stop()
