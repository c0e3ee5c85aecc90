"""Pages: the project switcher (remembered per user), the role beside the name, Members, the admin."""

import pytest

from mlops_dashboard.models import AuditEntry, Membership, ProjectPreference
from tests.factories import ProjectFactory, UserFactory, member

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_projects(user):
    """alice: maintainer of Default, viewer of Vision."""
    return ProjectFactory(), member(user, "viewer", ProjectFactory(slug="vision"))


def switcher(html: str) -> str:
    start = html.index("<nav class=\"project-switcher\" data-project-switcher")
    return html[start:html.index("</nav>", start)]


def test_the_switcher_lists_the_users_projects_with_roles_and_marks_the_current(client, user, two_projects):
    default, vision = two_projects
    ProjectFactory(slug="hidden")
    client.force_login(user)
    html = client.get("/projects/").content.decode()
    nav = switcher(html)
    assert "Default" in nav and "Vision" in nav and "Hidden" not in nav
    assert "maintainer" in nav and "viewer" in nav
    assert f'value="{default.pk}" class="project-switcher__item" data-project-id="{default.pk}" aria-current="true"' in nav
    assert 'data-current-role>Maintainer · Default<' in html


def test_switching_is_remembered_and_goes_back_same_origin_only(client, user, two_projects):
    default, vision = two_projects
    client.force_login(user)
    response = client.post("/projects/switch/", {"project": vision.pk, "next": "/datasets/"})
    assert response.status_code == 302 and response["Location"] == "/datasets/"
    assert ProjectPreference.objects.get(user=user).project == vision
    html = client.get("/projects/").content.decode()
    assert f'data-project-id="{vision.pk}" aria-current="true"' in switcher(html)
    assert 'data-current-role>Viewer · Vision<' in html
    for evil in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = client.post("/projects/switch/", {"project": default.pk, "next": evil})
        assert response["Location"] == "/", evil
    # A new session remembers it.
    client.logout()
    client.force_login(user)
    assert 'data-current-role>Maintainer · Default<' in client.get("/projects/").content.decode()


def test_switching_to_an_invisible_or_bad_project_is_404(client, user, two_projects):
    hidden = ProjectFactory(slug="hidden")
    client.force_login(user)
    for value in (hidden.pk, 999999, "abc", ""):
        assert client.post("/projects/switch/", {"project": value}).status_code == 404
    assert client.get("/projects/switch/").status_code == 405
    assert not ProjectPreference.objects.filter(user=user).exists()


def test_the_switcher_fragment_is_served_alone(client, user, two_projects):
    client.force_login(user)
    response = client.get("/projects/switcher/?next=/training/")
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith("<nav class=\"project-switcher\" data-project-switcher")
    assert 'name="next" value="/training/"' in html and "Vision" in html
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    # Without `next`, back to the page that fetched it (never to the fragment itself, nor elsewhere).
    fetched = client.get("/projects/switcher/", HTTP_REFERER="http://testserver/pipelines/").content.decode()
    assert 'name="next" value="http://testserver/pipelines/"' in fetched
    assert 'name="next" value="/"' in client.get("/projects/switcher/").content.decode()
    assert 'name="next" value="/"' in client.get("/projects/switcher/?next=https://evil.example/").content.decode()


def test_a_user_in_no_project_gets_a_friendly_state(client):
    client.force_login(UserFactory(username="newbie"))
    for url in ("/projects/", "/projects/switcher/"):
        response = client.get(url)
        assert response.status_code == 200
        assert "You are not in any project yet" in response.content.decode()
    assert 'data-current-role>No project<' in client.get("/projects/").content.decode()


def test_staff_are_admin_of_every_project(client, staff_user, two_projects):
    client.force_login(staff_user)
    html = client.get("/projects/").content.decode()
    assert "Vision" in switcher(html) and 'data-current-role>Admin · Default<' in html


# --- Members page --------------------------------------------------------------------------------


def test_a_viewer_reads_members_without_forms(client, user, two_projects):
    _, vision = two_projects
    boss = UserFactory(username="boss")
    member(boss, "maintainer", vision)
    client.force_login(user)
    html = client.get(f"/projects/{vision.slug}/members/").content.decode()
    assert 'data-member="boss"' in html and 'data-member="alice"' in html
    assert "Add member" not in html and "Remove" not in html and "member-role-form" not in html
    assert "locked-action" in html and "maintainer role" in html
    response = client.post(f"/projects/{vision.slug}/members/add/", {"username": "boss", "role": "viewer"})
    assert response.status_code == 403 and "maintainer" in response.content.decode()
    assert client.post(f"/projects/{vision.slug}/members/boss/remove/").status_code == 403
    assert client.post(f"/projects/{vision.slug}/members/boss/role/", {"role": "viewer"}).status_code == 403
    assert Membership.objects.get(project=vision, user=boss).role == "maintainer"


def test_a_maintainer_adds_changes_and_removes_members_with_forms(client, user, project):
    UserFactory(username="j.doe")
    client.force_login(user)
    page = client.get(f"/projects/{project.slug}/members/").content.decode()
    assert "Add member" in page
    response = client.post(f"/projects/{project.slug}/members/add/", {"username": "j.doe", "role": "editor"})
    assert response.status_code == 302
    assert Membership.objects.get(project=project, user__username="j.doe").role == "editor"
    response = client.post(f"/projects/{project.slug}/members/j.doe/role/", {"role": "viewer"})
    assert response.status_code == 302
    assert Membership.objects.get(project=project, user__username="j.doe").role == "viewer"
    response = client.post(f"/projects/{project.slug}/members/j.doe/remove/")
    assert response.status_code == 302
    assert not Membership.objects.filter(project=project, user__username="j.doe").exists()
    assert AuditEntry.objects.filter(object_type="mlops_dashboard.membership").count() == 3


def test_member_form_refusals_show_why_with_their_status(client, user, project):
    client.force_login(user)
    unknown = client.post(f"/projects/{project.slug}/members/add/", {"username": "nobody", "role": "viewer"})
    assert unknown.status_code == 400 and "nobody" in unknown.content.decode()
    assert client.post(f"/projects/{project.slug}/members/add/", {"username": "", "role": "x"}).status_code == 400
    last = client.post(f"/projects/{project.slug}/members/alice/remove/")
    assert last.status_code == 409 and "last maintainer" in last.content.decode()
    again = client.post(f"/projects/{project.slug}/members/add/", {"username": "alice", "role": "viewer"})
    assert again.status_code == 409
    assert client.post(f"/projects/{project.slug}/members/alice/role/", {"role": "boss"}).status_code == 400
    assert client.post(f"/projects/{project.slug}/members/ghost/remove/").status_code == 404


def test_the_members_page_of_an_invisible_project_is_404(client, user):
    ProjectFactory(slug="hidden")
    client.force_login(user)
    assert client.get("/projects/hidden/members/").status_code == 404
    assert client.post("/projects/hidden/members/add/", {"username": "alice", "role": "viewer"}).status_code == 404


# --- admin -----------------------------------------------------------------------------------------


def test_the_admin_of_projects_memberships_and_the_audit_log(client, staff_user, user, two_projects):
    from mlops_dashboard import memberships

    default, vision = two_projects
    memberships.membership_change(user=staff_user, project=vision, username="alice", role="editor")
    client.force_login(staff_user)
    assert "Vision" in client.get("/admin/mlops_dashboard/project/?q=visi").content.decode()
    change = client.get(f"/admin/mlops_dashboard/project/{vision.pk}/change/").content.decode()
    assert "alice" in change  # the members inline
    listed = client.get(f"/admin/mlops_dashboard/membership/?project__id__exact={vision.pk}&role__exact=editor")
    assert listed.status_code == 200 and "alice" in listed.content.decode()
    none = client.get(f"/admin/mlops_dashboard/membership/?project__id__exact={vision.pk}&role__exact=viewer")
    assert "0 memberships" in none.content.decode()

    audit = client.get(f"/admin/mlops_dashboard/auditentry/?project__id__exact={vision.pk}&action=update")
    assert audit.status_code == 200 and "role: viewer → editor" in audit.content.decode()
    entry = AuditEntry.objects.get(project=vision, action="update")
    assert client.get("/admin/mlops_dashboard/auditentry/add/").status_code == 403
    assert client.post(f"/admin/mlops_dashboard/auditentry/{entry.pk}/change/", {"summary": "x"}).status_code == 403
    assert client.post(f"/admin/mlops_dashboard/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert entry.summary == "role: viewer → editor"


def test_the_admin_changes_members_through_the_services(client, staff_user, user, project):
    client.force_login(staff_user)
    alice = Membership.objects.get(project=project, user=user)
    refused = client.post(f"/admin/mlops_dashboard/membership/{alice.pk}/change/", {"role": "viewer"})
    assert refused.status_code == 200 and "last maintainer" in refused.content.decode()
    alice.refresh_from_db()
    assert alice.role == "maintainer"
    newbie = UserFactory(username="newbie")
    added = client.post("/admin/mlops_dashboard/membership/add/", {"project": project.pk, "user": newbie.pk, "role": "viewer"})
    assert added.status_code == 302
    assert AuditEntry.objects.filter(action="create", object_type="mlops_dashboard.membership", username="root").exists()


def test_the_admin_is_staff_only(client, user):
    client.force_login(user)
    assert client.get("/admin/mlops_dashboard/project/").status_code == 302  # to the admin login
