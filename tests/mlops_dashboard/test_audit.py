"""The audit log's reading side: append-only, its own retention, logins and tokens (staff only), the
Audit pages with their filters and CSV export, and `GET /api/audit/`."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from mlops_dashboard.audit import NO_PROJECT, audit_record
from mlops_dashboard.models import Activity, AppendOnlyError, AuditEntry
from mlops_dashboard.tasks import retention_prune
from tests.factories import ProjectFactory, UserFactory, member

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)


def entry(*, user=None, action="update", project=None, age=None, object_repr="churn", summary="", **fields):
    made = audit_record(user=user, action=action, project=project or NO_PROJECT, object_type="datasets.dataset",
                        object_repr=object_repr, summary=summary, **fields)
    if age is not None:  # only the test may move time: through the base manager
        AuditEntry._base_manager.filter(pk=made.pk).update(created_at=timezone.now() - age)
    return made


@pytest.fixture
def team(db):
    """Two projects: alpha (maint maintainer, ed editor, vi viewer) and beta (bea maintainer)."""
    alpha, beta = ProjectFactory(slug="alpha", name="Alpha"), ProjectFactory(slug="beta", name="Beta")
    users = {name: UserFactory(username=name) for name in ("maint", "ed", "vi", "bea", "out")}
    member(users["maint"], "maintainer", alpha)
    member(users["ed"], "editor", alpha)
    member(users["vi"], "viewer", alpha)
    member(users["bea"], "maintainer", beta)
    users["root"] = UserFactory(username="root", staff=True)
    return alpha, beta, users


# --- append-only and retention ---------------------------------------------------------------------


def test_entries_cannot_be_changed_or_deleted(team):
    alpha, _, users = team
    made = entry(user=users["maint"], project=alpha, summary="name: a → b")
    made.summary = "nothing happened"
    with pytest.raises(AppendOnlyError):
        made.save()
    with pytest.raises(AppendOnlyError):
        made.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=made.pk).update(summary="rewritten")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get(pk=made.pk).summary == "name: a → b"


@pytest.mark.django_db(transaction=True)
def test_deleting_a_user_keeps_their_entries_under_their_name(team):
    alpha, _, users = team
    from mlops_dashboard.tokens import api_token_create

    made = entry(user=users["ed"], project=alpha)
    api_token_create(user=users["ed"], name="laptop")
    with transaction.atomic():  # PostgreSQL checks the keys at commit: none may point at the gone user
        users["ed"].delete()  # tokens and memberships go with the user; the log stays
    kept = AuditEntry.objects.get(pk=made.pk)
    assert (kept.user_id, kept.username) == (None, "ed")
    revoked = AuditEntry.objects.get(action="revoke")
    assert (revoked.user_id, revoked.project_id, revoked.object_repr) == (None, None, "laptop (ed)")


def test_retention_prunes_old_audit_entries_and_not_the_feed(team, settings):
    alpha, _, users = team
    settings.AUDIT_RETENTION_DAYS, settings.RETENTION_ACTIVITY_DAYS = 365, 30
    old, recent = entry(project=alpha, age=366 * DAY), entry(project=alpha, age=364 * DAY)
    feed_line = Activity.objects.create(title="old line", action_type="upload", project=alpha)
    Activity.objects.filter(pk=feed_line.pk).update(created_at=timezone.now() - 100 * DAY)

    result = retention_prune()
    assert result["audit"] == 1 and result["activity"] == 1
    assert list(AuditEntry.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not AuditEntry.objects.filter(pk=old.pk).exists()
    assert not Activity.objects.filter(pk=feed_line.pk).exists()


def test_the_feeds_retention_does_not_touch_the_audit_log(team, settings):
    alpha, _, _ = team
    settings.AUDIT_RETENTION_DAYS, settings.RETENTION_ACTIVITY_DAYS = 365, 400
    line = Activity.objects.create(title="a line", action_type="upload", project=alpha)
    Activity.objects.filter(pk=line.pk).update(created_at=timezone.now() - 370 * DAY)
    kept_year = entry(project=alpha, age=100 * DAY)
    gone = entry(project=alpha, age=370 * DAY)
    retention_prune()
    assert Activity.objects.filter(pk=line.pk).exists()  # 370 days < the feed's 400
    assert set(AuditEntry.objects.values_list("pk", flat=True)) == {kept_year.pk}
    assert not AuditEntry.objects.filter(pk=gone.pk).exists()
    settings.AUDIT_RETENTION_DAYS = 0  # keep forever
    entry(project=alpha, age=3650 * DAY)
    assert "audit" not in retention_prune() and AuditEntry.objects.count() == 2


# --- logins, logouts, tokens -----------------------------------------------------------------------


def test_logins_and_logouts_are_recorded_without_project_and_shown_to_staff_only(client, team):
    alpha, _, users = team
    assert client.post("/login/", {"username": "maint", "password": "maint-pass-123"}).status_code == 302
    login = AuditEntry.objects.get(action="login")
    assert (login.username, login.project_id, login.user_id) == ("maint", None, users["maint"].pk)
    assert client.post("/logout/").status_code in (200, 302)
    assert AuditEntry.objects.filter(action="logout", username="maint", project=None).exists()

    client.force_login(users["maint"])  # a maintainer does not see logins, even their own
    rows = client.get("/api/audit/").json()["results"]
    assert not [row for row in rows if row["action"] in ("login", "logout")]
    assert client.get("/audit/").status_code == 403
    client.force_login(users["root"])
    rows = client.get("/api/audit/?action=login").json()["results"]
    assert {(row["user"], row["project"]) for row in rows} >= {("maint", None), ("root", None)}
    page = client.get("/audit/?action=login").content.decode()
    assert "maint" in page and "login" in page


def test_api_tokens_made_and_revoked_are_recorded_without_project(client, team):
    _, _, users = team
    client.force_login(users["ed"])
    made = client.post("/api/auth/tokens/", {"name": "ci"}, content_type="application/json")
    assert made.status_code == 201
    assert client.delete(f"/api/auth/tokens/{made.json()['id']}/").status_code == 204
    rows = AuditEntry.objects.filter(object_type="mlops_dashboard.apitoken").order_by("id")
    assert [(e.action, e.username, e.project_id, e.object_id) for e in rows] == [
        ("create", "ed", None, str(made.json()["id"])), ("revoke", "ed", None, str(made.json()["id"]))]
    assert "ci" in rows[0].object_repr


# --- the project's page ----------------------------------------------------------------------------


def test_the_project_audit_page_is_for_maintainers_and_staff(client, team):
    alpha, beta, users = team
    entry(user=users["ed"], project=alpha, object_repr="alpha-set")
    entry(user=users["bea"], project=beta, object_repr="beta-set")
    entry(user=users["root"], action="login", object_repr="root")
    for name in ("maint", "root"):
        client.force_login(users[name])
        page = client.get("/projects/alpha/audit/")
        assert page.status_code == 200, name
        text = page.content.decode()
        assert "alpha-set" in text and "beta-set" not in text and 'id="audit-activity-link"' in text
    for name in ("ed", "vi"):
        client.force_login(users[name])
        page = client.get("/projects/alpha/audit/")
        assert page.status_code == 403 and "maintainer role" in page.content.decode(), name
        assert "alpha-set" not in page.content.decode()
        assert client.get("/projects/alpha/audit.csv").status_code == 403
    for name in ("out", "bea"):
        client.force_login(users[name])
        assert client.get("/projects/alpha/audit/").status_code == 404, name
        assert client.get("/projects/alpha/audit/?format=csv").status_code == 404
    client.force_login(users["maint"])
    assert client.get("/projects/nowhere/audit/").status_code == 404
    client.logout()
    assert client.get("/projects/alpha/audit/").status_code == 302  # to the login page


def test_the_page_filters_by_user_action_and_time_newest_first(client, team):
    alpha, _, users = team
    entry(user=users["ed"], action="create", project=alpha, object_repr="first", age=10 * DAY)
    entry(user=users["maint"], action="deploy", project=alpha, object_repr="second", age=5 * DAY)
    entry(user=users["ed"], action="delete", project=alpha, object_repr="third", age=1 * DAY)
    client.force_login(users["maint"])

    def shown(query=""):
        page = client.get(f"/projects/alpha/audit/{query}")
        assert page.status_code == 200, page.content
        return [e.object_repr for e in page.context["page"].object_list]

    assert shown() == ["third", "second", "first"]
    assert shown("?user=ed") == ["third", "first"]
    assert shown("?action=deploy") == ["second"]
    since = (timezone.localtime() - 7 * DAY).strftime("%Y-%m-%dT%H:%M")
    until = (timezone.localtime() - 3 * DAY).strftime("%Y-%m-%d")
    assert shown(f"?since={since}") == ["third", "second"]
    assert shown(f"?since={since}&until={until}") == ["second"]
    assert shown("?user=ed&action=create") == ["first"]
    bad = client.get("/projects/alpha/audit/?since=yesterday")
    assert bad.status_code == 400 and "A date" in bad.content.decode()
    assert client.get(f"/projects/alpha/audit/?since={until}&until={until[:8]}01").status_code == 400


def test_the_page_is_paginated(client, team):
    alpha, _, users = team
    for n in range(55):
        entry(user=users["ed"], project=alpha, object_repr=f"obj-{n}")
    client.force_login(users["maint"])
    first = client.get("/projects/alpha/audit/?user=ed")
    assert len(first.context["page"].object_list) == 50 and first.context["page"].paginator.count == 55
    assert 'rel="next" href="?user=ed&amp;page=2"' in first.content.decode()
    second = client.get("/projects/alpha/audit/?user=ed&page=2")
    assert [e.object_repr for e in second.context["page"].object_list] == [f"obj-{n}" for n in range(4, -1, -1)]


def test_csv_export_holds_the_filtered_rows_and_defuses_formulas(client, team):
    alpha, beta, users = team
    entry(user=users["ed"], action="update", project=alpha, object_repr="=HYPERLINK(\"http://x\")",
          summary="+cmd|' /C calc'!A0")
    entry(user=users["ed"], action="create", project=alpha, object_repr="@SUM(1)", summary="-2+3")
    entry(user=users["maint"], action="update", project=alpha, object_repr="plain, \"quoted\"", summary="a: 1 → 2")
    entry(user=users["bea"], action="update", project=beta, object_repr="other project")
    client.force_login(users["maint"])

    for url in ("/projects/alpha/audit.csv?action=update", "/projects/alpha/audit/?action=update&format=csv"):
        response = client.get(url)
        assert response.status_code == 200 and response.streaming
        assert response["Content-Type"].startswith("text/csv")
        assert "attachment" in response["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert rows[0] == ["when", "user", "project", "action", "object_type", "object_id", "object", "summary"]
        assert [(r[1], r[2], r[3], r[6], r[7]) for r in rows[1:]] == [
            ("maint", "alpha", "update", 'plain, "quoted"', "a: 1 → 2"),
            ("ed", "alpha", "update", "'=HYPERLINK(\"http://x\")", "'+cmd|' /C calc'!A0"),
        ]
    rows = list(csv.reader(io.StringIO(b"".join(client.get("/projects/alpha/audit.csv?action=create")
                                               .streaming_content).decode())))
    assert (rows[1][6], rows[1][7]) == ("'@SUM(1)", "'-2+3")


def test_staff_see_every_entry_on_the_global_page(client, team):
    alpha, beta, users = team
    entry(user=users["ed"], project=alpha, object_repr="alpha-set")
    entry(user=users["bea"], project=beta, object_repr="beta-set")
    entry(user=users["root"], action="project_create", object_repr="system-wide")
    client.force_login(users["root"])
    text = client.get("/audit/").content.decode()
    assert all(name in text for name in ("alpha-set", "beta-set", "system-wide"))
    only_system = client.get("/audit/?project=none").context["page"].object_list
    assert {e.object_repr for e in only_system} >= {"system-wide"} and not [e for e in only_system if e.project_id]
    assert [e.object_repr for e in client.get("/audit/?project=beta").context["page"].object_list] == ["beta-set"]
    csv_text = b"".join(client.get("/audit.csv?project=none").streaming_content).decode()
    assert "system-wide" in csv_text and "alpha-set" not in csv_text
    for name in ("maint", "out"):
        client.force_login(users[name])
        assert client.get("/audit/").status_code == 403 and client.get("/audit.csv").status_code == 403


# --- the API ---------------------------------------------------------------------------------------


def test_the_api_shows_maintainers_their_projects_and_staff_everything(client, team):
    alpha, beta, users = team
    a = entry(user=users["ed"], action="create", project=alpha, object_repr="alpha-set", age=2 * DAY)
    b = entry(user=users["bea"], action="delete", project=beta, object_repr="beta-set")
    s = entry(user=users["root"], action="project_create", object_repr="system-wide")

    def ids(user, query=""):
        client.force_login(users[user])
        response = client.get(f"/api/audit/{query}")
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"] if row["action"] not in ("login", "logout")]

    assert ids("maint") == [a.pk] and ids("bea") == [b.pk]
    assert ids("ed") == [] and ids("out") == []
    assert ids("root") == [s.pk, b.pk, a.pk]  # newest first
    assert ids("root", f"?project={alpha.pk}") == [a.pk]
    assert ids("maint", f"?project={alpha.pk}&user=ed&action=create") == [a.pk]
    assert ids("maint", "?user=nobody") == []
    since = (timezone.now() - DAY).isoformat()
    assert ids("root", f"?since={since}".replace("+", "%2B")) == [s.pk, b.pk]
    assert ids("root", f"?until={since}".replace("+", "%2B")) == [a.pk]
    row = client.get(f"/api/audit/?project={alpha.pk}").json()["results"][0]
    assert row == {"id": a.pk, "created_at": row["created_at"], "user": "ed", "user_id": users["ed"].pk,
                   "project": alpha.pk, "action": "create", "object_type": "datasets.dataset", "object_id": "",
                   "object_repr": "alpha-set", "summary": ""}

    client.force_login(users["ed"])
    denied = client.get(f"/api/audit/?project={alpha.pk}")
    assert denied.status_code == 403 and "maintainer" in denied.json()["detail"]
    client.force_login(users["maint"])
    assert client.get(f"/api/audit/?project={beta.pk}").status_code == 404
    assert client.get("/api/audit/?project=999999").status_code == 404
    for bad in ("?project=x", "?since=soon", "?limit=0", "?action=", f"?since={since}&until={since}"):
        assert client.get(f"/api/audit/{bad}".replace("+", "%2B")).status_code == 400, bad
    page = client.get("/api/audit/?limit=1").json()
    assert page["count"] >= 1 and len(page["results"]) == 1
    client.logout()
    assert client.get("/api/audit/").status_code in (401, 403)


def test_the_api_is_in_the_schema(client, team):
    client.force_login(team[2]["root"])
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/audit/"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"project", "user", "action", "since", "until", "limit",
                                                            "offset"}
    assert {"200", "400", "403", "404"} <= set(operation["responses"])
    assert "/api/audit/{id}/" not in schema["paths"]  # no detail, no writes
