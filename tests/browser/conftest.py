"""Browser fixtures: one headless Chromium per session, a fresh context (cookies, storage) per page.

Pages are opened on the real server processes of tests/procs.py, logged in with a real session
(`client.force_login`'s cookie) or through the login form, and with the realtime client's timings
shortened through `window.__realtimeTestOverrides` (read by static/js/realtime.js) where a test
needs it.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings
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


@pytest.fixture
def open_page(browser, client):
    """open_page(server, user=None, overrides=None, path=None) -> a Playwright Page.

    With a user, the context carries that user's session cookie; with a path, the page is opened
    there. Console errors of the page are collected in `page.console_errors`.
    """
    contexts = []

    def _open(server, user=None, overrides=None, path=None):
        context = browser.new_context(base_url=server.url, viewport=VIEWPORT)
        contexts.append(context)
        if user is not None:
            context.add_cookies(
                [{"name": settings.SESSION_COOKIE_NAME, "value": session_cookie(client, user), "url": server.url}]
            )
        if overrides:
            context.add_init_script(f"window.__realtimeTestOverrides = {json.dumps(overrides)};")
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.console_errors = []
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
        page.on("pageerror", lambda e: page.console_errors.append(str(e)))
        if path:
            page.goto(path)
        return page

    yield _open
    for context in contexts:
        context.close()


@pytest.fixture
def own_server(transactional_db):
    """A server process of this test's own, which the test may stop and start on the same port."""
    server = procs.Server().start()
    yield server
    server.stop()
