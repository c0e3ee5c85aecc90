"""Roles as a user sees them (issue 14), in a real Chromium on the real server: a page never shows
a button its user may not press, and puts a locked hint naming the role in its place.

A viewer sees no Deploy, Delete, Start, Run or Upload button on the training, models, datasets and
pipelines pages; an editor sees Start training, Upload and Run, but no Deploy. A maintainer sees
them all: the same selectors find them, so the other tests would see a button that is there.
"""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# Buttons that change something: a viewer may press none of them.
ACTIONS = re.compile(r"^\s*(Deploy|Roll back|Delete|Start training|Run|Upload|Create pipeline|Re-profile)\b")
DEPLOY = re.compile(r"^\s*(Deploy|Roll back)\b")
ROLE_NAMED = re.compile(r"needs the (editor|maintainer) role")


@pytest.fixture
def team(transactional_db):
    """The default project (every factory row goes there) with a dataset, a pipeline and two
    versions of a model, all made by its maintainer; and a viewer and an editor of it, in no other
    project."""
    from tests.factories import DatasetFactory, ModelVersionFactory, PipelineFactory, UserFactory, member

    owner = UserFactory(username="olga")
    member(owner, "maintainer")
    dataset = DatasetFactory(target_column="survived", created_by=owner)
    pipeline = PipelineFactory(dataset=dataset, created_by=owner)
    ModelVersionFactory(version=1, status="inactive", created_by=owner)  # older than the serving one: Roll back
    ModelVersionFactory(version=2, status="active", created_by=owner)
    ModelVersionFactory(version=3, status="inactive", created_by=owner)  # newer: Deploy
    viewer, editor = UserFactory(username="vera"), UserFactory(username="ed")
    member(viewer, "viewer")
    member(editor, "editor")
    return {"owner": owner, "viewer": viewer, "editor": editor, "dataset": dataset, "pipeline": pipeline}


def pages(team) -> list[str]:
    return ["/training/", "/training/models/", "/datasets/", f"/datasets/{team['dataset'].pk}/", "/pipelines/",
            f"/pipelines/{team['pipeline'].pk}/"]


def action_buttons(page, pattern=ACTIONS) -> list[str]:
    """The accessible names of the visible buttons (or role=button links) matching the pattern."""
    buttons = page.get_by_role("button", name=pattern)
    return [buttons.nth(i).inner_text().strip() for i in range(buttons.count())]


def locked_reasons(page) -> list[str]:
    hints = page.locator(".locked-action")
    return [hints.nth(i).get_attribute("title") or "" for i in range(hints.count())]


def open_at(open_page, server, user, path):
    page = open_page(server, user, path=path)
    expect(page.locator("main")).to_be_visible()
    return page


def test_a_viewer_sees_no_action_button_and_a_locked_hint_naming_the_role(server, open_page, team):
    for path in pages(team):
        page = open_at(open_page, server, team["viewer"], path)
        assert action_buttons(page) == [], f"a viewer sees action buttons on {path}"
        reasons = locked_reasons(page)
        assert any(ROLE_NAMED.search(r) for r in reasons), f"no locked hint naming the role on {path}: {reasons}"


def test_an_editor_sees_start_upload_and_run_but_no_deploy(server, open_page, team):
    editor = team["editor"]
    page = open_at(open_page, server, editor, "/training/")
    expect(page.get_by_role("button", name="Start training")).to_be_visible()
    page = open_at(open_page, server, editor, "/datasets/")
    expect(page.get_by_role("button", name=re.compile(r"^\s*Upload"))).to_be_attached()
    page = open_at(open_page, server, editor, f"/pipelines/{team['pipeline'].pk}/")
    expect(page.get_by_role("button", name=re.compile(r"^\s*Run\b"))).to_be_visible()

    page = open_at(open_page, server, editor, "/training/models/")
    assert action_buttons(page, DEPLOY) == [], "an editor sees Deploy or Roll back"
    reasons = locked_reasons(page)
    assert any("maintainer role" in r for r in reasons), f"no locked hint naming the maintainer role: {reasons}"
    # Someone else's dataset and pipeline: an editor may not delete them either.
    for path in (f"/datasets/{team['dataset'].pk}/", f"/pipelines/{team['pipeline'].pk}/"):
        page = open_at(open_page, server, editor, path)
        assert "Delete" not in action_buttons(page), f"an editor sees Delete on another's object at {path}"


def test_a_maintainer_sees_every_button(server, open_page, team):
    """The control: the selectors above do find the buttons when the user may press them."""
    owner = team["owner"]
    page = open_at(open_page, server, owner, "/training/models/")
    assert set(action_buttons(page, DEPLOY)) == {"Deploy", "Roll back"}
    assert locked_reasons(page) == []
    page = open_at(open_page, server, owner, "/training/")
    expect(page.get_by_role("button", name="Start training")).to_be_visible()
    page = open_at(open_page, server, owner, f"/datasets/{team['dataset'].pk}/")
    assert "Delete" in action_buttons(page)
    page = open_at(open_page, server, owner, f"/pipelines/{team['pipeline'].pk}/")
    assert {"Run", "Delete"} <= set(action_buttons(page))
