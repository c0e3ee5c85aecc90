"""The project switcher in a real browser: switching changes the current project everywhere, and the
choice is remembered after logging out and in again."""

import re

from playwright.sync_api import expect

from tests.factories import ProjectFactory, UserFactory, member


def log_in(page, username, password):
    page.goto("/login/?next=/projects/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("[data-project-switcher]")).to_be_visible()


def test_the_switcher_changes_the_current_project_and_remembers_it(server, open_page):
    carol = UserFactory(username="carol")
    member(carol, "maintainer", ProjectFactory())
    member(carol, "viewer", ProjectFactory(slug="vision"))
    page = open_page(server)
    log_in(page, "carol", "carol-pass-123")
    switcher = page.locator("[data-project-switcher]")
    role = page.locator("[data-current-role]")
    expect(switcher.locator("[aria-current=true]")).to_contain_text("Default")
    expect(role).to_have_text("Maintainer · Default")

    switcher.get_by_role("button", name=re.compile("Vision")).click()
    expect(page).to_have_url(re.compile(r"/projects/$"))  # back where it was
    expect(switcher.locator("[aria-current=true]")).to_contain_text("Vision")
    expect(role).to_have_text("Viewer · Vision")
    switcher.get_by_role("link", name="Members").click()
    expect(page).to_have_url(re.compile(r"/projects/vision/members/$"))
    expect(page.locator("#my-role")).to_have_text("viewer")

    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#id_username")).to_be_visible()
    log_in(page, "carol", "carol-pass-123")
    expect(page.locator("[data-project-switcher] [aria-current=true]")).to_contain_text("Vision")
    expect(page.locator("[data-current-role]")).to_have_text("Viewer · Vision")
