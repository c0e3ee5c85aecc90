"""The site's Content-Security-Policy in Chromium: every page, the admin and the API docs work under
it without one violation, the socket connects under `connect-src 'self'`, and the hook of
conftest.py (which fails every browser test on a violation) does catch one."""

import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PageOpener
from tests.browser.test_pages import site  # noqa: F401  (the fixture: one object of each kind)

pytestmark = pytest.mark.browser

LIVE = "#connection .label"


def settle(page, path, ready):
    """Open `path`, wait for what shows the page did its work, then for the network to be quiet
    (violations are reported as events, a task after the blocked thing)."""
    response = page.goto(path)
    assert response.status == 200, f"{path}: {response.status}"
    csp = response.headers.get("content-security-policy", "")
    assert "unsafe-inline" not in csp and "script-src 'self'" in csp, f"{path}: {csp}"
    expect(page.locator(ready).first).to_be_visible()
    page.wait_for_load_state("networkidle")


def test_every_page_admin_and_api_docs_render_without_a_csp_violation(server, open_page, staff_user, site):  # noqa: F811
    dataset = site["dataset"].strip("/").split("/")[-1]
    page = open_page(server, staff_user)
    # A page of the site is ready once its socket is live: connect-src 'self' lets ws: through.
    for name in ("dashboard", "datasets", "dataset", "training", "training job", "models", "pipelines",
                 "pipeline", "pipeline run", "monitoring", "system", "live events", "telemetry", "telemetry source"):
        settle(page, site[name], LIVE)
        expect(page.locator(LIVE)).to_have_text("Live")
    settle(page, "/activity/", "li.activity")  # the dashboard's activity fragment
    page.console_errors.clear()  # a bare fragment has no icon link: Chromium's /favicon.ico is a 404
    # The bars keep their widths from pct-N classes (no style= attribute).
    settle(page, site["dataset"], ".gauge")
    assert page.locator(".gauge").evaluate("g => getComputedStyle(g).backgroundImage").startswith("conic-gradient")
    settle(page, site["system"], ".meter__fill")
    widths = page.locator(".meter__fill").evaluate_all("els => els.map((e) => e.getBoundingClientRect().width)")
    assert any(w > 0 for w in widths), widths

    for path in ("/admin/", "/admin/datasets/dataset/", f"/admin/datasets/dataset/{dataset}/change/",
                 "/admin/monitoring/alertrule/add/", f"/admin/auth/user/{staff_user.pk}/change/"):
        settle(page, path, "#content")

    settle(page, "/api/docs/", ".swagger-ui .opblock")
    page.locator(".swagger-ui .opblock-summary").first.click()
    expect(page.locator(".swagger-ui .opblock-body").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert page.csp_violations == [], page.csp_violations

    anonymous = open_page(server)
    settle(anonymous, "/login/", "form.login")
    settle(anonymous, "/admin/login/", "#login-form")
    assert anonymous.csp_violations == [], anonymous.csp_violations
    assert not page.console_errors + anonymous.console_errors, page.console_errors + anonymous.console_errors


def wait_for(page, condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out; reported: {page.csp_violations}"
        page.wait_for_timeout(100)  # Playwright delivers the page's reports while it waits


def test_the_hook_catches_an_inline_script_and_a_style_attribute(server, browser, client, staff_user):
    opener = PageOpener(browser, client)
    try:
        page = opener.open(server, staff_user, path="/")
        expect(page.locator(LIVE)).to_have_text("Live")
        try:
            page.add_script_tag(content="window.__injected = true;")
        except Exception:  # Playwright may report the blocked script itself
            pass
        page.evaluate("""() => {
          document.body.insertAdjacentHTML("beforeend", '<p id="injected" style="color: rgb(255, 0, 0)">x</p>');
          document.querySelector("h1").setAttribute("style", "color: rgb(255, 0, 0)");
        }""")
        wait_for(page, lambda: any("script-src" in v for v in page.csp_violations)
                 and any("style-src-attr" in v for v in page.csp_violations))
        assert page.evaluate("window.__injected") is None  # the script did not run
        assert page.locator("#injected").evaluate("e => getComputedStyle(e).color") != "rgb(255, 0, 0)"
    finally:
        with pytest.raises(pytest.fail.Exception, match="Content-Security-Policy violations") as failed:
            opener.close()
    assert "script-src-elem blocked inline" in str(failed.value)
    assert "style-src-attr blocked inline" in str(failed.value)
