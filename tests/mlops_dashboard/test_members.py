"""Members of a project through the API and the services: who manages them, the last maintainer,
usernames with dots, audit and activity lines, signals, and DEFAULT_PROJECT_ROLE."""

import threading

import pytest
from django.db import connection
from django.db.models.signals import post_delete, post_save

from mlops_dashboard.models import Activity, AuditEntry, Membership
from tests.factories import ProjectFactory, UserFactory, member

pytestmark = pytest.mark.django_db


def members_url(project, username=None):
    return f"/api/projects/{project.pk}/members/" + (f"{username}/" if username else "")


@pytest.fixture
def team(db):
    """Default project: maint (maintainer), ed (editor), vi (viewer); plus an outsider and j.doe."""
    project = ProjectFactory()
    users = {}
    for name, role in (("maint", "maintainer"), ("ed", "editor"), ("vi", "viewer")):
        users[name] = UserFactory(username=name)
        member(users[name], role, project)
    users["outsider"] = UserFactory(username="outsider")
    member(users["outsider"], "maintainer", ProjectFactory(slug="elsewhere"))
    users["j.doe"] = UserFactory(username="j.doe")
    return project, users


@pytest.fixture
def signals():
    seen = []

    def saved(sender, instance, created, **kwargs):
        seen.append(("saved", instance.user.username, instance.role))

    def deleted(sender, instance, **kwargs):
        seen.append(("deleted", instance.user.username, instance.role))

    post_save.connect(saved, sender=Membership, dispatch_uid="test_members.saved")
    post_delete.connect(deleted, sender=Membership, dispatch_uid="test_members.deleted")
    yield seen
    post_save.disconnect(sender=Membership, dispatch_uid="test_members.saved")
    post_delete.disconnect(sender=Membership, dispatch_uid="test_members.deleted")


def test_members_read_the_list(client, team):
    project, users = team
    client.force_login(users["vi"])
    body = client.get(members_url(project)).json()
    assert [(m["user"], m["role"]) for m in body] == [("ed", "editor"), ("maint", "maintainer"), ("vi", "viewer")]
    assert set(body[0]) == {"user", "role", "added_at"}
    assert client.get(members_url(project, "ed")).json()["role"] == "editor"


def test_an_outsider_gets_404_for_everything(client, team):
    project, users = team
    client.force_login(users["outsider"])
    assert client.get(members_url(project)).status_code == 404
    assert client.post(members_url(project), {"user": "j.doe", "role": "viewer"},
                       content_type="application/json").status_code == 404
    assert client.patch(members_url(project, "ed"), {"role": "viewer"}, content_type="application/json").status_code == 404
    assert client.delete(members_url(project, "ed")).status_code == 404
    assert client.get("/api/projects/999999/members/").status_code == 404
    assert Membership.objects.get(project=project, user=users["ed"]).role == "editor"


@pytest.mark.parametrize("who", ["vi", "ed"])
def test_viewers_and_editors_cannot_manage_403_naming_maintainer(client, team, who, signals):
    project, users = team
    client.force_login(users[who])
    attempts = [
        client.post(members_url(project), {"user": "j.doe", "role": "viewer"}, content_type="application/json"),
        client.post(members_url(project), {"user": "j.doe", "role": "maintainer"}, content_type="application/json"),
        client.post(members_url(project), {}, content_type="application/json"),  # permission before the body
        client.patch(members_url(project, who), {"role": "maintainer"}, content_type="application/json"),
        client.patch(members_url(project, "vi"), {"role": "editor"}, content_type="application/json"),
        client.delete(members_url(project, "maint")),
    ]
    for response in attempts:
        assert response.status_code == 403
        assert "maintainer" in response.json()["detail"]
    assert signals == []
    assert not AuditEntry.objects.filter(object_type="mlops_dashboard.membership").exists()


@pytest.mark.parametrize("who", ["maint", "root"])
def test_maintainers_and_staff_add_change_and_remove(client, team, staff_user, who, signals):
    project, users = team
    client.force_login(staff_user if who == "root" else users[who])
    added = client.post(members_url(project), {"user": "j.doe", "role": "maintainer"}, content_type="application/json")
    assert added.status_code == 201, added.content
    assert added.json()["user"] == "j.doe" and added.json()["role"] == "maintainer"
    changed = client.patch(members_url(project, "j.doe"), {"role": "editor"}, content_type="application/json")
    assert changed.status_code == 200 and changed.json()["role"] == "editor"
    assert client.get(members_url(project, "j.doe")).json()["role"] == "editor"
    assert client.delete(members_url(project, "j.doe")).status_code == 204
    assert not Membership.objects.filter(project=project, user=users["j.doe"]).exists()
    assert client.get(members_url(project, "j.doe")).status_code == 404

    assert signals == [("saved", "j.doe", "maintainer"), ("saved", "j.doe", "editor"), ("deleted", "j.doe", "editor")]
    entries = list(AuditEntry.objects.filter(object_type="mlops_dashboard.membership").order_by("id"))
    assert [(e.action, e.project_id, e.username) for e in entries] == [
        ("create", project.pk, who), ("update", project.pk, who), ("delete", project.pk, who)]
    assert entries[1].summary == "role: maintainer → editor"
    lines = Activity.objects.filter(action_type__startswith="member_").order_by("id")
    assert [(a.action_type, a.project_id) for a in lines] == [
        ("member_added", project.pk), ("member_changed", project.pk), ("member_removed", project.pk)]


def test_unknown_user_is_400_and_a_member_already_is_409(client, team):
    project, users = team
    client.force_login(users["maint"])
    unknown = client.post(members_url(project), {"user": "nobody", "role": "viewer"}, content_type="application/json")
    assert unknown.status_code == 400 and "nobody" in unknown.json()["detail"]
    already = client.post(members_url(project), {"user": "ed", "role": "viewer"}, content_type="application/json")
    assert already.status_code == 409
    assert Membership.objects.get(project=project, user=users["ed"]).role == "editor"


@pytest.mark.parametrize("body", [{}, {"user": "j.doe"}, {"user": "j.doe", "role": "owner"}, {"user": 7, "role": "viewer"},
                                  {"user": "x" * 151, "role": "viewer"}])
def test_bad_add_bodies_are_400(client, team, body):
    project, users = team
    client.force_login(users["maint"])
    assert client.post(members_url(project), body, content_type="application/json").status_code == 400
    assert Membership.objects.filter(project=project).count() == 3


def test_bad_role_changes_are_400_and_unknown_members_404(client, team):
    project, users = team
    client.force_login(users["maint"])
    assert client.patch(members_url(project, "ed"), {"role": "owner"}, content_type="application/json").status_code == 400
    assert client.patch(members_url(project, "ed"), {}, content_type="application/json").status_code == 400
    assert client.patch(members_url(project, "j.doe"), {"role": "viewer"}, content_type="application/json").status_code == 404
    assert client.delete(members_url(project, "j.doe")).status_code == 404
    assert client.put(members_url(project, "ed"), {"role": "viewer"}, content_type="application/json").status_code == 405


def test_usernames_with_dots_and_other_django_characters(client, team):
    project, users = team
    UserFactory(username="a.b+c-d_e@example.org")
    client.force_login(users["maint"])
    for name in ("j.doe", "a.b+c-d_e@example.org"):
        assert client.post(members_url(project), {"user": name, "role": "viewer"},
                           content_type="application/json").status_code == 201
        assert client.get(members_url(project, name)).json()["user"] == name
        assert client.patch(members_url(project, name), {"role": "editor"},
                            content_type="application/json").json()["role"] == "editor"
        assert client.delete(members_url(project, name)).status_code == 204


def test_the_last_maintainer_cannot_be_removed_or_demoted(client, team, staff_user):
    project, users = team
    for actor in (users["maint"], staff_user):
        client.force_login(actor)
        demote = client.patch(members_url(project, "maint"), {"role": "editor"}, content_type="application/json")
        assert demote.status_code == 409 and "last maintainer" in demote.json()["detail"]
        assert client.delete(members_url(project, "maint")).status_code == 409
    assert Membership.objects.get(project=project, user=users["maint"]).role == "maintainer"
    # With a second maintainer, the first may step down.
    client.force_login(users["maint"])
    assert client.patch(members_url(project, "ed"), {"role": "maintainer"}, content_type="application/json").status_code == 200
    assert client.patch(members_url(project, "maint"), {"role": "viewer"}, content_type="application/json").status_code == 200
    client.force_login(users["ed"])
    assert client.delete(members_url(project, "ed")).status_code == 409
    assert client.delete(members_url(project, "maint")).status_code == 204


def test_a_maintainer_who_steps_down_loses_the_right_at_once(client, team):
    project, users = team
    from mlops_dashboard import memberships

    memberships.membership_change(user=users["maint"], project=project, username="ed", role="maintainer")
    memberships.membership_change(user=users["maint"], project=project, username="maint", role="viewer")
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):  # the roles cached on the same user object were forgotten
        memberships.membership_change(user=users["maint"], project=project, username="vi", role="editor")


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_two_concurrent_demotions_leave_one_maintainer(monkeypatch):
    """Two maintainers demote each other at once: one wins, the other gets the Conflict."""
    from django.db import connections

    from mlops_dashboard import memberships
    from mlops_dashboard.projects import Conflict

    project = ProjectFactory(slug="race")
    a, b = UserFactory(username="a"), UserFactory(username="b")
    member(a, "maintainer", project)
    member(b, "maintainer", project)
    first_wrote, release = threading.Event(), threading.Event()
    real_audit = memberships.audit_record

    def audit_then_hold(**kwargs):
        entry = real_audit(**kwargs)
        if threading.current_thread().name == "first":
            first_wrote.set()
            release.wait(60)  # hold the transaction open while the second one tries
        return entry

    monkeypatch.setattr(memberships, "audit_record", audit_then_hold)
    outcomes = {}

    def demote(actor, target):
        try:
            memberships.membership_change(user=actor, project=project, username=target, role="editor")
            outcomes[threading.current_thread().name] = "ok"
        except Conflict:
            outcomes[threading.current_thread().name] = "conflict"
        finally:
            connections.close_all()

    first = threading.Thread(target=demote, args=(a, "b"), name="first")
    second = threading.Thread(target=demote, args=(b, "a"), name="second")
    first.start()
    assert first_wrote.wait(60)
    second.start()
    second.join(1)  # it waits on the lock (if it did not, it would have finished by now)
    release.set()
    first.join(60)
    second.join(60)
    assert outcomes == {"first": "ok", "second": "conflict"}
    assert list(Membership.objects.filter(project=project, role="maintainer").values_list("user__username", flat=True)) == ["a"]


# --- DEFAULT_PROJECT_ROLE ------------------------------------------------------------------------


def test_new_users_join_default_with_default_project_role(settings):
    settings.DEFAULT_PROJECT_ROLE = "viewer"
    newbie = UserFactory(username="newbie")
    membership = Membership.objects.get(user=newbie)
    assert (membership.project.slug, membership.role) == ("default", "viewer")
    newbie.first_name = "N"
    newbie.save()  # a later save adds nothing
    assert Membership.objects.filter(user=newbie).count() == 1
    admin = UserFactory(username="boss", staff=True)
    assert not Membership.objects.filter(user=admin).exists()  # staff are admins already


def test_without_default_project_role_new_users_are_in_no_project(settings, client):
    settings.DEFAULT_PROJECT_ROLE = ""
    newbie = UserFactory(username="newbie")
    assert not Membership.objects.filter(user=newbie).exists()
    client.force_login(newbie)
    assert client.get("/api/projects/").json()["results"] == []


def test_the_first_superuser_of_make_run_is_staff(settings, monkeypatch):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from mlops_dashboard.management.commands.bootstrap import Command

    monkeypatch.setattr(Command, "demo_loaders", lambda self: [])  # the apps' demo data is theirs to test

    settings.DEFAULT_PROJECT_ROLE = "editor"
    get_user_model().objects.all().delete()
    call_command("bootstrap", stdout=__import__("io").StringIO())
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    assert not Membership.objects.filter(user=admin).exists()
