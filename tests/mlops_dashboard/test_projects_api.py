"""GET/POST /api/projects/: the projects a user may see with their role; staff create them."""

import pytest

from mlops_dashboard.models import AuditEntry, Membership, Project
from tests.factories import ProjectFactory, UserFactory, member

pytestmark = pytest.mark.django_db


def test_a_member_lists_only_their_projects_with_their_role(client, user):
    other = member(user, "viewer", ProjectFactory(slug="other"))
    ProjectFactory(slug="hidden")
    client.force_login(user)
    body = client.get("/api/projects/").json()["results"]
    assert [(p["slug"], p["role"]) for p in body] == [("default", "maintainer"), ("other", "viewer")]
    assert set(body[0]) == {"id", "name", "slug", "description", "role"}
    assert client.get(f"/api/projects/{other.pk}/").json()["role"] == "viewer"
    hidden = Project.objects.get(slug="hidden")
    assert client.get(f"/api/projects/{hidden.pk}/").status_code == 404


def test_staff_list_every_project_as_admin(client, staff_user, project):
    ProjectFactory(slug="other")
    client.force_login(staff_user)
    body = client.get("/api/projects/").json()["results"]
    assert {(p["slug"], p["role"]) for p in body} == {("default", "admin"), ("other", "admin")}


def test_a_user_in_no_project_lists_none(client):
    client.force_login(UserFactory(username="newbie"))
    assert client.get("/api/projects/").json()["results"] == []


def test_staff_create_a_project_with_a_derived_slug_and_are_not_made_members(client, staff_user):
    client.force_login(staff_user)
    response = client.post("/api/projects/", {"name": "Fraud Detection", "description": "cards"},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {"id": body["id"], "name": "Fraud Detection", "slug": "fraud-detection",
                    "description": "cards", "role": "admin"}
    assert not Membership.objects.filter(project_id=body["id"]).exists()
    entry = AuditEntry.objects.get(action="create", object_type="mlops_dashboard.project")
    assert entry.project_id is None and entry.username == "root"  # staff-only entry

    given = client.post("/api/projects/", {"name": "Another", "slug": "my-slug"}, content_type="application/json")
    assert given.status_code == 201 and given.json()["slug"] == "my-slug"


def test_an_existing_slug_is_a_409(client, staff_user):
    client.force_login(staff_user)
    assert client.post("/api/projects/", {"name": "Vision"}, content_type="application/json").status_code == 201
    again = client.post("/api/projects/", {"name": "vision"}, content_type="application/json")
    assert again.status_code == 409
    assert "vision" in again.json()["detail"]
    explicit = client.post("/api/projects/", {"name": "Other", "slug": "vision"}, content_type="application/json")
    assert explicit.status_code == 409
    assert Project.objects.filter(slug="vision").count() == 1


def test_a_slug_race_lost_at_the_insert_is_a_409(staff_user, monkeypatch):
    """Two creates pass the existence check together: the database's unique slug decides."""
    from mlops_dashboard import projects

    ProjectFactory(slug="raced")
    real_filter = Project.objects.filter
    monkeypatch.setattr(Project.objects, "filter", lambda *a, **k: real_filter(pk=-1) if k == {"slug": "raced"} else real_filter(*a, **k))
    with pytest.raises(projects.Conflict):
        projects.project_create(user=staff_user, name="Raced")
    monkeypatch.undo()
    assert Project.objects.filter(slug="raced").count() == 1


@pytest.mark.parametrize("body", [
    {},
    {"name": ""},
    {"name": "x" * 101},
    {"name": 5},
    {"name": "!!!"},
    {"name": "Good", "slug": "not a slug"},
    {"name": "Good", "description": "d" * 2001},
])
def test_bad_bodies_are_400_and_create_nothing(client, staff_user, body):
    client.force_login(staff_user)
    before = Project.objects.count()
    response = client.post("/api/projects/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert Project.objects.count() == before


@pytest.mark.parametrize("role", ["viewer", "editor", "maintainer"])
def test_only_staff_create_projects(client, role):
    alice = UserFactory(username="alice")
    member(alice, role)
    client.force_login(alice)
    response = client.post("/api/projects/", {"name": "Mine"}, content_type="application/json")
    assert response.status_code == 403
    assert "admin" in response.json()["detail"]
    assert not Project.objects.filter(slug="mine").exists()
    # The permission comes first: a bad body from a non-admin is still a 403.
    assert client.post("/api/projects/", {}, content_type="application/json").status_code == 403


def test_a_staff_token_limited_to_a_project_cannot_create_projects(client, staff_user, project):
    from mlops_dashboard.tokens import api_token_create

    _, key = api_token_create(user=staff_user, name="limited", project=project)
    api = client.__class__(HTTP_AUTHORIZATION=f"Token {key}")
    assert [p["slug"] for p in api.get("/api/projects/").json()["results"]] == ["default"]
    assert api.post("/api/projects/", {"name": "Escape"}, content_type="application/json").status_code == 403


def test_the_schema_documents_every_status():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = schema["paths"]
    assert {"200", "401", "403", "429"} <= set(paths["/api/projects/"]["get"]["responses"])
    assert {"201", "400", "403", "409"} <= set(paths["/api/projects/"]["post"]["responses"])
    members = paths["/api/projects/{project_id}/members/"]
    assert {"201", "400", "403", "404", "409"} <= set(members["post"]["responses"])
    assert {"200", "403", "404"} <= set(members["get"]["responses"])
    one = paths["/api/projects/{project_id}/members/{username}/"]
    assert {"200", "400", "403", "404", "409"} <= set(one["patch"]["responses"])
    assert {"204", "403", "404", "409"} <= set(one["delete"]["responses"])
    assert "put" not in one


def test_the_project_filter_and_constant_queries(client, user, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    other = member(user, "viewer", ProjectFactory(slug="other"))
    client.force_login(user)
    assert [p["slug"] for p in client.get("/api/projects/", {"project": other.pk}).json()["results"]] == ["other"]
    assert client.get("/api/projects/", {"project": "x"}).status_code == 400
    with CaptureQueriesContext(connection) as few:
        client.get("/api/projects/")
        client.get(f"/api/projects/{other.pk}/members/")
    for i in range(20):
        member(user, "editor", ProjectFactory(slug=f"p{i}"))
        member(UserFactory(username=f"u{i}"), "viewer", other)
    with django_assert_max_num_queries(len(few)):
        assert len(client.get("/api/projects/", {"limit": 100}).json()["results"]) == 22
        assert len(client.get(f"/api/projects/{other.pk}/members/").json()) == 21


def test_the_token_create_documents_its_404():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert "404" in schema["paths"]["/api/auth/tokens/"]["post"]["responses"]
