"""The API tokens page in a real browser: a new key is shown once and works; revoke ends it."""

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.test_pages import check

pytestmark = pytest.mark.browser


def api_status(server, key) -> int:
    return httpx.get(server.url + "/api/events/", headers={"Authorization": f"Token {key}"}, timeout=60).status_code


def test_a_new_token_is_shown_once_works_and_is_revoked(server, open_page, user):
    page = open_page(server, user, path="/")
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens", level=1)).to_be_visible()

    page.get_by_label("Name").fill("laptop script")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("heading", name="Your new token")).to_be_visible()
    key = page.locator("#new-key-value").input_value()
    assert key.startswith("mlops_")
    assert api_status(server, key) == 200

    page.goto("/account/tokens/")
    row = page.locator("#tokens-table tbody tr", has_text="laptop script")
    expect(row).to_have_count(1)
    expect(page.locator("#new-key")).to_have_count(0)
    assert key not in page.content()
    expect(row).to_contain_text("ago")  # its last use

    row.get_by_role("button", name="Revoke laptop script").click()
    expect(page.locator("#toasts")).to_contain_text("Token revoked")
    expect(page.locator("#tokens-table tbody tr", has_text="laptop script")).to_have_count(0)
    assert api_status(server, key) == 401
    assert page.console_errors == []


def test_the_account_pages_are_accessible_and_fit_a_phone(server, open_page, user):
    from tests.factories import ApiTokenFactory

    ApiTokenFactory(user=user, name="ci")
    page = open_page(server, user)
    problems = check(page, "/account/tokens/") + check(page, "/account/password/")
    assert problems == []
